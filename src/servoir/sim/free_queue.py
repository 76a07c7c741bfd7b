"""vLLM's free KV block queue, as far as a preempted request's prefix cache needs it.

With prefix caching (on by default in vLLM 0.19) a freed block keeps its hash until it is
reused: the free blocks form one queue, freed blocks join its tail (a request's blocks in
reverse order, so its last blocks go first) and new blocks are taken from its head. A
preempted request readmitted before its first blocks are taken finds them in the cache and
recomputes only the rest.

Blocks are counted, not named: the queue is a deque of segments ``[count, full, rid]``
(``rid`` -1 for blocks no request will look up; ``full`` the full, hence cached, blocks of a
preempted request's segment; its partial last block is the segment's first). Allocations are
not reported one by one: :meth:`sync` takes from the head whatever the engine allocated since,
given its free-block count, so the engine calls it before every free and every lookup, the
only moments the order matters.
"""

from __future__ import annotations

from collections import deque


class FreeQueue:
    """The free-block queue of one engine: ``total`` blocks, all free and uncached at first."""

    __slots__ = ("segs", "size", "cached")

    def __init__(self, total: int) -> None:
        self.segs: deque[list[int]] = deque([[total, 0, -1]])
        self.size = total  # blocks in the queue
        self.cached: dict[int, list[int]] = {}  # preempted rid -> its segment

    def sync(self, free: int) -> None:
        """Take from the head the blocks allocated since the last call (``free`` now)."""
        take = self.size - free
        segs = self.segs
        while take > 0:
            s = segs[0]
            if s[0] > take:
                s[0] -= take
                self.size -= take
                return
            take -= s[0]
            self.size -= s[0]
            s[0] = 0
            segs.popleft()

    def push(self, count: int, full: int = 0, rid: int = -1) -> None:
        """Blocks freed: a finished request's (``rid`` -1) or a preempted one's."""
        if count <= 0:
            return
        self.size += count
        if rid < 0:
            if self.segs and self.segs[-1][2] < 0:
                self.segs[-1][0] += count
            else:
                self.segs.append([count, 0, -1])
            return
        seg = [count, full, rid]
        self.segs.append(seg)
        self.cached[rid] = seg

    def hit(self, rid: int) -> int:
        """Cached blocks of ``rid``'s prefix still in the queue (its full blocks not taken)."""
        seg = self.cached.get(rid)
        return 0 if seg is None else min(seg[0], seg[1])

    def take(self, rid: int, blocks: int) -> None:
        """``rid`` is readmitted and reuses ``blocks`` of its cached prefix; what is left of its
        segment is uncached."""
        seg = self.cached.pop(rid, None)
        if seg is None:
            return
        seg[0] -= blocks
        seg[1] = 0
        seg[2] = -1
        self.size -= blocks

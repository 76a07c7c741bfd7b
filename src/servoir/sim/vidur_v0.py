"""``engine.preset=vidur_v0``: Vidur 0.0.26's vLLM (v0) replica scheduler and pipeline.

Mirrors ``vidur/scheduler/replica_scheduler/vllm_replica_scheduler.py``,
``base_replica_scheduler.py`` and the replica stage scheduler (microsoft/vidur, MIT):

- Batches are never mixed. A new batch is formed only when no batch occupies stage 0 and fewer
  than ``pp`` batches are in flight, at an arrival, at the end of stage 0 and at a batch's end.
- *Prefill first*: waiting requests in FIFO order join a prefill batch while the plain sum of
  their prompts stays within ``max_num_batched_tokens`` (4096), fewer than ``max_num_seqs``
  (128) requests are admitted in all, the batch has fewer than ``max_num_seqs / pp`` requests,
  and ``free blocks - ceil(P / 16) >= watermark`` (1% of blocks); the first that fails stops it
  (head-of-line). No chunking: a prompt is prefilled whole.
- Otherwise a *decode* batch takes the running requests that are not in flight (oldest arrival
  first, at most ``max_num_seqs / pp``), one token each; each needs one free block, else the
  latest-arrived is restarted (recompute).
- A batch passes the ``pp`` stages in order, each a FIFO server; tokens are credited when it
  leaves the last stage. The prefill produces the first token; a request with ``D`` output
  tokens then needs ``D - 1`` decode batches.
- Stage times come from :class:`servoir.hardware.vidur.VidurStageTime`.

Event skipping: requests that always travel together form a *group* with aggregate state (size,
sum of processed tokens, finish heap, block phases), so a decode batch costs O(log n) whatever
its size. With nothing waiting, decode groups fall into a cycle (a lone group, or two groups
taking turns in a two-stage pipeline) whose period is known in closed form; the cycle runs as one
event until the next finish, KV-bucket change or arrival. An arrival ends it at the start of the
cycle in progress and the pipeline's own events are replayed up to the arrival, so the result is
the literal engine's (tests compare the two).

With two stages the cluster runs :class:`servoir.sim.vidur_v0_pp2.TwoStageVidurV0`, the same
rules with two slots instead of this class's heap of stage events; ``fast=False`` (the literal
path of this class) is the reference both are tested against.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

from servoir.sim.state import FINISHED, RUNNING, WAITING, RequestState

STAGE_END, STRETCH_END = 0, 1


class Group:
    """Running requests that move through the pipeline together (one decode batch)."""

    __slots__ = ("members", "r", "sum_proc", "fin", "phase_cnt", "last_mean")

    def __init__(self) -> None:
        self.members: dict[int, None] = {}
        self.r = 0  # decode rounds this group has completed
        self.sum_proc = 0  # sum of processed tokens over members, at round r
        self.fin: list[tuple[int, int]] = []  # (finish round, rid)
        self.phase_cnt = [0] * 16
        self.last_mean = 0  # mean KV of its latest batch


class Batch:
    """A batch in the pipeline: a prefill list or a decode group, with its stage times."""

    __slots__ = ("group", "prefill", "times", "need")

    def __init__(self, times: tuple[float, ...], group: Group | None = None,
                 prefill: list[int] | None = None, need: int = 0) -> None:
        self.group = group
        self.prefill = prefill
        self.times = times
        self.need = need  # blocks allocated at formation (decode)


class VidurV0Instance:
    """One Vidur-v0 replica. Same driver interface as :class:`servoir.sim.instance.Instance`."""

    def __init__(self, idx: int, *, pp: int, max_num_seqs: int, max_num_batched_tokens: int,
                 num_blocks: int, block_size: int, stage_time: Any, state: RequestState,
                 schedule: Callable[[float, int, int], None],
                 on_finish: Callable[[int, float], None], record_series: bool = True,
                 horizon: Callable[[], float] = lambda: 0.0, fast: bool = True) -> None:
        if block_size != 16:
            raise ValueError("vidur_v0 models Vidur's block size of 16 tokens")
        self.idx = idx
        self.pp = pp
        self.cap = max_num_seqs
        self.micro = max_num_seqs // pp
        self.max_tokens = max_num_batched_tokens
        self.total_blocks = num_blocks
        self.watermark = int(0.01 * num_blocks)
        self.bs = block_size
        self.stage_time = stage_time
        self.st = state
        self.schedule = schedule
        self.on_finish = on_finish
        self.horizon = horizon  # internal events before it are processed without the cluster
        self.fast = fast  # inlined common paths and stretches (False: the literal path only)
        self.used = 0
        self.queue: deque[int] = deque()  # Vidur's _request_queue (FIFO; restarts at the front)
        self.admitted = 0  # Vidur's len(allocation_map)
        self.ready: list[Group] = []  # Vidur's _preempted_requests, as groups
        self.stage_q: list[deque[Batch]] = [deque() for _ in range(pp)]
        self.stage_busy: list[Batch | None] = [None] * pp
        self.stage_end_t = [0.0] * pp
        self.prefills_in_flight = 0
        self.stage_seq = [0] * pp  # push order of each stage's running batch
        self.stage_start_t = [0.0] * pp
        self.running_batches = 0
        self.running_stages = 0
        self.events: list[tuple[float, int, int, int]] = []  # (time, seq, kind, stage|epoch)
        # Event skipping: decode groups in a regular cycle (see _try_stretch).
        self.stretch: list[Group] | None = None
        self.stretch_t0 = 0.0
        self.stretch_period = 0.0
        self.stretch_batches: list[Batch] = []  # in flight at its start; recur every cycle
        self.stretch_k = 0
        self.stretch_epoch = 0
        self.replaying = False
        self.seq = 0
        self.version = 0
        self.next_t = math.inf
        self.num_preemptions = 0
        self.num_steps = 0
        self.num_iterations = 0
        self.record_series = record_series
        self.s_time = array("d")
        self.s_running = array("q")
        self.s_waiting = array("q")
        self.s_used = array("q")

    # ------------------------------------------------------------------ driver interface
    @property
    def waiting(self) -> deque[int]:
        """Requests not yet admitted (for the cluster's replica table)."""
        return self.queue

    @property
    def running(self) -> range:
        """Admitted, unfinished requests (only its length is used)."""
        return range(self.admitted)

    def arrive(self, rid: int, now: float) -> None:
        """A request joins the FIFO queue; the scheduler runs."""
        st = self.st
        st.instance[rid] = self.idx
        st.status[rid] = WAITING
        if self.stretch is not None:
            self._cut_stretch(now)  # first: the replay up to `now` must not see this request
        self.queue.append(rid)
        self._on_schedule(now)
        self._reschedule()
        if self.record_series:
            self._record(now)

    def step_end(self, now: float, version: int) -> None:
        """Process the internal event due at ``now``, and every later one due before the
        cluster's next event (nothing else can happen in between)."""
        if version != self.version:
            return
        ev = self.events
        horizon = self.horizon
        while True:
            t, _, kind, arg = heapq.heappop(ev)
            if kind == STAGE_END:
                self._stage_end(arg, t)
            elif arg == self.stretch_epoch and self.stretch is not None:
                self._end_stretch(t)
            while ev and ev[0][2] == STRETCH_END and ev[0][3] != self.stretch_epoch:
                heapq.heappop(ev)
            if not ev or ev[0][0] >= horizon():
                break
        self.next_t = math.inf
        self._reschedule()

    def _push(self, t: float, stage: int, kind: int = STAGE_END) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, stage))

    def _reschedule(self) -> None:
        ev = self.events
        while ev and ev[0][2] == STRETCH_END and ev[0][3] != self.stretch_epoch:
            heapq.heappop(ev)  # a stretch that was cut
        if ev and ev[0][0] != self.next_t:
            self.next_t = self.events[0][0]
            self.version += 1
            self.schedule(self.next_t, self.idx, self.version)

    # ------------------------------------------------------------------ pipeline
    def _start_stage(self, s: int, now: float) -> None:
        if self.stage_busy[s] is None and self.stage_q[s]:
            batch = self.stage_q[s].popleft()
            self.stage_busy[s] = batch
            self.stage_start_t[s] = now
            self.stage_end_t[s] = now + batch.times[s]
            self._push(self.stage_end_t[s], s)
            self.stage_seq[s] = self.seq

    def _stage_end(self, s: int, now: float) -> None:
        busy = self.stage_busy
        batch = busy[s]
        busy[s] = None
        if s == 0:
            self.running_stages -= 1
        if self.stage_q[s]:
            self._start_stage(s, now)
        last = self.pp - 1
        if s < last:
            self.stage_q[s + 1].append(batch)
            if busy[s + 1] is None:
                self._start_stage(s + 1, now)
        else:
            self.running_batches -= 1
            self._batch_end(batch, now)  # type: ignore[arg-type]
        if (s == 0 or s == last) and self.running_stages == 0:
            self._on_schedule(now)

    # ------------------------------------------------------------------ batch formation
    def _on_schedule(self, now: float) -> None:
        if self.running_batches < self.pp and self.running_stages == 0:
            batch = self._prefill_batch(now) or self._decode_batch(now)
            if batch is not None:
                self.running_batches += 1
                self.running_stages += 1
                self.num_steps += 1
                self.stage_q[0].append(batch)
                self._start_stage(0, now)
                if batch.group is not None and self.fast and not self.replaying:
                    self._try_stretch(now)

    def _prefill_batch(self, now: float) -> Batch | None:
        st, q = self.st, self.queue
        total = 0
        rids: list[int] = []
        lens: list[int] = []
        while q:
            rid = q[0]
            p = st.prompt[rid] + st.gen[rid]  # a restarted request re-prefills all it had
            blocks = -(-p // self.bs)
            if self.total_blocks - self.used - blocks < self.watermark:
                break
            if total + p > self.max_tokens or self.admitted == self.cap or len(rids) == self.micro:
                break
            q.popleft()
            self.used += blocks
            st.held[rid] = blocks
            self.admitted += 1
            st.status[rid] = RUNNING
            if st.first_scheduled_at[rid] != st.first_scheduled_at[rid]:
                st.first_scheduled_at[rid] = now
            rids.append(rid)
            lens.append(p)
            total += p
        if not rids:
            return None
        if self.record_series:
            self._record(now)
        self.prefills_in_flight += 1
        return Batch(self.stage_time.prefill_stages(lens), None, rids)

    def _decode_batch(self, now: float) -> Batch | None:
        ready = self.ready
        if not ready:
            return None
        if len(ready) == 1 and len(ready[0].members) <= self.micro:
            g = ready.pop()
        else:
            g = self._gather()
        need = g.phase_cnt[(1 - g.r) % 16]
        if need >= self.total_blocks - self.used:
            g = self._make_room(g, now)  # rare: memory nearly full
            if g is None:
                return None
            need = g.phase_cnt[(1 - g.r) % 16]
        self.used += need
        b = len(g.members)
        mean_kv = (g.sum_proc + b) // b
        g.last_mean = mean_kv
        return Batch(self.stage_time.decode_stages(b, mean_kv), g, None, need)

    def _gather(self) -> Group:
        """Vidur's decode selection: every ready request, oldest arrival first, at most
        ``max_num_seqs / pp``. Ready groups merge into one."""
        groups = self.ready
        sizes = [len(g.members) for g in groups]
        if sum(sizes) <= self.micro:
            self.ready = []
            # The largest group absorbs the others (the first of equals: a stable choice).
            target = groups[sizes.index(max(sizes))]
            for g in groups:
                if g is not target:
                    self._absorb(target, g, list(g.members))
            return target
        # Split by arrival: the oldest `micro` form the batch, the rest stay ready.
        arr = self.st.arrival_at
        everyone = sorted((arr[m], m, g) for g in groups for m in g.members)
        chosen, rest = Group(), Group()
        for i, (_, m, g) in enumerate(everyone):
            self._absorb(chosen if i < self.micro else rest, g, [m])
        self.ready = [rest]
        return chosen

    def _absorb(self, target: Group, src: Group, rids: list[int]) -> None:
        """Move ``rids`` from ``src`` into ``target``, rebasing their progress."""
        st = self.st
        for m in rids:
            proc = st.computed[m] + (src.r - st.base_it[m])
            src.members.pop(m, None)
            src.phase_cnt[(st.computed[m] - st.base_it[m]) % 16] -= 1
            src.sum_proc -= proc
            self._join(target, m, proc)

    def _join(self, g: Group, rid: int, proc: int) -> None:
        st = self.st
        st.computed[rid] = proc
        st.base_it[rid] = g.r
        g.members[rid] = None
        g.sum_proc += proc
        g.phase_cnt[(proc - g.r) % 16] += 1
        st.epoch[rid] += 1
        # Finishes when processed reaches prompt + output.
        heapq.heappush(g.fin, (g.r + st.prompt[rid] + st.output[rid] - proc, rid))

    def _make_room(self, g: Group, now: float) -> Group | None:
        """Vidur's per-request allocation loop with restarts, when blocks are short."""
        st = self.st
        order = sorted(g.members, key=lambda m: (st.arrival_at[m], m))
        kept: list[int] = []
        while order:
            rid = order.pop(0)
            proc = st.computed[rid] + g.r - st.base_it[rid]
            need = 1 if (proc - 1) % 16 == 0 else 0
            while self.total_blocks - self.used < 1:
                victim = order.pop() if order else rid
                self._restart(g, victim)
                if victim == rid:
                    break
            else:
                self.used += need
                kept.append(rid)
        if not kept:
            return None
        fresh = Group()
        self._absorb(fresh, g, kept)
        fresh.r = 0
        self.used -= sum(1 for m in kept
                         if (st.computed[m] - 1) % 16 == 0)  # re-counted at formation
        return fresh

    def _restart(self, g: Group, rid: int) -> None:
        st = self.st
        proc = st.computed[rid] + g.r - st.base_it[rid]
        g.members.pop(rid, None)
        g.phase_cnt[(st.computed[rid] - st.base_it[rid]) % 16] -= 1
        g.sum_proc -= proc
        self.used -= -(-(proc - 1) // self.bs)
        self.admitted -= 1
        st.gen[rid] = proc - st.prompt[rid]
        st.computed[rid] = 0
        st.epoch[rid] += 1
        st.num_preemptions[rid] += 1
        self.num_preemptions += 1
        st.status[rid] = WAITING
        self.queue.appendleft(rid)

    # ------------------------------------------------------------------ event skipping
    def _round_needs(self, g: Group, first: int, count: int) -> int:
        """Blocks group ``g`` allocates at the formation of rounds ``first .. first+count-1``
        (relative to ``g.r``): one per member whose length crosses a block boundary."""
        full, rem = divmod(count, 16)
        if not rem:
            return full * len(g.members)
        # Round r + first + i allocates for phase (1 - r - first - i) % 16, i < rem: the window
        # of `rem` phases ending at s (going down), wrapping past phase 0.
        s = (1 - g.r - first) % 16 + 1
        pc = g.phase_cnt
        if s >= rem:
            return full * len(g.members) + sum(pc[s - rem:s])
        return full * len(g.members) + sum(pc[:s]) + sum(pc[s - rem:])

    def _try_stretch(self, now: float) -> None:
        """Start a stretch if the decode batch just put in stage 0 at ``now`` begins a regular
        cycle: a lone group (period: the sum of its stage times), or, with two stages, a pair
        taking turns whose other member enters stage 1 now.

        Why the pair is periodic: with X entering stage 0 and Y stage 1 at ``T``, X's stage 1
        and Y's next stage 0 both start at ``a = T + max(x0, y1)`` (Y re-forms when it is ready
        and stage 0 is free; X needs stage 1 free), and at ``T' = a + max(x1, y0)`` X re-forms
        and Y enters stage 1 together again. So the state recurs every
        ``max(x0, y1) + max(x1, y0)`` until a stage time changes (a finish or a KV bucket)."""
        busy = self.stage_busy
        if (self.queue or self.prefills_in_flight or self.stage_q[0] or self.stage_q[-1]
                or self.ready or busy[0] is None or busy[0].group is None):
            return
        x = busy[0].group
        xt = busy[0].times
        if self.running_batches == 1:
            groups, period = [x], sum(xt)
        elif (self.pp == 2 and busy[1] is not None and busy[1].group is not None
              and self.stage_start_t[1] == now):
            y = busy[1].group
            yt = busy[1].times
            if xt[1] == yt[0] or xt[0] == yt[1]:
                return  # simultaneous events: leave their order to the literal path
            # One cycle: Y's stage 1 and X's stage 0 run together, then X's stage 1 and Y's
            # stage 0; each pair ends when its longer member does (max-plus, see module doc).
            groups, period = [x, y], max(xt[0], yt[1]) + max(xt[1], yt[0])
        else:
            return
        k = 1 << 30
        for g in groups:
            m = g.last_mean
            k = min(k, g.fin[0][0] - g.r - 1, -(-m // 256) * 256 - m)
        k = self._fit_memory(groups, k)
        if k < 2:
            return
        self.stretch = groups
        self.stretch_t0 = now
        self.stretch_period = period
        self.stretch_k = k
        self.stretch_batches = [busy[i] for i in range(len(groups))]  # type: ignore[misc]
        self.stretch_epoch += 1
        ev = [e for e in self.events if e[2] != STAGE_END]  # the stretch owns the pipeline
        heapq.heapify(ev)
        self.events[:] = ev
        self._push(now + k * period, self.stretch_epoch, STRETCH_END)

    def _fit_memory(self, groups: list[Group], k: int) -> int:
        """``k``, halved until the blocks ``groups`` allocate over ``k`` rounds surely fit."""
        total_b = 0
        for g in groups:
            total_b += len(g.members)
        free = self.total_blocks - self.used - total_b
        # Over k rounds a member allocates at most k // 16 + 1 blocks: check exactly only when
        # that bound does not already fit (memory tight: shorter stretch, slow path near full).
        while k >= 2 and (k // 16 + 1) * total_b >= free and (
                sum(self._round_needs(g, 1, k) for g in groups) >= free):
            k //= 2
        return k

    def _advance_stretch(self, j: int) -> float:
        """Close the stretch after ``j`` whole cycles: each of its groups has completed and
        re-formed ``j`` more rounds (blocks, progress, counters). Returns that cycle's start."""
        groups = self.stretch
        assert groups is not None
        if j:
            for g in groups:
                self.used += self._round_needs(g, 1, j)
                g.r += j
                g.sum_proc += len(g.members) * j
                g.last_mean += j
        self.num_iterations += j * len(groups)
        self.num_steps += j * len(groups)
        self.stretch = None
        return self.stretch_t0 + j * self.stretch_period

    def _materialise(self, j: int) -> float:
        """End the stretch at the start of its ``j``-th cycle: every group has completed and
        re-formed ``j`` more rounds; the pipeline is as at the stretch's start, ``j`` periods
        later. Returns that time."""
        groups = self.stretch
        assert groups is not None
        t = self._advance_stretch(j)
        self.stretch_epoch += 1
        # Put the batches back in flight, in the order the literal path pushes them.
        for s in range(len(groups) - 1, -1, -1):
            batch = self.stretch_batches[s]
            self.stage_busy[s] = batch
            self.stage_start_t[s] = t
            self.stage_end_t[s] = t + batch.times[s]
            self._push(self.stage_end_t[s], s)
            self.stage_seq[s] = self.seq
        return t

    def _end_stretch(self, now: float) -> None:
        self._materialise(self.stretch_k)

    def _cut_stretch(self, now: float) -> None:
        """An arrival at ``now``: end the stretch at the start of the cycle in progress, then
        replay the pipeline's own events up to ``now`` (none of them finishes a request)."""
        j = min(int((now - self.stretch_t0) / self.stretch_period), self.stretch_k)
        self._materialise(j)
        self.replaying = True
        ev = self.events
        while ev and ev[0][0] < now:
            t, _, kind, arg = heapq.heappop(ev)
            if kind == STAGE_END:
                self._stage_end(arg, t)
        self.replaying = False

    # ------------------------------------------------------------------ batch end
    def _batch_end(self, batch: Batch, now: float) -> None:
        self.num_iterations += 1
        st = self.st
        if batch.prefill is not None:
            self.prefills_in_flight -= 1
            g = Group()
            for rid in batch.prefill:
                proc = st.prompt[rid] + st.gen[rid] + 1  # the prefill yields one token
                if st.first_token_at[rid] != st.first_token_at[rid]:
                    st.first_token_at[rid] = now
                if proc >= st.prompt[rid] + st.output[rid]:
                    self._finish(rid, proc, now)
                    continue
                self.used -= st.held[rid]  # blocks are re-derived from the length from now on
                self.used += -(-(proc - 1) // self.bs)
                st.held[rid] = 0
                self._join(g, rid, proc)
            if g.members:
                self.ready.append(g)
            return
        g = batch.group
        assert g is not None
        g.r += 1
        g.sum_proc += len(g.members)
        self._round_finishes(g, now)
        if g.members:
            self.ready.append(g)

    def _round_finishes(self, g: Group, now: float) -> None:
        """Members of ``g`` whose last token came with the round that just ended."""
        st = self.st
        while g.fin and g.fin[0][0] <= g.r:
            _, rid = heapq.heappop(g.fin)
            if rid not in g.members:
                continue
            proc = st.computed[rid] + g.r - st.base_it[rid]
            g.members.pop(rid)
            g.phase_cnt[(st.computed[rid] - st.base_it[rid]) % 16] -= 1
            g.sum_proc -= proc
            self.used -= -(-(proc - 1) // self.bs)
            self._finish(rid, proc, now)

    def _finish(self, rid: int, proc: int, now: float) -> None:
        st = self.st
        if st.held[rid]:
            self.used -= st.held[rid]
            st.held[rid] = 0
        st.gen[rid] = st.output[rid]
        st.computed[rid] = proc
        st.status[rid] = FINISHED
        st.finish_at[rid] = now
        self.admitted -= 1
        self.on_finish(rid, now)
        if self.record_series:
            self._record(now)

    def _record(self, now: float) -> None:
        self.s_time.append(now)
        self.s_running.append(self.admitted)
        self.s_waiting.append(len(self.queue))
        self.s_used.append(self.used)


"""Admission by the policy: the batch view, the future-peak memory check, a shared base class.

The plain :class:`~servoir.policies.base.Scheduler` only ranks; the engine admits in rank order
and stops at the first request that does not fit *now* (vLLM). KV-aware schedulers from the
literature (MC-SF, A_max/A_min, Sorted-F, VTC, GSA) decide which waiting requests enter the batch
from the whole batch's state and the predicted lengths. They implement the optional extension

``select(view: BatchView) -> list[int]``
    indices into the waiting arrays of ``view``, in the order to admit. The engine admits them in
    that order while the sequence cap and the token budget allow, skipping one whose first chunk
    does not fit in the free blocks now. ``select`` must not depend on the order of the arrays
    (break ties by arrival time, then request id), and must admit something when nothing runs and
    requests wait (work conservation).
``choose_victim(view: BatchView) -> int``
    index into the running arrays of the request to preempt (recompute) when memory runs out;
    the view holds only the running requests that may be preempted, in admission order.

Both the simulator (``servoir.sim.instance``) and the unit-time model of Jaillet et al.
(``servoir.sim.unit_time``) call these, so one policy object is judged in both. Policies are
called only at events (an arrival, a finish, a preemption, an iteration with prefill work), never
per decode iteration.

Memory model of the check. A request that holds ``length`` tokens now and has ``r`` predicted
iterations left holds ``length + tau`` tokens ``tau`` iterations from now (``1 <= tau <= r``)
and then frees them. The batch's memory is piecewise linear and increasing between completions,
so its peaks sit at completion instants: admitting a candidate is feasible when at every
completion instant of the tentative batch at which the candidate is still running (and at the
candidate's own last iteration) the predicted memory is within capacity. Instants after the
candidate finishes are unchanged by admitting it. In the paged engine every request is charged
``block_size - 1`` extra tokens, which covers the rounding up to whole blocks (a safe check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from servoir.policies.base import ParamsMixin


@dataclass(frozen=True, slots=True)
class BatchView:
    """What an admission decision sees (read-only numpy columns).

    Running requests are in admission order; waiting requests in no particular order.
    ``*_length``: tokens the request holds now (running) or would hold when admitted (waiting:
    prompt plus the output it keeps across a recompute). ``*_done``: output tokens produced that
    count toward finishing. ``wait_seen``: output tokens ever observed, so the true output is
    known to exceed it (equal to ``done`` in the paged engine, where recompute keeps the tokens;
    larger in the unit-time model, where a restart starts over). ``*_predicted``: the prediction
    the policy trusts (NaN when none). ``fin_*``: requests that finished since the previous
    decision, with their output tokens (fairness accounting).
    """

    now: float
    capacity_tokens: int
    block_size: int
    run_ids: np.ndarray
    run_length: np.ndarray
    run_done: np.ndarray
    run_predicted: np.ndarray
    run_tenant: tuple[Any, ...]
    wait_ids: np.ndarray
    wait_length: np.ndarray
    wait_done: np.ndarray
    wait_seen: np.ndarray
    wait_predicted: np.ndarray
    wait_arrival: np.ndarray
    wait_tenant: tuple[Any, ...]
    fin_ids: np.ndarray
    fin_done: np.ndarray
    fin_tenant: tuple[Any, ...]


def make_view(now: float, capacity_tokens: int, block_size: int, run: list[tuple],
              wait: list[tuple], fin: list[tuple]) -> BatchView:
    """Build a view from rows: run ``(id, length, done, predicted, tenant)``, wait ``(id, length,
    done, seen, predicted, arrival, tenant)``, fin ``(id, done, tenant)``."""

    def col(rows: list[tuple], j: int, dtype: Any) -> np.ndarray:
        a = np.fromiter((r[j] for r in rows), dtype=dtype, count=len(rows))
        a.setflags(write=False)
        return a

    i8, f8 = np.int64, np.float64
    return BatchView(
        now, capacity_tokens, block_size,
        col(run, 0, i8), col(run, 1, i8), col(run, 2, i8), col(run, 3, f8),
        tuple(r[4] for r in run),
        col(wait, 0, i8), col(wait, 1, i8), col(wait, 2, i8), col(wait, 3, i8),
        col(wait, 4, f8), col(wait, 5, f8), tuple(r[6] for r in wait),
        col(fin, 0, i8), col(fin, 1, i8), tuple(r[2] for r in fin))


class FuturePeak:
    """Predicted memory profile of a batch, with an O(log n) feasibility test per candidate.

    ``lengths[k]`` tokens now, ``remaining[k] >= 1`` iterations left. ``m(tau)`` = sum over
    ``remaining[k] >= tau`` of ``lengths[k] + tau``. :meth:`fits` tests whether adding
    ``(c, r)`` keeps ``m(tau) + c + tau <= capacity`` for every completion instant ``tau <= r``
    and at ``tau = r``; :meth:`add` inserts it (O(n)).
    """

    __slots__ = ("cap", "c", "r", "suffix", "mem", "prefmax")

    def __init__(self, lengths: np.ndarray, remaining: np.ndarray, capacity: float) -> None:
        self.cap = float(capacity)
        order = np.argsort(remaining, kind="stable")
        self.r = np.asarray(remaining, dtype=np.float64)[order]
        self.c = np.asarray(lengths, dtype=np.float64)[order]
        self._rebuild()

    def _rebuild(self) -> None:
        n = len(self.r)
        self.suffix = np.concatenate([np.cumsum(self.c[::-1])[::-1], [0.0]])
        if n == 0:
            self.mem = self.prefmax = np.zeros(0)
            return
        first = np.searchsorted(self.r, self.r, side="left")
        self.mem = self.suffix[first] + self.r * (n - first)
        self.prefmax = np.maximum.accumulate(self.mem + self.r)

    def memory_at(self, tau: float) -> float:
        """Predicted memory ``tau`` iterations from now."""
        i0 = int(np.searchsorted(self.r, tau, side="left"))
        return float(self.suffix[i0] + tau * (len(self.r) - i0))

    def peak(self) -> float:
        """Largest predicted memory over the future (0 for an empty batch)."""
        return float(self.mem.max()) if len(self.mem) else 0.0

    def fits(self, c: float, r: float) -> bool:
        """Would a request of ``c`` tokens now and ``r`` iterations left keep memory feasible?"""
        room = self.cap - c
        if self.memory_at(r) + r > room:
            return False
        idx = int(np.searchsorted(self.r, r, side="right"))
        return idx == 0 or self.prefmax[idx - 1] <= room

    def fits_many(self, c: np.ndarray, r: np.ndarray) -> np.ndarray:
        """:meth:`fits` for many candidates at once (each against the current profile)."""
        room = self.cap - c
        i0 = np.searchsorted(self.r, r, side="left")
        ok = self.suffix[i0] + r * (len(self.r) - i0) + r <= room
        if len(self.r):
            idx = np.searchsorted(self.r, r, side="right")
            ok &= (idx == 0) | (self.prefmax[np.maximum(idx - 1, 0)] <= room)
        return ok

    def add(self, c: float, r: float) -> None:
        """Insert a request into the profile."""
        i = int(np.searchsorted(self.r, r, side="right"))
        self.r = np.insert(self.r, i, r)
        self.c = np.insert(self.c, i, c)
        self._rebuild()


def refined(predicted: np.ndarray, seen: np.ndarray, fallback: float) -> np.ndarray:
    """Estimated total output: the prediction (``fallback`` when NaN), never below ``seen + 1``.

    A request that has produced ``seen`` tokens and not finished has at least ``seen + 1``; this
    is the dynamic refinement of A_min (and of every lookahead policy here).
    """
    p = np.where(np.isnan(predicted), fallback, predicted)
    return np.maximum(p, seen + 1.0)


class LookaheadScheduler(ParamsMixin):
    """Shared mechanics: sort by :meth:`keys`, admit with the future-peak check.

    Subclasses set ``trusts`` (which prediction they read), implement :meth:`keys` (admission
    order, smaller first) and :meth:`victim_keys` (larger is preempted first), and may set
    ``strict = True`` to stop at the first candidate that fails the check instead of skipping it.
    ``default_output_tokens`` is the estimate used when no prediction is given.
    """

    default_output_tokens: float = 256.0
    strict: bool = False

    def reset(self, rng: np.random.Generator) -> None:
        """No run-time state by default."""

    def rank(self, request: Any, now: float) -> float:
        """Queue-entry rank (used only to hold the waiting queue; ``select`` decides)."""
        return request.arrival_at

    def estimates(self, predicted: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Estimated total output of each request (default: the refined prediction)."""
        return refined(predicted, seen, self.default_output_tokens)

    def keys(self, view: BatchView, est: np.ndarray) -> np.ndarray:
        """Admission keys of the waiting requests (smaller first)."""
        return est

    def running_peak(self, view: BatchView) -> FuturePeak:
        """The running batch's predicted memory profile: each request holds its length (rounded
        up to whole blocks) and grows until its estimated finish."""
        est_run = self.estimates(view.run_predicted, view.run_done)
        return FuturePeak(view.run_length + view.block_size - 1,
                          np.maximum(est_run - view.run_done, 1.0), view.capacity_tokens)

    def victim_keys(self, view: BatchView, est: np.ndarray) -> np.ndarray:
        """Preemption keys of the running requests (larger first; ties: latest admitted)."""
        return est

    def select(self, view: BatchView) -> list[int]:
        """Waiting requests to admit, in order: sorted by key, each passing the check."""
        nw = len(view.wait_ids)
        if nw == 0:
            return []
        slack = view.block_size - 1
        peak = self.running_peak(view)
        est = self.estimates(view.wait_predicted, view.wait_seen)
        keys = self.keys(view, est)
        order = np.lexsort((view.wait_ids, view.wait_arrival, keys))
        cs = (view.wait_length + slack)[order].astype(np.float64)
        rs = np.maximum(est - view.wait_done, 1.0)[order]
        chosen: list[int] = []
        start = 0
        if len(view.run_ids) == 0:  # work conservation: an empty batch takes the first
            peak.add(cs[0], rs[0])
            chosen.append(int(order[0]))
            start = 1
        while start < nw:
            # Test every remaining candidate against the current profile at once; admit the
            # first that fits (skip and continue) or stop at the first that fails (strict).
            ok = peak.fits_many(cs[start:], rs[start:])
            if self.strict:
                j = start if ok[0] else -1
            else:
                hits = np.flatnonzero(ok)
                j = start + int(hits[0]) if len(hits) else -1
            if j < 0:
                break
            peak.add(cs[j], rs[j])
            chosen.append(int(order[j]))
            start = j + 1
        return chosen

    def choose_victim(self, view: BatchView) -> int:
        """The running request with the largest victim key, ties to the latest admitted."""
        est = self.estimates(view.run_predicted, view.run_done)
        keys = self.victim_keys(view, est)
        # Last occurrence of the maximum: the latest admitted among ties.
        return int(len(keys) - 1 - np.argmax(keys[::-1]))

"""Two-stage pipelines of ``engine.preset=vidur_v0`` without an event heap.

Vidur's replica with ``pp = 2`` (the TP2 x PP2 set-up users compare against) holds at most two
batches: the one formed last (``b0``: in stage 0, or done with it and waiting for stage 1) and
the one before it (``b1``: in stage 1). So the next internal event is the earlier of two known
times, and a batch is formed exactly when ``b0`` is empty (Vidur's conditions "fewer than
``pp`` batches in flight" and "nothing in stage 0" reduce to that). This class runs the same
rules as :class:`~servoir.sim.vidur_v0.VidurV0Instance` (batch formation, memory, restarts and
finishes are inherited unchanged) with two slots instead of a heap of stage events, and jumps
over regular decode cycles in closed form:

- *pair*: decode groups X and Y take turns; X is formed at ``T`` while Y enters stage 1. The
  next formation (Y) is at ``T + max(x0, y1)``, the one after (X) at ``T + period`` with
  ``period = max(x0, y1) + max(x1, y0)`` (max-plus), as long as stage times are unchanged;
- *lone*: one decode group, formed again when its batch ends: ``period = x0 + x1``.

A jump stops before any round that finishes a request, before a KV bucket changes a stage time
and before memory could run short; an arrival during a jump ends it at the start of the cycle
in progress and the few events up to the arrival run normally (none finishes a request).

Cost: O(1) per batch outside jumps (plus O(log n) per finish), O(1) per jump. The literal
heap engine (``fast=False`` on the base class) is the reference; a hypothesis test checks the
two agree to 1e-9 on random workloads.
"""

from __future__ import annotations

import math

from servoir.sim.vidur_v0 import Batch, VidurV0Instance

INF = math.inf


class TwoStageVidurV0(VidurV0Instance):
    """A Vidur-v0 replica with ``pp == 2``; same driver interface and results as the base."""

    def __init__(self, idx: int, **kw) -> None:
        super().__init__(idx, **kw)
        if self.pp != 2:
            raise ValueError("TwoStageVidurV0 models two pipeline stages")
        self.b0: Batch | None = None
        self.t0 = INF  # stage-0 end of b0; INF once b0 waits for stage 1
        self.b1: Batch | None = None
        self.t1 = INF  # stage-1 end of b1 (its batch end)
        self.s1_start = -INF  # when b1 entered stage 1
        self.jump_end = INF  # end of the closed-form jump in progress (INF: none)

    # ------------------------------------------------------------------ driver interface
    # ``arrive`` is the base class's: it cuts a jump (``_cut_stretch``), queues the request and
    # asks for a batch (``_on_schedule``).
    def _on_schedule(self, now: float) -> None:
        if self.b0 is None:  # Vidur's "fewer than pp batches and stage 0 free"
            self._form(now)

    def step_end(self, now: float, version: int) -> None:
        """Process internal events from ``now`` until the cluster's next event."""
        if version != self.version:
            return
        horizon = self.horizon
        h = horizon()
        first = True  # the event due at `now` runs even if the cluster has one at `now` too
        while True:
            if self.stretch is not None:
                if self.jump_end >= h and not first:
                    break
                self._end_jump()
            else:
                t0, t1 = self.t0, self.t1
                if t1 <= t0:
                    if t1 == INF or (t1 >= h and not first):
                        break
                    self._stage1_end(t1)
                    h = horizon()  # a finish may have given the cluster an earlier event
                else:
                    if t0 >= h and not first:
                        break
                    self._stage0_end(t0)
            first = False
        self.next_t = INF  # the event that called us is spent
        self._reschedule()

    def _reschedule(self) -> None:
        t = self.jump_end if self.stretch is not None else min(self.t0, self.t1)
        if t != self.next_t:
            self.next_t = t
            self.version += 1  # any event already in the cluster's heap is stale
            if t != INF:
                self.schedule(t, self.idx, self.version)

    # ------------------------------------------------------------------ the two slots
    def _stage0_end(self, now: float) -> None:
        if self.b1 is None:  # stage 1 is free: b0 moves on, and stage 0 can take a batch
            self.b1, self.t1, self.s1_start = self.b0, now + self.b0.times[1], now
            self.b0, self.t0 = None, INF
            self._form(now)
        else:
            self.t0 = INF  # b0 waits for stage 1; two batches in flight: nothing is formed

    def _stage1_end(self, now: float) -> None:
        done = self.b1
        b0 = self.b0
        if b0 is not None and self.t0 == INF:  # the waiting batch enters stage 1
            self.b1, self.t1, self.s1_start = b0, now + b0.times[1], now
            self.b0 = b0 = None
        else:
            self.b1, self.t1 = None, INF
        g = done.group  # type: ignore[union-attr]
        if g is None:
            self._batch_end(done, now)  # type: ignore[arg-type]
        else:  # a decode round ends (VidurV0Instance._batch_end, inlined: the hot path)
            self.num_iterations += 1
            g.r += 1
            g.sum_proc += len(g.members)
            if g.fin[0][0] <= g.r:
                self._round_finishes(g, now)
            if g.members:
                self.ready.append(g)
        if b0 is None:
            self._form(now)

    def _form(self, now: float) -> None:
        batch = (self._prefill_batch(now) if self.queue else None) or (
            self._decode_batch(now) if self.ready else None)
        if batch is None:
            return
        self.num_steps += 1
        t0 = now + batch.times[0]
        # If stage 1 is still busy when stage 0 is done, the batch just waits (nothing else
        # happens at that moment): skip that event and let stage 1's end move it on.
        self.b0, self.t0 = batch, (INF if self.b1 is not None and t0 <= self.t1 else t0)
        if (batch.group is not None and not self.replaying and not self.ready
                and not self.queue and not self.prefills_in_flight):
            self._try_jump(now)

    # ------------------------------------------------------------------ closed-form jumps
    def _try_jump(self, now: float) -> None:
        """Start a jump if the decode batch just formed at ``now`` begins a regular cycle
        (``_form`` has checked that nothing waits, is ready or is being prefilled)."""
        b0, b1 = self.b0, self.b1
        x, xt = b0.group, b0.times  # type: ignore[union-attr]
        m = x.last_mean
        k = min(x.fin[0][0] - x.r - 1, -(-m // 256) * 256 - m)
        if k < 2:
            return
        if b1 is None:
            groups, period, batches = [x], xt[0] + xt[1], [b0]
        elif b1.group is not None and self.s1_start == now:
            y, yt = b1.group, b1.times
            if xt[1] == yt[0] or xt[0] == yt[1]:
                return  # simultaneous events: leave them to the event path
            m = y.last_mean
            k = min(k, y.fin[0][0] - y.r - 1, -(-m // 256) * 256 - m)
            if k < 2:
                return
            groups, period, batches = [x, y], max(xt[0], yt[1]) + max(xt[1], yt[0]), [b0, b1]
        else:
            return
        total_b = len(x.members) if len(groups) == 1 else len(x.members) + len(y.members)
        if (k // 16 + 1) * total_b >= self.total_blocks - self.used - total_b:
            k = self._fit_memory(groups, k)  # memory may be short: the exact check
        if k < 2:
            return
        self.stretch = groups  # type: ignore[assignment]
        self.stretch_t0 = now
        self.stretch_period = period
        self.stretch_k = k
        self.stretch_batches = batches  # they recur unchanged at every cycle start
        self.jump_end = now + k * period
        self.b0 = self.b1 = None
        self.t0 = self.t1 = INF

    def _jump_to(self, j: int) -> float:
        """End the jump at the start of its ``j``-th cycle: each group has completed and
        re-formed ``j`` more rounds, and the slots are as at the jump's start."""
        t = self._advance_stretch(j)
        self.jump_end = INF
        batches = self.stretch_batches
        self.b0 = batches[0]
        self.t0 = t + batches[0].times[0]
        if len(batches) == 2:
            self.b1, self.t1, self.s1_start = batches[1], t + batches[1].times[1], t
        return t

    def _end_jump(self) -> None:
        self._jump_to(self.stretch_k)

    def _cut_stretch(self, now: float) -> None:
        """An arrival at ``now`` ends the jump at the start of the cycle in progress; the
        events before ``now`` then run (none of them finishes a request)."""
        self._jump_to(min(int((now - self.stretch_t0) / self.stretch_period), self.stretch_k))
        self.replaying = True
        while True:
            t0, t1 = self.t0, self.t1
            if t1 <= t0:
                if t1 >= now:
                    break
                self._stage1_end(t1)
            else:
                if t0 >= now:
                    break
                self._stage0_end(t0)
        self.replaying = False


__all__ = ["TwoStageVidurV0"]

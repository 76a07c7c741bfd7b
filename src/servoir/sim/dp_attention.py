"""DP-attention: G ranks of one data-parallel attention group running in lock-step.

In DeepSeek-style serving every decode step ends at a barrier (the expert-parallel all-to-all),
so a step lasts as long as the slowest rank's iteration and the others wait. Requests are
sticky: a request's KV cache pins it to the rank it was placed on.

Each rank is the vLLM v1 engine of :mod:`servoir.sim.instance` (same batching, chunked prefill,
paged KV, recompute preemption, event skipping); this module only takes the clock away from it.
At a step boundary the group

1. ends the step on every rank that was running (a rank whose own stretch continues is advanced
   in closed form, without re-planning);
2. places the requests that arrived since: a per-request router (``route``) puts each in a rank's
   waiting queue; a *late-binding* router (``late_binding = True``, BF-IO) keeps them in the
   group's queue and is asked at every boundary with free slots which of the ``window`` oldest
   go where (``assign``);
3. lets every idle rank form its next iteration, then runs ``k`` lock-step iterations: one if
   any rank has a prefill chunk, otherwise until the first rank's stretch ends or the next
   arrival. Step ``j`` lasts ``max_g (a_g + b_g j)``; the sums over ``k`` steps come from the
   upper envelope of those lines (:mod:`servoir.sim.dp_envelope`), so no per-step work is done.

Definitions (issue #5), over the steps with at least one busy rank: a rank's *load* at a step is
the KV tokens its decoding requests attend; *imbalance* is max minus mean load over the G ranks
(idle ranks count as zero); ``mean_imbalance_tokens`` averages it over steps;
``barrier_idle_frac`` = 1 - sum of rank busy times / (G x sum of step times), a rank's busy time
being its own iteration time (zero when it has nothing to run).
"""

from __future__ import annotations

import math
import time as _time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any

from servoir.errors import InputError
from servoir.policies.routing.rank_table import RankTable
from servoir.rng import stream
from servoir.sim.dp_envelope import envelope, envelope_sum, first_reaching, series
from servoir.sim.instance import EngineParams, Instance
from servoir.sim.state import REJECTED, RequestState
from servoir.views import RequestView
from servoir.workload.requests import Workload


class _Rank(Instance):
    """An engine instance whose steps are started and ended by the group, not by itself."""

    hold = False  # while True, _decide is deferred to the group's boundary
    disaggregated = True  # prefill runs elsewhere (decode group); False: ranks prefill too

    def _iter_time(self, num_tokens: int, num_seqs: int, prefill_work: float,
                   decode_kv: int = 0) -> float:
        if not self.disaggregated:
            return super()._iter_time(num_tokens, num_seqs, prefill_work, decode_kv)
        # Decode ranks: a placed request's KV arrives with it (prefill is disaggregated), so an
        # iteration costs one token per sequence whatever the admissions.
        return self.lat.step_time(num_seqs, num_seqs, decode_kv, 0.0)

    def _decide(self, now: float) -> None:
        if not self.hold:
            super()._decide(now)

    def arrive(self, rid: int, now: float) -> None:
        """Enqueue only; the group decides at the boundary."""
        self.hold = True
        try:
            super().arrive(rid, now)
        finally:
            self.hold = False

    def end_step(self, now: float) -> None:
        """Apply the current step (``step_k`` iterations) without deciding the next."""
        self.hold = True
        try:
            self.step_end(now, self.version)
        finally:
            self.hold = False

    def _start_step(self, plan: Any, now: float) -> None:
        # Instance._start_step; its ``schedule`` is a no-op here, the group sets the clock. The
        # rank's own iteration j of this step takes step_a + step_b * j seconds.
        super()._start_step(plan, now)
        self.load0 = self.K + self.n_dec  # decode KV tokens attended at the first iteration

    def advance(self, k: int) -> None:
        """``k`` iterations of a decode stretch that goes on (no finish, no change)."""
        self.used += self._new_blocks(k)
        self.it += k
        self.K += self.n_dec * k
        self.num_iterations += k
        self.step_k -= k
        self.step_a += self.step_b * k
        self.load0 += self.n_dec * k

    def interrupt(self) -> None:
        """End an advanced stretch here (a request arrived): the rank re-plans."""
        self.busy = False
        self.num_steps += 1


class DPAttentionCluster:
    """G ranks in lock-step behind one router. Build, then :meth:`run` once.

    Same interface as :class:`servoir.sim.cluster.Cluster` for :func:`servoir.sim.collect`
    (``st``, ``n``, ``instances``, ``num_events``); :meth:`dp_summary` gives the barrier
    metrics and :attr:`steps` the per-event step records.
    """

    def __init__(self, workload: Workload, *, num_ranks: int, engine: EngineParams,
                 latency: Any, router: Any, make_scheduler: Callable[[], Any],
                 max_model_len: int, seed: int = 0, record_series: bool = True,
                 check: bool = False, prefill_on_ranks: bool = False) -> None:
        """``prefill_on_ranks``: the ranks also prefill (vLLM data parallelism with expert
        parallelism: every rank runs whole requests, the MoE layers' collectives keep them in
        lock-step); by default they are the decode group of a disaggregated deployment."""
        if engine.pp != 1:
            raise InputError("dp_attention models one pipeline stage per rank; set hardware.pp=1",
                             field="hardware.pp")
        if workload.session_id is not None and (workload.session_id >= 0).any():
            raise InputError("dp_attention does not replay multi-turn sessions yet",
                             field="cluster.mode")
        self.w = workload
        self.n = len(workload)
        self.st = RequestState(workload.num_prompt_tokens.tolist(),
                               workload.num_output_tokens.tolist(),
                               workload.arrival_at.tolist())
        self.max_model_len = max_model_len
        self.g = num_ranks
        self.router = router
        router.reset(num_ranks, stream(seed, "policy.router"))
        # Expert parallelism with prefill on the ranks: a rank's MoE work follows the tokens of
        # all ranks (TableLatency.ep_moe_adjust), which only the group knows.
        self.ep_adjust = getattr(latency, "ep_moe_adjust", None) if prefill_on_ranks else None
        self.ep_applied: dict[int, tuple[int, float]] = {}  # rank -> (step version, seconds)
        self.late = bool(getattr(router, "late_binding", False))
        self.window = int(getattr(router, "window", 1))
        self.table, self.cols = RankTable.allocate(num_ranks)
        if not prefill_on_ranks:
            # A placed request's prompt KV is loaded in one iteration (it arrives prefilled).
            engine = EngineParams(engine.max_num_seqs,
                                  max(engine.max_num_batched_tokens,
                                      max_model_len + engine.max_num_seqs),
                                  engine.block_size, engine.num_blocks, True, 1)
        self.instances: list[_Rank] = []
        for k in range(num_ranks):
            sched = make_scheduler()
            sched.reset(stream(seed, "policy.scheduler", replication=k))
            rank = _Rank(k, engine, latency, sched, self.st, self.view, _no_schedule,
                         self._on_finish, record_series, check)
            rank.disaggregated = not prefill_on_ranks
            self.instances.append(rank)
        self.max_seqs = engine.max_num_seqs
        # What one more sequence adds to a rank's step, in KV-token equivalents (average slope
        # of the per-sequence cost up to a full batch, over the per-KV-token cost).
        b = max(2, engine.max_num_seqs)
        per_seq = (latency.step_time(b, b, 0, 0.0) - latency.step_time(1, 1, 0, 0.0)) / (b - 1)
        self.cols["seq_cost_tokens"][:] = round(per_seq / latency.kv_coef_s)
        # What a rank's iteration costs for running at all (one sequence, less its own cost).
        fixed = max(latency.step_time(1, 1, 0, 0.0) - per_seq, 0.0)
        self.cols["busy_cost_tokens"][:] = round(fixed / latency.kv_coef_s)
        self.pool: deque[int] = deque()
        # The finish hazard routers see: finishes per running request per step, so far.
        # request_steps is the running total of steps["running_sum"], kept so that every
        # boundary reads it in O(1) rather than summing the records.
        self.num_finished = 0
        self.request_steps = 0.0
        self.num_rejected = 0
        self.num_events = 0
        # Per event: start time, iterations k, duration, sum of imbalance, sum of busy times,
        # 1.0 when every rank ran a full batch (max_num_seqs running) throughout, sum of the
        # most loaded rank's load (KV tokens), sum of the sequences running on all ranks.
        self.steps = {name: array("d") for name in
                      ("t_at", "num_steps", "duration_s", "imbalance_sum", "busy_s", "full",
                       "peak_load_sum", "running_sum")}

    def view(self, rid: int) -> RequestView:
        """The read-only view policies get of request ``rid``."""
        w, st = self.w, self.st
        return RequestView(
            rid, st.arrival_at[rid], st.prompt[rid], None,
            None if w.tenant is None else str(w.tenant[rid]),
            None if w.prefix_hashes is None else w.prefix_hashes[rid],
            None if w.program_id is None else str(w.program_id[rid]))

    def _on_finish(self, rid: int, t: float) -> None:
        self.num_finished += 1
        k = self.st.instance[rid]
        self.cols["outstanding_tokens"][k] -= self.st.prompt[rid] + self.st.output[rid]

    # ------------------------------------------------------------------ boundary
    def _refresh(self) -> None:
        cols, st = self.cols, self.st
        if self.request_steps > 0:
            cols["finish_hazard"][:] = self.num_finished / self.request_steps
        for k, r in enumerate(self.instances):
            nw, nr = len(r.waiting), len(r.running)
            cols["num_waiting"][k] = nw
            cols["num_running"][k] = nr
            cols["kv_used_frac"][k] = r.used / r.total_blocks
            if not self.late:
                continue
            pending = 0
            for rid in r.prefilling:
                pending += st.prompt[rid] + st.gen[rid]
            queued = 0
            for _, _, rid in r.waiting:
                queued += st.prompt[rid] + st.gen[rid]
            cols["kv_tokens"][k] = r.K + r.n_dec + pending + queued
            cols["num_active"][k] = nr + nw
            cols["num_free_slots"][k] = max(0, self.max_seqs - nr - nw)
            cols["kv_free_tokens"][k] = (r.total_blocks - r.used) * r.bs - queued

    def _place(self, rid: int, k: int, t: float) -> None:
        if not 0 <= k < self.g:
            raise RuntimeError(f"router {self.router!r} returned rank {k} of {self.g}")
        st, cols, r = self.st, self.cols, self.instances[k]
        size = st.prompt[rid] + st.gen[rid]
        cols["outstanding_tokens"][k] += st.prompt[rid] + st.output[rid]
        cols["num_waiting"][k] += 1
        cols["kv_tokens"][k] += size
        cols["num_active"][k] += 1
        cols["num_free_slots"][k] = max(0, cols["num_free_slots"][k] - 1)
        cols["kv_free_tokens"][k] -= size
        if r.busy:
            r.interrupt()
        r.arrive(rid, t)

    def _dispatch(self, rid: int, t: float) -> None:
        st = self.st
        if st.prompt[rid] + st.output[rid] > self.max_model_len:
            st.status[rid] = REJECTED
            self.num_rejected += 1
            return
        if self.late:
            self.pool.append(rid)
        else:
            self._place(rid, self.router.route(self.view(rid), self.table), t)

    def _assign(self, t: float) -> None:
        """Late binding: the router places some of the ``window`` oldest waiting requests."""
        if not self.pool or self.cols["num_free_slots"].max() <= 0:
            return
        cand = [self.pool[i] for i in range(min(self.window, len(self.pool)))]
        ranks = self.router.assign([self.view(rid) for rid in cand], self.table)
        placed = set()
        for rid, k in zip(cand, ranks, strict=True):
            if k >= 0:
                self._place(rid, int(k), t)
                placed.add(rid)
        if placed:
            self.pool = deque(rid for rid in self.pool if rid not in placed)

    # ------------------------------------------------------------------ loop
    def run(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Run to completion; returns the wall time of the loop in seconds."""
        t_wall = _time.perf_counter()
        arr = self.st.arrival_at
        n = self.n
        ranks = self.instances
        i = 0
        t = arr[0] if n else 0.0
        events = 0
        while True:
            while i < n and arr[i] <= t:
                self._dispatch(i, t)
                i += 1
            self._refresh()
            if self.late:
                self._assign(t)
            for r in ranks:
                if not r.busy and (r.running or r.waiting):
                    r._decide(t)
            busy = [r for r in ranks if r.busy]
            events += 1
            if progress is not None and events % 65536 == 0:
                progress(i, n)
            if not busy:
                if i >= n:
                    if self.pool:
                        raise RuntimeError(f"router {self.router!r} left {len(self.pool)} "
                                           "requests unplaced on an idle group")
                    break
                t = max(t, arr[i])
                continue
            ta = arr[i] if i < n else math.inf
            k, dur = self._step(busy, t, ta)
            t += dur
            for r in busy:
                if k == r.step_k:
                    r.end_step(t)
                else:
                    r.advance(k)
        self.num_events = events
        if progress is not None:
            progress(n, n)
        return _time.perf_counter() - t_wall

    def _step(self, busy: list[_Rank], t: float, ta: float) -> tuple[int, float]:
        """Iterations to run from ``t`` and their duration; records the barrier metrics."""
        k = min(r.step_k for r in busy)
        if self.ep_adjust is not None:
            total = sum(r.step_ntok for r in busy)
            for r in busy:
                adj = self.ep_adjust(r.step_ntok, total)
                ver, old = self.ep_applied.get(r.idx, (-1, 0.0))
                r.step_a += adj - (old if ver == r.version else 0.0)
                self.ep_applied[r.idx] = (r.version, adj)
        ta_lines = [r.step_a for r in busy], [r.step_b for r in busy]
        tsegs = envelope(ta_lines[0], ta_lines[1], k)
        if k > 1 and ta < math.inf:
            k = min(k, max(1, first_reaching(tsegs, ta - t)))
        dur = envelope_sum(tsegs, k)
        busy_s = sum(series(r.step_a, r.step_b, 0, k) for r in busy)
        la = [float(r.load0) if r.busy else 0.0 for r in self.instances]
        lb = [float(r.n_dec) if r.busy else 0.0 for r in self.instances]
        peak = envelope_sum(envelope(la, lb, k), k)
        mean = sum(series(a, b, 0, k) for a, b in zip(la, lb, strict=True)) / self.g
        full = float(len(busy) == self.g and all(len(r.running) == self.max_seqs for r in busy))
        s = self.steps
        s["t_at"].append(t)
        s["num_steps"].append(k)
        s["duration_s"].append(dur)
        s["imbalance_sum"].append(peak - mean)
        s["busy_s"].append(busy_s)
        s["full"].append(full)
        s["peak_load_sum"].append(peak)
        running = k * sum(len(r.running) for r in busy)
        s["running_sum"].append(running)
        self.request_steps += running
        return k, dur

    def dp_summary(self) -> dict[str, float]:
        """``mean_imbalance_tokens``, ``barrier_idle_frac`` and their totals (issue #5), over
        the whole run and ``..._before_last_arrival``: over the steps that start before the
        last arrival. After it the group works off what is waiting, then its ranks empty one
        by one (the drain); the drain lasts about as long as the longest outputs whatever G
        and the router, and near its end the imbalance is one request's load whoever placed
        it, so on a short trace file at large G it can be most of a run's steps. The split
        tells what routing changed from what the file's end imposed. O(events)."""
        s = self.steps
        last = float(self.w.arrival_at.max()) if len(self.w) else 0.0
        # Events are recorded in time order and never straddle an arrival (a stretch stops at
        # the next one), so the steps before the last arrival are a prefix of the records.
        cut = bisect_left(s["t_at"], last)

        def part(end: int) -> tuple[float, float, float, float, float]:
            steps, dur = sum(s["num_steps"][:end]), sum(s["duration_s"][:end])
            busy, imb = sum(s["busy_s"][:end]), sum(s["imbalance_sum"][:end])
            return (imb / steps if steps else 0.0,
                    1.0 - busy / (self.g * dur) if dur > 0 else 0.0, steps, dur, busy)

        imb, idle, steps, dur, busy = part(len(s["t_at"]))
        imb_pre, idle_pre, steps_pre, _, _ = part(cut)
        return {
            "mean_imbalance_tokens": imb,
            "barrier_idle_frac": idle,
            "num_group_steps": float(steps),
            "group_step_time_s": dur,
            "rank_busy_s": busy,
            "num_ranks": float(self.g),
            "mean_imbalance_tokens_before_last_arrival": imb_pre,
            "barrier_idle_frac_before_last_arrival": idle_pre,
            "num_group_steps_before_last_arrival": float(steps_pre),
        }


def _no_schedule(t: float, inst: int, version: int) -> None:
    """Ranks never schedule themselves: the group owns the clock."""

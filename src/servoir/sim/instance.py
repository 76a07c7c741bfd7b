"""One serving instance: vLLM v1 continuous batching with event skipping.

The one rule for progress (vLLM v1): each running request has ``computed`` tokens catching up to
``prompt + gen``; an iteration gives each scheduled request some tokens within the token budget
(``max_num_batched_tokens``) and the sequence cap (``max_num_seqs``). When a request's computed
tokens reach ``prompt + gen`` a token is sampled. Prefill, chunked prefill, decode and recompute
after preemption all follow from that rule.

Event skipping. When an iteration holds only decodes and no waiting request can be admitted,
the batch cannot change until a request finishes, memory runs out or an admissible request
arrives. Such a *stretch* of ``k`` iterations is one event:

- decoding requests are aggregates: ``n`` sequences, ``K`` computed tokens (grows by ``n`` per
  iteration), a heap of finish iterations, and counts per block *phase* (a sequence needs a new
  KV block on the iteration where its length is a multiple of the block size, so phase counts
  give the blocks in use after ``k`` iterations in O(block_size));
- the step time is ``A + c * attended_kv`` (``LatencyModel`` is linear in decode KV tokens), so
  the time of ``k`` iterations is an arithmetic series and the iteration in progress at any time
  is the root of a quadratic;
- an arrival that could be admitted cuts the stretch at the end of the iteration in progress.

Policy-decided admission: a scheduler with ``select``/``choose_victim``
(:mod:`servoir.policies.scheduling.lookahead`) is consulted at every decision (each iteration with
prefill work or a preemption, each stretch end) and nowhere else; since its choice may depend on
any waiting request, every arrival cuts a stretch (``tests/reference_sim.py`` mirrors this).

Per request the instance does O(log n) work (arrival, admission, prefill chunks, finish), never
per token, so a run's cost grows with requests, not output length.

The engine's settings and iteration plan are in :mod:`servoir.sim.engine_params`; preemption
(:mod:`servoir.sim.preemption`) and policy-decided admission
(:mod:`servoir.sim.policy_admission`) are mixins of :class:`Instance`, one concept each.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable
from typing import Any

from servoir.sim.engine_params import EngineParams, IterationPlan
from servoir.sim.free_queue import FreeQueue
from servoir.sim.policy_admission import PolicyAdmission
from servoir.sim.preemption import Preemption
from servoir.sim.state import FINISHED, RUNNING, WAITING, RequestState
from servoir.views import RequestView

NAN = math.nan


class Instance(Preemption, PolicyAdmission):
    """A vLLM-v1-like engine instance. Driven by :class:`servoir.sim.cluster.Cluster`.

    The cluster calls :meth:`arrive` and :meth:`step_end`; the instance asks the cluster to
    schedule its next step end through ``schedule(time, instance_id, version)`` and reports
    finished requests through ``on_finish(rid, time)``.
    """

    def __init__(self, idx: int, params: EngineParams, latency: Any, scheduler: Any,
                 state: RequestState, make_view: Callable[[int], RequestView],
                 schedule: Callable[[float, int, int], None],
                 on_finish: Callable[[int, float], None], record_series: bool = True,
                 check: bool = False) -> None:
        self.idx = idx
        self.p = params
        self.lat = latency
        self.sched = scheduler
        self.last_admitted_victim = scheduler.victim == "last_admitted"
        # Policy-decided admission (``select``) and victims (``choose_victim``).
        self.custom = callable(getattr(scheduler, "select", None))
        self.custom_victim = callable(getattr(scheduler, "choose_victim", None))
        self.pred: dict[int, float] = {}  # the prediction the policy trusts, per request
        self.tenant: dict[int, Any] = {}
        self.fin_since: list[tuple[int, int, Any]] = []  # finished since the last select
        self.st = state
        self.make_view = make_view
        self.schedule = schedule
        self.on_finish = on_finish
        bs = params.block_size
        self.bs = bs
        self.total_blocks = params.num_blocks
        self.used = 0  # blocks in use
        self.it = 0  # iterations completed
        # Waiting queue: heap of (rank, seq, rid).
        self.waiting: list[tuple[float, int, int]] = []
        self.seq = 0
        # Running set in admission order (rid -> admission seq); dict keeps insertion order.
        self.running: dict[int, int] = {}
        self.prefilling: list[int] = []  # running requests with computed < prompt + gen
        # Decode aggregates.
        self.n_dec = 0
        self.K = 0  # sum of computed tokens over decoding requests at iteration self.it
        self.phase_cnt = [0] * bs
        self.phase: dict[int, int] = {}  # rid -> phase
        self.fin_heap: list[tuple[int, int, int, int]] = []  # (finish_it, seq, rid, epoch)
        # Longest decoder (for the latency model's KV-skew term): heap of
        # (-(length - iteration), seq, rid, epoch); lengths all grow by one per iteration.
        self.len_heap: list[tuple[int, int, int, int]] = []
        self.skew = (latency.skew_time if getattr(latency, "skew_alpha", 0.0) > 0
                     and params.pp == 1 else None)
        # Current step.
        self.busy = False
        self.version = 0
        self.step_t0 = 0.0
        self.step_k = 0  # iterations in the current step (stretch if > 1 or no chunks)
        self.step_a = 0.0  # time of first iteration (decode part incl. attended KV)
        self.step_b = 0.0  # increase of iteration time per iteration (c * n)
        self.step_chunks: list[tuple[int, int, int]] = []  # (rid, tokens, computed_before)
        self.step_ntok = 0
        self.step_stretch = False
        self.a_cache: dict[int, float] = {}
        # A per-batch-size decode-KV rate, when the latency model has one (layer tables).
        self.kv_coef_per_n: Callable[[int], float] | None = getattr(latency, "kv_coef", None)
        # Counters and series.
        self.num_preemptions = 0
        self.num_steps = 0
        self.num_iterations = 0
        self.record_series = record_series
        # Invariant checking (tests): recompute aggregates naively at every decision.
        self.check = check
        # Async scheduling (EngineParams.async_scheduling): arrivals the scheduler has not seen
        # yet, (arrival time, rid); slots and blocks of requests that finished at the step end
        # just reached, still held for the decision made there; one-iteration steps while
        # either could change the next decision; when each request was queued (the engine
        # takes new requests between steps).
        self.async_ = params.async_scheduling
        self.inbox: list[tuple[float, int]] = []
        self.held_slots = 0
        self.held_blocks = 0
        self.force_one = False
        self.cutoff = -math.inf
        self.cutoff_at = math.nan
        self.queued_at: dict[int, float] = {}
        self.fq = FreeQueue(params.num_blocks) if params.cache_preempted else None
        self.held_in_used = 0  # async: held blocks counted in `used` during a decision
        self.s_time = array("d")
        self.s_running = array("q")
        self.s_waiting = array("q")
        self.s_used = array("q")

    # ------------------------------------------------------------------ timing
    def _iter_time(self, num_tokens: int, num_seqs: int, prefill_work: float,
                   decode_kv: int = 0) -> float:
        """Time of one iteration (``decode_kv``: attended decode KV tokens; a decode stretch
        passes 0 and adds its KV term as an arithmetic series, see :meth:`_start_step`).

        Pipeline parallelism (``pp > 1``): the batch is split into ``m = min(pp, num_seqs)``
        micro-batches in flight (a sequence is never split), each traversing all stages; one
        round of every micro-batch takes the full-model time of one micro-batch plus
        ``pp - 1`` activation hops. The decode-KV term is divided by ``m`` the same way
        (:meth:`_kv_coef`).
        """
        pp = self.p.pp
        lat = self.lat
        if pp == 1 or num_seqs <= 1:
            t = lat.step_time(num_tokens, num_seqs, decode_kv, prefill_work)
            return t if pp == 1 else t + (pp - 1) * lat.p2p_time(num_tokens)
        m = min(pp, num_seqs)
        mt = -(-num_tokens // m)
        return (lat.step_time(mt, -(-num_seqs // m), decode_kv / m, prefill_work / m)
                + (pp - 1) * lat.p2p_time(mt))

    def _kv_coef(self, num_seqs: int) -> float:
        """Seconds per attended decode-KV token of one iteration (see :meth:`_iter_time`)."""
        m = max(1, min(self.p.pp, num_seqs))
        per_n = self.kv_coef_per_n
        return (self.lat.kv_coef_s if per_n is None else per_n(-(-num_seqs // m))) / m

    def _decode_a(self, n: int) -> float:
        a = self.a_cache.get(n)
        if a is None:
            a = self.a_cache[n] = self._iter_time(n, n, 0.0)
        return a

    # ------------------------------------------------------------------ blocks
    def _new_blocks(self, k: int) -> int:
        """Blocks decoding requests allocate over the next ``k`` iterations from ``self.it``."""
        bs = self.bs
        cnt = self.phase_cnt
        full, rem = divmod(k, bs)
        total = full * self.n_dec
        j0 = self.it
        for j in range(rem):
            total += cnt[(-(j0 + j)) % bs]
        return total

    def _max_iters_fitting(self, free: int, k_cap: int) -> int:
        """Largest ``k <= k_cap`` whose decode block growth (from ``self.it``) fits in ``free``.

        Growth over any ``block_size`` consecutive iterations is exactly ``n`` (each sequence
        crosses one block boundary), so whole cycles are skipped in O(1) and the last partial
        cycle is walked: O(block_size).
        """
        n = self.n_dec
        if n == 0:
            return k_cap
        bs = self.bs
        cnt = self.phase_cnt
        cycles = min(free // n, k_cap // bs)
        acc = cycles * n
        k = cycles * bs
        j0 = self.it + k
        for j in range(bs):
            if k + j >= k_cap:
                return k_cap
            acc += cnt[(-(j0 + j)) % bs]
            if acc > free:
                return k + j
        return k + bs  # not reached: one more full cycle exceeds free or reaches k_cap

    # ------------------------------------------------------------------ queues
    def arrive(self, rid: int, now: float) -> None:
        """A request routed here at ``now`` joins the waiting queue."""
        st = self.st
        st.instance[rid] = self.idx
        st.status[rid] = WAITING
        if self.async_ and (self.busy or self.running):
            self._arrive_async(rid, now)
            return
        self._enqueue(rid, now)
        if not self.busy:
            self._decide(now)
        elif self.step_stretch and (self.custom or self._admissible_now(rid, now)):
            self._cut(now)
        if self.record_series:
            self._record(now)

    def _enqueue(self, rid: int, now: float) -> None:
        view = self.make_view(rid)
        if (self.custom or self.custom_victim) and rid not in self.tenant:
            pred = view.predicted_output_tokens
            self.pred[rid] = NAN if pred is None else float(pred)
            self.tenant[rid] = view.tenant
        r = self.sched.rank(view, now)
        self.st.rank[rid] = r
        self.seq += 1
        heapq.heappush(self.waiting, (r, self.seq, rid))

    def _arrive_async(self, rid: int, now: float) -> None:
        """Async scheduling: the engine takes the request at the end of the iteration in
        progress, when the next step is already formed; the decision after that one sees it,
        so a stretch is cut one iteration later than without async scheduling."""
        self.inbox.append((now, rid))
        end = now
        if self.busy:
            m = self._iters_done(now) if self.step_stretch else 0
            k = min(m + 1, self.step_k)
            end = self.step_t0 + k * self.step_a + self.step_b * k * (k - 1) / 2
            if self.step_stretch and m + 2 < self.step_k:
                self.step_k = m + 2
                self.version += 1
                self.schedule(self.step_t0 + (m + 2) * self.step_a
                              + self.step_b * (m + 2) * (m + 1) / 2, self.idx, self.version)
        self.queued_at[rid] = end
        if self.record_series:
            self._record(now)

    def _promote(self, cutoff: float) -> None:
        """Async scheduling: arrivals up to ``cutoff`` join the scheduler's waiting queue."""
        keep = []
        for t, rid in self.inbox:
            if t <= cutoff + 1e-9:
                self._enqueue(rid, t)
            else:
                keep.append((t, rid))
        self.inbox = keep

    def _admissible_now(self, rid: int, now: float) -> bool:
        """Could ``rid`` (just enqueued) be admitted at the next iteration boundary?"""
        p = self.p
        w = self.waiting
        if w[0][2] != rid:
            return False  # the head is blocked and ranks ahead of it
        budget = p.max_num_batched_tokens - self.n_dec
        if len(self.running) >= p.max_num_seqs or budget <= 0:
            return False
        st = self.st
        need_tokens = st.prompt[rid] + st.gen[rid]
        c = min(need_tokens, budget) if p.enable_chunked_prefill else need_tokens
        if c > budget:
            return False
        m = self._iters_done(now)
        free = self.total_blocks - self.used - self._new_blocks(min(m + 1, self.step_k))
        return -(-(need_tokens if p.reserve_full_prompt else c) // self.bs) <= free

    def _iters_done(self, now: float) -> int:
        """Iterations of the current stretch completed by ``now``."""
        dt = now - self.step_t0
        a, b = self.step_a, self.step_b
        if dt <= 0:
            return 0
        if b <= 0:
            m = int(dt / a)
        else:
            # S(j) = j*a + b*j*(j-1)/2 <= dt
            hb = 0.5 * b
            lin = a - hb
            m = int((-lin + math.sqrt(lin * lin + 4 * hb * dt)) / (2 * hb))
        # Guard float error at the boundary.
        while m > 0 and m * a + b * m * (m - 1) / 2 > dt:
            m -= 1
        while (m + 1) * a + b * (m + 1) * m / 2 <= dt:
            m += 1
        return min(m, self.step_k)

    def _cut(self, now: float) -> None:
        """End the current stretch at the end of the iteration in progress at ``now``."""
        m = self._iters_done(now)
        k = m + 1 if m < self.step_k else self.step_k
        if k >= self.step_k:
            return
        self.step_k = k
        self.version += 1
        self.schedule(self.step_t0 + k * self.step_a + self.step_b * k * (k - 1) / 2,
                      self.idx, self.version)

    # ------------------------------------------------------------------ stepping
    def step_end(self, now: float, version: int) -> None:
        """The current step ends at ``now``: apply its iterations, then decide the next."""
        if version != self.version or not self.busy:
            return  # superseded by a cut
        k = self.step_k
        st = self.st
        # Decode aggregates advance k iterations.
        if self.step_stretch:
            self.used += self._new_blocks(k)
        if self.fq is not None:
            self._fq_sync()
        self.it += k
        self.K += self.n_dec * k
        self.num_steps += 1
        self.num_iterations += k
        # The decision made now forms the iteration after next (async scheduling): it knows
        # the arrivals up to the start of the iteration that just ended.
        self.cutoff = now - (self.step_a + self.step_b * (k - 1))
        self.cutoff_at = now
        self._complete_chunks(now)
        # Finishes among decoders.
        fh = self.fin_heap
        it = self.it
        while fh and fh[0][0] <= it:
            _, _, rid, ep = heapq.heappop(fh)
            if ep != st.epoch[rid] or rid not in self.phase:
                continue
            adv = it - st.base_it[rid]
            comp = st.computed[rid] + adv
            st.gen[rid] += adv
            st.computed[rid] = comp
            self._remove_decoder(rid, comp)
            if self.fq is not None:
                self.fq.push(-(-comp // self.bs))
            if self.async_:
                self.held_slots += 1
                self.held_blocks += -(-comp // self.bs)
            del self.running[rid]
            self._finish(rid, now)
        if self.async_:
            self._promote(self.cutoff)
            if not self.running and not self.waiting:
                # Nothing can be formed for the next iteration: the engine reads its queue
                # now and frees what finished.
                self.held_slots = self.held_blocks = 0
                self._promote(now)
        self.busy = False
        self._decide(now)
        if self.record_series:
            self._record(now)

    def _complete_chunks(self, now: float) -> None:
        """Apply the prefill chunks of a single-iteration step; completed prefills sample a
        token and join the decode aggregates (or finish, for one-token outputs)."""
        st = self.st
        bs = self.bs
        for rid, c, _ in self.step_chunks:
            comp = st.computed[rid] + c
            st.computed[rid] = comp
            if comp == st.prompt[rid] + st.gen[rid]:
                # Prefill complete: a token is sampled.
                g = st.gen[rid] + 1
                st.gen[rid] = g
                if g == 1:
                    st.first_token_at[rid] = now
                self.prefilling.remove(rid)
                if g >= st.output[rid]:
                    del self.running[rid]
                    self.used -= st.held[rid]
                    if self.fq is not None:
                        self.fq.push(st.held[rid])
                    if self.async_:
                        self.held_slots += 1
                        self.held_blocks += st.held[rid]
                    st.held[rid] = 0
                    self._finish(rid, now)
                    continue
                # Join the decode aggregates at iteration self.it.
                st.base_it[rid] = self.it
                ph = (comp - self.it) % bs
                self.phase[rid] = ph
                self.phase_cnt[ph] += 1
                self.n_dec += 1
                self.K += comp
                # Its blocks stay counted in `used`; a decoder's block count is derived from
                # its length from now on, so `held` is reset.
                st.held[rid] = 0
                self.seq += 1
                heapq.heappush(self.fin_heap,
                               (self.it + st.output[rid] - g, self.seq, rid, st.epoch[rid]))
                if self.skew is not None:
                    heapq.heappush(self.len_heap, (self.it - comp, self.seq, rid, st.epoch[rid]))

    def _finish(self, rid: int, now: float) -> None:
        st = self.st
        if self.custom:
            self.fin_since.append((rid, st.gen[rid], self.tenant[rid]))
        st.status[rid] = FINISHED
        st.finish_at[rid] = now
        self.on_finish(rid, now)

    def _decide(self, now: float) -> None:
        """Form the next iteration (vLLM v1 order: running first, then waiting) and start it."""
        if self.async_:
            # The scheduler decides the iteration after next: it knows the arrivals up to the
            # start of the iteration just ended, and requests that finished at its end still
            # hold their slots and blocks (their finish is read after this decision).
            if self.cutoff_at != now:  # a group rank whose stretch was interrupted
                self.cutoff = now - max(self.step_a - self.step_b, 0.0)
            self._promote(self.cutoff)
            self.used += self.held_blocks
            self.held_in_used = self.held_blocks
        plan = IterationPlan(self.p.max_num_batched_tokens)
        self._room_for_decodes(plan, now)
        self._schedule_prefills(plan, now)
        if not plan.preempted:  # vLLM v1 admits nobody in an iteration that preempted
            if self.custom:
                self._admit_selected(plan, now)
            else:
                self._admit(plan, now)
        released = self.held_slots > 0
        if self.async_:
            self.used -= self.held_blocks
            self.held_slots = self.held_blocks = self.held_in_used = 0
            self.force_one = bool(self.inbox) or (released and bool(self.waiting))
        if self.check:
            self._check_invariants(plan.ntok, plan.chunks, plan.need_dec)
        if not plan.chunks and not self.n_dec:
            self.busy = False
            if self.async_ and (released or self.inbox):
                # Nothing in flight: the engine reads its queue and frees what finished now.
                self.cutoff, self.cutoff_at = now, now
                self._decide(now)
                return
            if plan.preempted and self.waiting:
                # Everything running was preempted (cannot happen while max_model_len fits the
                # KV capacity, which build() enforces); admit from the waiting queue right away
                # rather than idle with work waiting.
                self._decide(now)
            return
        self._start_step(plan, now)

    def _decode_need(self) -> int:
        """Blocks the decoding requests allocate in the next iteration."""
        return self.phase_cnt[(-self.it) % self.bs] if self.n_dec else 0

    def _room_for_decodes(self, plan: IterationPlan, now: float) -> None:
        """Decodes take one token each; preempt until their new blocks fit."""
        while self.n_dec and self._decode_need() > self.total_blocks - self.used:
            self._preempt(self._pick_victim(plan.exclude, now), now)
            plan.preempted = True
        plan.budget -= self.n_dec
        plan.ntok = self.n_dec
        plan.need_dec = self._decode_need()

    def _schedule_prefills(self, plan: IterationPlan, now: float) -> None:
        """Running requests still in prefill get chunks, in admission order."""
        st, bs = self.st, self.bs
        for rid in list(self.prefilling):
            if plan.budget <= 0:
                break
            if rid not in self.running:
                continue  # preempted while making room for an earlier one
            comp = st.computed[rid]
            c = min(st.prompt[rid] + st.gen[rid] - comp, plan.budget)
            need = -(-(comp + c) // bs) - st.held[rid]
            scheduled = True
            while need > self.total_blocks - self.used - plan.need_dec:
                v = self._pick_victim(plan.exclude, now)
                plan.preempted = True
                if v == rid or v < 0:
                    self._preempt(rid, now)
                    scheduled = False
                    break
                was_dec = v in self.phase
                self._preempt(v, now)
                if was_dec:  # its decode token and block are no longer needed
                    plan.budget += 1
                    plan.ntok -= 1
                    plan.need_dec = self._decode_need()
            if scheduled:
                self._add_chunk(plan, rid, c, comp, need)

    def _admit(self, plan: IterationPlan, now: float) -> None:
        """Admit waiting requests in rank order while cap, budget and blocks allow."""
        p, w = self.p, self.waiting
        while w and plan.budget > 0 and len(self.running) + self.held_slots < p.max_num_seqs:
            rid = w[0][2]
            first = self._first_chunk(rid, plan)
            if first is None:
                break  # stop at the first request that does not fit, as vLLM does
            heapq.heappop(w)
            self._admit_one(plan, rid, *first, now)

    def _first_chunk(self, rid: int, plan: IterationPlan) -> tuple[int, int, int] | None:
        """(tokens, blocks, cached tokens) of ``rid``'s first chunk if it can be admitted now,
        else None: the chunk must fit the budget (whole, without chunked prefill) and its
        blocks (with ``reserve_full_prompt``: the whole prompt's) the free blocks. A preempted
        request's prefix still in the prefix cache (``cache_preempted``) is not recomputed."""
        p, st = self.p, self.st
        need_tokens = st.prompt[rid] + st.gen[rid]
        h = 0
        if self.fq is not None:
            self._fq_sync()
            h = min(self.fq.hit(rid), (need_tokens - 1) // self.bs) * self.bs
        if p.enable_chunked_prefill:
            c = min(need_tokens - h, plan.budget)
        elif need_tokens - h <= plan.budget:
            c = need_tokens - h
        else:
            return None
        need = -(-(h + c) // self.bs)
        fit = -(-need_tokens // self.bs) if p.reserve_full_prompt else need
        if fit > self.total_blocks - self.used - plan.need_dec:
            return None
        return c, need, h

    def _admit_one(self, plan: IterationPlan, rid: int, c: int, need: int, h: int,
                   now: float) -> None:
        st = self.st
        self.seq += 1
        self.running[rid] = self.seq
        st.admit_seq[rid] = self.seq
        st.status[rid] = RUNNING
        if st.first_scheduled_at[rid] != st.first_scheduled_at[rid]:  # NaN: first time
            st.first_scheduled_at[rid] = now
        self.prefilling.append(rid)
        if self.fq is not None:
            self.fq.take(rid, h // self.bs)
            st.computed[rid] = h
        self._add_chunk(plan, rid, c, h, need)

    def _add_chunk(self, plan: IterationPlan, rid: int, c: int, comp: int, need: int) -> None:
        plan.exclude.add(rid)
        self.st.held[rid] += need
        self.used += need
        plan.chunks.append((rid, c, comp))
        plan.budget -= c
        plan.ntok += c
        plan.work += c * comp + c * (c + 1) / 2

    def _start_step(self, plan: IterationPlan, now: float) -> None:
        """Start one iteration (with prefill chunks or after a preemption) or a decode stretch."""
        n = self.n_dec
        attended = self.K + n
        skew = self._skew_time(n, attended) if self.skew is not None and n > 1 else 0.0
        if plan.chunks or plan.preempted:
            self.used += plan.need_dec  # a single iteration allocates its decode blocks now
            nseq = n + len(plan.chunks)
            a = self._iter_time(plan.ntok, nseq, plan.work, attended)
            if not plan.chunks:
                a += skew
            k, b = 1, 0.0
        else:
            # Pure decodes until the first finish or until memory runs out.
            fh, st = self.fin_heap, self.st
            while fh[0][3] != st.epoch[fh[0][2]] or fh[0][2] not in self.phase:
                heapq.heappop(fh)  # stale: that request was preempted
            k = self._max_iters_fitting(self.total_blocks - self.used, fh[0][0] - self.it)
            if self.force_one:
                k = min(k, 1)  # async scheduling: the next decision may admit
            kvc = self._kv_coef(n)
            # The skew term is constant over a stretch: every length grows by one per iteration.
            a = self._decode_a(n) + kvc * attended + skew
            b = kvc * n
        self.step_k = k
        self.step_a = a
        self.step_b = b
        self.step_stretch = not (plan.chunks or plan.preempted)
        self.step_chunks = plan.chunks
        self.step_ntok = plan.ntok  # tokens per iteration (a lock-step group reads it)
        self.busy = True
        self.step_t0 = now
        self.version += 1
        self.schedule(now + k * a + b * k * (k - 1) / 2, self.idx, self.version)

    def _skew_time(self, n: int, attended: int) -> float:
        """The latency model's extra for unequal decode lengths (its longest attended KV)."""
        lh, st = self.len_heap, self.st
        while lh[0][3] != st.epoch[lh[0][2]] or lh[0][2] not in self.phase:
            heapq.heappop(lh)  # stale: finished or preempted
        return self.skew(n, attended, self.it - lh[0][0] + 1)  # type: ignore[misc]

    def _check_invariants(self, ntok: int, chunks: list[tuple[int, int, int]],
                          need_dec: int) -> None:
        """Naive recomputation of the aggregates (tests only; O(n) per decision)."""
        st, bs = self.st, self.bs
        p = self.p
        assert ntok <= p.max_num_batched_tokens, f"token budget exceeded: {ntok}"
        assert len(self.running) <= p.max_num_seqs, "sequence cap exceeded"
        used = 0
        k_sum = 0
        cnt = [0] * bs
        for rid in self.running:
            if rid in self.phase:
                comp = st.computed[rid] + self.it - st.base_it[rid]
                assert comp == st.prompt[rid] + st.gen[rid] + self.it - st.base_it[rid] - 1
                used += -(-comp // bs)
                k_sum += comp
                cnt[(comp - self.it) % bs] += 1
            else:
                assert rid in self.prefilling
                used += st.held[rid]
        assert used == self.used, f"blocks in use {self.used} != recomputed {used}"
        assert k_sum == self.K, f"K {self.K} != recomputed {k_sum}"
        assert cnt == self.phase_cnt, "phase counts drifted"
        assert 0 <= self.used + need_dec <= self.total_blocks, "KV blocks over capacity"
        assert len(self.phase) == self.n_dec
        assert all(c > 0 for _, c, _ in chunks)

    def _record(self, now: float) -> None:
        self.s_time.append(now)
        self.s_running.append(len(self.running))
        self.s_waiting.append(len(self.waiting) + len(self.inbox))
        self.s_used.append(self.used)

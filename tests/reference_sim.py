"""A naive reference engine: one instance, one Python loop per iteration, per request.

It implements the same vLLM v1 rules as ``servoir.sim.instance`` with none of its aggregates
(no phases, no finish heap, no stretches, no cuts), so agreement of the two on random
workloads checks the event skipping. Deliberately slow and simple; tests only.

FCFS (no ``scheduler`` given) admits at every iteration. A ``scheduler`` with ``select`` (see
``servoir.policies.scheduling.lookahead``) decides admissions only at the engine's decision
points, defined here iteration by iteration: after an iteration with prefill chunks or a
preemption, after an iteration in which a request finished, and after an iteration during which
a request arrived (or when the engine was idle). Its victims come from ``choose_victim``.
"""

from __future__ import annotations

import heapq
import math

from servoir.policies.scheduling.lookahead import make_view
from servoir.views import RequestView


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def reference_run(arrival, prompt, output, *, lat, max_num_seqs, max_num_batched_tokens,
                  block_size, num_blocks, enable_chunked_prefill=True, pp=1,
                  max_iterations=2_000_000, scheduler=None, predicted=None, tenant=None,
                  reserve_full_prompt=False, async_scheduling=False, cache_preempted=False):
    """Returns dict of lists: first_token_at, finish_at, first_scheduled_at, num_preemptions.

    ``async_scheduling``: each iteration is formed from what the scheduler knew when the
    previous iteration started (arrivals up to then; requests that finished at its end still
    hold their slots and blocks), except when nothing was formed, where the engine reads its
    queue at once.

    ``cache_preempted``: the free blocks are a queue of named blocks (new ones from its head,
    freed ones to its tail, a request's in reverse order); a preempted request readmitted
    reuses its first full blocks still in the queue instead of recomputing them.
    """
    custom = scheduler is not None and hasattr(scheduler, "select")
    pred = [math.nan] * len(arrival) if predicted is None else [float(x) for x in predicted]
    ten = [None] * len(arrival) if tenant is None else list(tenant)
    fin_since: list = []
    n = len(arrival)
    bs = block_size
    computed = [0] * n
    gen = [0] * n
    held = [0] * n
    first_tok = [math.nan] * n
    finish = [math.nan] * n
    first_sched = [math.nan] * n
    npre = [0] * n
    waiting: list = []
    running: dict[int, int] = {}  # rid -> admission seq (insertion ordered)
    seq = 0
    used = 0
    t = 0.0
    nxt = 0
    def iter_time(ntok, nseq, work, kv):
        # Pipeline: m = min(pp, nseq) micro-batches, each through all stages.
        m = max(1, min(pp, nseq))
        mt = cdiv(ntok, m)
        hops = (pp - 1) * lat.p2p_time(mt) if pp > 1 else 0.0
        return lat.step_time(mt, cdiv(nseq, m), kv / m, work / m) + hops

    def is_dec(r):
        return computed[r] == prompt[r] + gen[r] - 1 and gen[r] >= 1 and r in running and \
            not prefill_pending[r]

    prefill_pending = [True] * n
    # Free-block queue (cache_preempted): one entry per block, (owner, index in its request);
    # owner -1 for blocks no request will look up.
    fq = [(-1, 0)] * num_blocks

    def fq_alloc(k):
        del fq[:k]

    def fq_free(r, blocks, full):
        if cache_preempted:
            fq.extend((r if j < full else -1, j) for j in range(blocks - 1, -1, -1))

    def fq_hit(r):
        have = {j for o, j in fq if o == r}
        h = 0
        while h in have:
            h += 1
        return h

    def fq_take(r, hb):
        fq[:] = [e for e in fq if not (e[0] == r and e[1] < hb)]
        fq[:] = [(-1, 0) if o == r else (o, j) for o, j in fq]

    def enqueue(r):
        nonlocal seq
        seq += 1
        if scheduler is not None:
            view = RequestView(r, arrival[r], prompt[r],
                               None if predicted is None else pred[r], ten[r])
            heapq.heappush(waiting, (scheduler.rank(view, t), seq, r))
            return
        heapq.heappush(waiting, (arrival[r], seq, r))

    def preempt(r):
        nonlocal used
        del running[r]
        fq_free(r, held[r], computed[r] // bs)
        used -= held[r]
        held[r] = 0
        computed[r] = 0
        prefill_pending[r] = True
        npre[r] += 1
        enqueue(r)

    def run_row(r):
        return r, prompt[r] + gen[r], gen[r], pred[r], ten[r]

    def victim(exclude):
        if scheduler is not None and hasattr(scheduler, "choose_victim"):
            rids = [r for r in running if r not in exclude]
            if not rids:
                return -1
            v = make_view(t, num_blocks * bs, bs, [run_row(r) for r in rids], [], [])
            return rids[scheduler.choose_victim(v)]
        for r in reversed(running):
            if r not in exclude:
                return r
        return -1

    decision = True  # may a `select` policy admit at this iteration boundary?
    idle = True  # async: nothing in flight, so the scheduler sees every arrival up to t
    prev_start = -math.inf  # async: start of the last iteration
    held_slots = held_blocks = 0  # async: finished at the last boundary, freed after it
    for _ in range(max_iterations):
        cutoff = t if idle or not async_scheduling else prev_start + 1e-9
        while nxt < n and arrival[nxt] <= cutoff:
            enqueue(nxt)
            nxt += 1
            decision = True
        if not running and not waiting:
            held_slots = held_blocks = 0
            if async_scheduling and not idle and nxt < n and arrival[nxt] <= t:
                idle = True  # nothing formed: the engine reads its queue now
                continue
            if nxt >= n:
                break
            t = arrival[nxt]
            idle = True
            continue
        used += held_blocks
        budget = max_num_batched_tokens
        preempted = False
        exclude: set[int] = set()

        def dec_need():
            return sum(cdiv(computed[r] + 1, bs) - held[r] for r in running if is_dec(r))

        # The two helpers below are defined and called within one iteration, so they see this
        # iteration's ``used``, ``t``, ``exclude`` and ``chunks`` (B023 does not apply).
        def first_chunk(r, budget):
            """(tokens, blocks, cached tokens) of r's first chunk if it can be admitted now."""
            need_tokens = prompt[r] + gen[r]
            h = min(fq_hit(r), (need_tokens - 1) // bs) * bs if cache_preempted else 0
            if enable_chunked_prefill:
                c = min(need_tokens - h, budget)
            elif need_tokens - h <= budget:
                c = need_tokens - h
            else:
                return None
            need = cdiv(h + c, bs)
            fit = cdiv(need_tokens, bs) if reserve_full_prompt else need
            return None if fit > num_blocks - used - dec_need() else (c, need, h)  # noqa: B023

        def admit(r, c, need, h):
            nonlocal seq, used, budget
            if cache_preempted:
                fq_take(r, h // bs)
                fq_alloc(need - h // bs)
                computed[r] = h
            seq += 1
            running[r] = seq
            if math.isnan(first_sched[r]):
                first_sched[r] = t  # noqa: B023
            exclude.add(r)  # noqa: B023
            held[r] = need
            used += need
            chunks.append((r, c))  # noqa: B023
            budget -= c

        while any(is_dec(r) for r in running) and dec_need() > num_blocks - used:
            preempt(victim(exclude))
            preempted = True
        decs = [r for r in running if is_dec(r)]
        budget -= len(decs)
        chunks = []
        for r in [r for r in running if not is_dec(r)]:
            if budget <= 0:
                break
            if r not in running:
                continue
            c = min(prompt[r] + gen[r] - computed[r], budget)
            need = cdiv(computed[r] + c, bs) - held[r]
            ok = True
            while need > num_blocks - used - dec_need():
                v = victim(exclude)
                preempted = True
                if v == r or v < 0:
                    preempt(r)
                    ok = False
                    break
                if is_dec(v):
                    budget += 1
                preempt(v)
            if not ok:
                continue
            exclude.add(r)
            held[r] += need
            used += need
            if cache_preempted:
                fq_alloc(need)
            chunks.append((r, c))
            budget -= c
        decs = [r for r in running if is_dec(r)]
        if not preempted and custom:
            if decision and waiting and budget > 0 and len(running) < max_num_seqs:
                wait_rows = [(r, prompt[r] + gen[r], gen[r], gen[r], pred[r], arrival[r], ten[r])
                             for _, _, r in waiting]
                view = make_view(t, num_blocks * bs, bs, [run_row(r) for r in running],
                                 wait_rows, fin_since)
                fin_since = []
                admitted = set()
                for i in scheduler.select(view):
                    if budget <= 0 or len(running) >= max_num_seqs:
                        break
                    r = int(view.wait_ids[i])
                    first = first_chunk(r, budget)
                    if first is None:
                        continue
                    admitted.add(r)
                    admit(r, *first)
                waiting = [e for e in waiting if e[2] not in admitted]
                heapq.heapify(waiting)
        elif not preempted:
            while waiting and budget > 0 and len(running) + held_slots < max_num_seqs:
                r = waiting[0][2]
                first = first_chunk(r, budget)
                if first is None:
                    break
                heapq.heappop(waiting)
                admit(r, *first)
        used -= held_blocks
        released = held_slots > 0
        held_slots = held_blocks = 0
        if not chunks and not decs:
            if async_scheduling and not idle and (released or (nxt < n and arrival[nxt] <= t)):
                idle = True  # nothing formed: the engine reads its queue now
                continue
            if nxt >= n:
                break
            t = arrival[nxt]
            idle = True
            continue
        prev_start = t
        idle = False
        # Decode blocks now.
        for r in decs:
            g = cdiv(computed[r] + 1, bs) - held[r]
            held[r] += g
            used += g
            if cache_preempted:
                fq_alloc(g)
        ntok = len(decs) + sum(c for _, c in chunks)
        work = sum(c * computed[r] + c * (c + 1) / 2 for r, c in chunks)
        attended = sum(computed[r] + 1 for r in decs)
        nseq = len(decs) + len(chunks)
        t = t + iter_time(ntok, nseq, work, attended)
        if getattr(lat, "skew_alpha", 0.0) > 0 and pp == 1 and len(decs) > 1 and not chunks:
            # Unequal decode lengths: the longest attended KV against the total.
            t += lat.skew_time(len(decs), attended, max(computed[r] + 1 for r in decs))
        done = []
        for r in decs:
            computed[r] += 1
            gen[r] += 1
            if gen[r] >= output[r]:
                done.append(r)
        for r, c in chunks:
            computed[r] += c
            if computed[r] == prompt[r] + gen[r]:
                gen[r] += 1
                prefill_pending[r] = False
                if gen[r] == 1:
                    first_tok[r] = t
                if gen[r] >= output[r]:
                    done.append(r)
        for r in done:
            finish[r] = t
            del running[r]
            if async_scheduling:
                held_slots += 1
                held_blocks += held[r]
            fq_free(-1, held[r], 0)
            used -= held[r]
            held[r] = 0
            fin_since.append((r, gen[r], ten[r]))
        # The next boundary is a decision point unless this iteration was a pure decode with
        # no finish (arrivals during it set `decision` when they are enqueued).
        decision = bool(chunks or preempted or done)
    else:
        raise RuntimeError("reference did not finish")
    return {"first_token_at": first_tok, "finish_at": finish, "first_scheduled_at": first_sched,
            "num_preemptions": npre}

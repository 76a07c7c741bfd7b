r"""SLO-aware sizing: p99 TTFT and TPOT of ``N`` instances on a trace, without simulating it.

:func:`trace_latencies` is a trace-driven queueing approximation of the vLLM v1 engine of
:mod:`servoir.analysis.capacity`: the trace's arrivals enter exactly (so does their burstiness,
which no single number such as the squared coefficient of variation of the gaps captures: Azure
code's is 173, and an M/M/c queue with a Kingman factor sized it at 5 instances where 37 are
needed), the prompts through a bulk-service queue per instance whose bulk is the token budget
the decodes leave, and the decoding batch through the batch fluid of
:meth:`servoir.analysis.capacity.RunningBatch.fluid`. :func:`slo_min_instances` searches the
smallest count whose predicted p99s meet the targets; ``servoir plan --verify`` confirms it
with the simulator.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from servoir.analysis.capacity import (
    Capacity,
    EngineLimits,
    IterationMix,
    RunningBatch,
    iteration_mix,
    length_arrays,
)
from servoir.errors import InputError

__all__ = ["TraceLatencies", "operating_point", "predict_p99", "prefill_pool",
           "slo_min_instances", "trace_latencies"]


def operating_point(lam_i: float, cap: Capacity, latency: Any) -> IterationMix | None:
    """The fluid iteration mix at per-instance rate ``lam_i`` (``None`` if ``lam_i >= mu``)."""
    if lam_i >= cap.mu_rps:
        return None
    m = cap.moments
    lo, hi = 0.0, cap.requests_per_iteration
    for _ in range(60):  # y - lam_i * b(y) is increasing in y: bisection
        mid = 0.5 * (lo + hi)
        if mid < lam_i * iteration_mix(mid, m, latency).mean_s:
            lo = mid
        else:
            hi = mid
    return iteration_mix(hi, m, latency)


@dataclass(frozen=True)
class TraceLatencies:
    """Per-request latencies of the trace-driven approximation (:func:`trace_latencies`)."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray  # NaN for one-token outputs
    mix: IterationMix
    prefill_busy_frac: float  # time share of the prefill servers' busy periods

    def p99(self) -> dict[str, float]:
        """p99 TTFT and TPOT (seconds), and the mean iteration time of the operating point."""
        tp = self.tpot_s[~np.isnan(self.tpot_s)]
        return {"ttft_p99_s": float(np.quantile(self.ttft_s, 0.99)),
                "tpot_p99_s": float(np.quantile(tp, 0.99)) if len(tp) else 0.0,
                "step_time_s": self.mix.mean_s, "prefill_busy_frac": self.prefill_busy_frac}


@dataclass(frozen=True)
class _Batch:
    """The decoding batch one instance runs, per time bin (one bin: constant)."""

    t0: float
    dt: float
    decodes: np.ndarray
    kv: np.ndarray
    t_d: np.ndarray  # pure-decode iteration time

    def at(self, t: float) -> int:
        k = int((t - self.t0) / self.dt) if self.dt > 0 else 0
        return min(max(k, 0), len(self.decodes) - 1)


def _prefill_server(a: np.ndarray, s: np.ndarray, env: _Batch, budget: int, latency: Any,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One instance's prefill queue as a bulk-service queue (bulk: the budget the decodes
    leave, ``budget - n_d`` tokens).

    ``a`` (sorted) and ``s`` are the instance's arrivals and prompts. Returns the first-token
    time of each request, the index of the iteration that gave it, and each prefill
    iteration's start and end.
    """
    m = len(a)
    first = np.empty(m)
    it_of = np.empty(m, dtype=np.int64)
    starts: list[float] = []
    ends: list[float] = []
    at, sl = a.tolist(), s.tolist()
    nds, kvs, tds = env.decodes.tolist(), env.kv.tolist(), env.t_d.tolist()
    queue: deque[list[int]] = deque()  # [remaining tokens, request]
    t, i = -math.inf, 0
    step = latency.step_time
    while i < m or queue:
        if not queue and at[i] > t:
            b = env.at(at[i])
            t = at[i] + 0.5 * tds[b] * min(1.0, nds[b])  # the decode iteration in progress
        b = env.at(t)
        nd, kv = nds[b], kvs[b]
        while i < m and at[i] <= t:
            queue.append([sl[i], i])
            i += 1
        room = max(1, int(budget - round(nd)))
        tokens, work, done, nchunks = 0, 0.0, [], 0
        while queue and room > 0:
            rem, k = queue[0]
            take = min(rem, room)
            comp = sl[k] - rem
            work += take * comp + take * (take + 1) / 2
            tokens += take
            room -= take
            nchunks += 1
            if take == rem:
                queue.popleft()
                done.append(k)
            else:
                queue[0][0] = rem - take
        dt = step(nd + tokens, nd + nchunks, kv, work)
        starts.append(t)
        t += dt
        ends.append(t)
        for k in done:
            first[k] = t
            it_of[k] = len(ends) - 1
    return first, it_of, np.array(starts), np.array(ends)


def prefill_pool(n: int, arrival_at: np.ndarray, prompt: np.ndarray, budget: int,
                 latency: Any) -> tuple[np.ndarray, np.ndarray]:
    """First-token times and instance of each request on ``n`` round-robin *prefill-only*
    instances (PD prefill pool: no decodes, so the whole ``budget`` goes to prompts), by the
    bulk-service queue of :func:`trace_latencies`. ``arrival_at`` must be sorted."""
    env = _Batch(float(arrival_at[0]), 0.0, np.zeros(1), np.zeros(1),
                 np.array([latency.step_time(1, 1, 0, 0.0)]))
    first = np.empty(len(arrival_at))
    inst = np.arange(len(arrival_at)) % n
    for j in range(n):
        idx = np.arange(j, len(arrival_at), n)
        if len(idx):
            first[idx] = _prefill_server(arrival_at[idx], prompt[idx], env, budget, latency)[0]
    return first, inst


def _iterations_between(env: _Batch, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Pure-decode iterations in ``[t1, t2]`` (elementwise), with ``t_d`` varying by bin."""
    if len(env.t_d) == 1:
        return np.maximum(t2 - t1, 0.0) / env.t_d[0]
    edges = env.t0 + env.dt * np.arange(len(env.t_d) + 1)
    cum = np.concatenate(([0.0], np.cumsum(env.dt / env.t_d)))

    def clock(t: np.ndarray) -> np.ndarray:
        inside = np.interp(t, edges, cum)
        return (inside + np.maximum(t - edges[-1], 0.0) / env.t_d[-1]
                - np.maximum(edges[0] - t, 0.0) / env.t_d[0])

    return np.maximum(clock(t2) - clock(t1), 0.0)


def _inverse_clock(env: _Batch, t1: float, iters: float) -> float:
    """Time at which ``iters`` pure-decode iterations after ``t1`` are done."""
    if len(env.t_d) == 1:
        return t1 + iters * float(env.t_d[0])
    edges = env.t0 + env.dt * np.arange(len(env.t_d) + 1)
    cum = np.concatenate(([0.0], np.cumsum(env.dt / env.t_d)))
    c1 = float(_iterations_between(env, np.array([edges[0]]), np.array([t1]))[0]) \
        if t1 >= edges[0] else -(edges[0] - t1) / float(env.t_d[0])
    target = c1 + iters
    if target <= 0:
        return float(edges[0] + target * env.t_d[0])
    if target >= cum[-1]:
        return float(edges[-1] + (target - cum[-1]) * env.t_d[-1])
    return float(np.interp(target, cum, edges))


def trace_latencies(n: int, arrival_at: ArrayLike, prompt: ArrayLike, output: ArrayLike,
                    cap: Capacity, latency: Any, limits: EngineLimits,
                    batch: RunningBatch | None = None, num_points: int = 1000,
                    ) -> TraceLatencies:
    r"""TTFT and TPOT of every request when ``n`` round-robin instances serve the trace.

    A trace-driven queueing approximation: the arrivals (and so their burstiness) enter
    exactly; the decoding batch through a fluid.

    - **Decoding batch.** With ``batch`` (:class:`RunningBatch`), the batch fluid of
      :func:`min_instances_fluid` gives, per time bin, the requests running on an instance and
      their KV; the decoding ones are the share :math:`E[o-1]/E[L]` of them. This follows a
      burst, and a run too short to reach steady state. Without it, the fluid operating point at
      the per-instance mean rate :math:`\lambda/N` (:func:`operating_point`; the saturated point
      when :math:`\lambda/N \ge \mu`) holds throughout. ``t_d`` is the pure-decode iteration time.
    - **Prefill server.** Each instance's prompts (every ``N``-th arrival, as round robin sends
      them) form a FIFO bulk-service queue: an iteration takes up to ``c = T - n_d`` prompt
      tokens from the head of the queue (vLLM v1 gives prefill chunks in admission order the
      budget the decodes leave) and lasts ``step_time(n_d + tokens, ...)`` with the chunks'
      causal attention work. A prompt arriving at an idle server first waits for the decode
      iteration in progress (half of ``t_d`` on average). A request's first token comes at the
      end of the iteration that holds its last prompt token; TTFT is that minus its arrival.
    - **TPOT.** A request decodes from its first token for ``o - 1`` iterations: the prefill
      iterations of its instance while the queue is busy, pure decodes (``t_d`` each) in
      between. With :math:`I(t)` the cumulative iteration count, its decode ends at
      :math:`I^{-1}(I(f_k) + o_k - 1)` and TPOT is the decode time over ``o - 1``. A short output
      that decodes during other prompts' prefill pays those mixed iterations in full, which is
      what drives p99 TPOT on bursty traces.

    Requests longer than ``limits.max_model_len`` are dropped first (the engine rejects them
    before routing). Not modelled: the queue for KV memory in front of the prefill queue,
    preemption, and the spread of instances' batches around the fluid's.
    """
    a = np.asarray(arrival_at, dtype=float)
    s, o = length_arrays(prompt, output)
    if len(a) != len(s):
        raise InputError("arrival_at, prompt and output need the same length")
    if limits.max_model_len is not None:
        keep = s + o <= limits.max_model_len
        a, s, o = a[keep], s[keep], o[keep]
    order = np.argsort(a, kind="stable")
    a, s, o = a[order], s[order], o[order]
    n = max(1, int(n))
    span = float(a[-1] - a[0]) if len(a) > 1 else 0.0
    lam = (len(a) - 1) / span if span > 0 else 0.0
    mix = operating_point(lam / n, cap, latency) or cap.mix
    env = _decoding_batch(n, a, cap, mix, latency, batch, num_points)
    ttft = np.empty(len(a))
    tpot = np.full(len(a), np.nan)
    busy = 0.0
    for j in range(n):
        idx = np.arange(j, len(a), n)
        if not len(idx):
            continue
        first, it_of, st, en = _prefill_server(a[idx], s[idx], env,
                                               limits.max_num_batched_tokens, latency)
        ttft[idx] = first - a[idx]
        busy += float((en - st).sum())
        tpot[idx] = _tpot(env, o[idx], first, it_of, st, en)
    frac = busy / (n * span) if span > 0 else 0.0
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return TraceLatencies(ttft[inv], tpot[inv], mix, frac)


def _decoding_batch(n: int, a: np.ndarray, cap: Capacity, mix: IterationMix, latency: Any,
                    batch: RunningBatch | None, num_points: int) -> _Batch:
    """Decoding batch of one instance per time bin: the batch fluid's when given (the
    decoding share ``E[o-1]/E[L]`` of its running requests), else ``mix`` throughout."""
    m = cap.moments
    span = float(a[-1] - a[0]) if len(a) > 1 else 0.0
    if batch is not None and span > 0:
        counts, _ = np.histogram(a, bins=num_points, range=(a[0], a[-1]))
        dt = span / num_points
        _, seqs, kv = batch.fluid(counts, dt, n)
        nd = seqs * (m.mean_decode / m.mean_iters)
    else:
        dt = 0.0
        nd = np.array([float(mix.decodes)])
        kv = np.array([float(mix.y * m.mean_decode_kv)])
    td = np.array([latency.step_time(max(x, 1.0), max(x, 1.0), k, 0.0)
                   for x, k in zip(nd.tolist(), kv.tolist(), strict=True)])
    return _Batch(float(a[0]), dt, nd, kv, td)


def _tpot(env: _Batch, o: np.ndarray, first: np.ndarray, it_of: np.ndarray, st: np.ndarray,
          en: np.ndarray) -> np.ndarray:
    """TPOT of one instance's requests (NaN for one-token outputs) from its prefill iterations
    ``[st, en]`` and the pure decodes between them (see :func:`trace_latencies`)."""
    # Cumulative iterations I(t) at each prefill iteration's start and end.
    prev_end = np.concatenate(([st[0]], en[:-1]))
    inc = np.empty(2 * len(st))
    inc[0::2] = _iterations_between(env, prev_end, st)
    inc[1::2] = 1.0
    cum = np.cumsum(inc)
    x = np.empty(2 * len(st))
    x[0::2], x[1::2] = st, en
    d = o - 1
    multi = d > 0
    target = cum[1::2][it_of[multi]] + d[multi]  # I at the first token, plus o - 1
    t_end = np.interp(target, cum, x)
    for q in np.flatnonzero(target > cum[-1]).tolist():  # decodes outlasting the prefills
        t_end[q] = _inverse_clock(env, float(en[-1]), float(target[q] - cum[-1]))
    tp = np.full(len(o), np.nan)
    tp[multi] = (t_end - first[multi]) / d[multi]
    return tp


def predict_p99(n: int, arrival_at: ArrayLike, prompt: ArrayLike, output: ArrayLike,
                cap: Capacity, latency: Any, limits: EngineLimits,
                batch: RunningBatch | None = None) -> dict[str, float]:
    """p99 TTFT and TPOT (seconds) of ``n`` instances on the trace (:func:`trace_latencies`).

    These are approximations; ``servoir plan --verify`` confirms them with the simulator.
    """
    return trace_latencies(n, arrival_at, prompt, output, cap, latency, limits, batch).p99()


def slo_min_instances(n_start: int, arrival_at: ArrayLike, prompt: ArrayLike,
                      output: ArrayLike, cap: Capacity, latency: Any, limits: EngineLimits,
                      ttft_s: float | None, tpot_s: float | None,
                      max_instances: int = 10_000, batch: RunningBatch | None = None,
                      ) -> tuple[int | None, dict[str, float] | None]:
    """Smallest ``n >= n_start`` whose predicted p99s (:func:`predict_p99`) meet the SLOs,
    searched by doubling then bisection (the predictions fall with ``n``). ``None`` when no
    count up to ``max_instances`` does, e.g. a TPOT target below one lone decode iteration."""
    if tpot_s is not None and latency.step_time(1, 1, 0, 0.0) > tpot_s:
        return None, None
    memo: dict[int, dict[str, float]] = {}

    def meets(k: int) -> bool:
        if k not in memo:
            memo[k] = predict_p99(k, arrival_at, prompt, output, cap, latency, limits, batch)
        p = memo[k]
        return (ttft_s is None or p["ttft_p99_s"] <= ttft_s) and (
            tpot_s is None or p["tpot_p99_s"] <= tpot_s)

    lo = hi = max(1, n_start)
    step = 1
    while not meets(hi):
        lo = hi
        hi = lo + step
        step *= 2
        if hi > max_instances:
            return None, memo[lo]
    if hi == max(1, n_start):
        return hi, memo[hi]
    while hi - lo > 1:  # meets(hi), not meets(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(mid) else (mid, hi)
    return hi, memo[hi]

r"""Prefill-decode disaggregation versus co-location: two small fluid LPs and their crossover.

The fluid model of ``research/algorithms.md`` section 7, with the iteration times of the fitted
latency model. Each pool runs at a fluid operating point ``y`` (requests completed per
iteration, Little's law as in :mod:`servoir.analysis.capacity`); SLOs cap ``y`` because every
latency grows with the batch:

- **Co-located** instance (mixed batches, chunked prefill): mean iteration :math:`\bar b(y)`,
  TPOT :math:`\approx \bar b(y)`, TTFT :math:`\approx \bar b(y)/2 + t_m(y)` (wait for the
  iteration in progress, then one mixed iteration). Rate :math:`\mu_c = y/\bar b(y)` at the
  largest ``y`` that meets the SLOs and the engine limits.
- **Prefill** instance: batches of prompts only, :math:`b_p(y)` = step time of ``y E[s]`` tokens
  and the causal attention work; TTFT :math:`\approx b_p(y)/2 + b_p(\max(y, 1)) + E[s]\beta/W`
  (the iteration in progress, the request's own whole-prompt iteration, then the KV of
  :math:`\beta` bytes per token crosses a link of ``W`` bytes/s). Rate
  :math:`\mu_p = y/b_p(y)`, :math:`y \le T/E[s]`; the link adds :math:`\mu_{link} = W/(E[s]\beta)`.
- **Decode** instance: pure-decode iterations with ``y (E[o]-1)`` sequences attending their KV;
  TPOT :math:`\approx b_d(y) + E[s]\beta/(W (E[o]-1))`; memory ``y E[g_d] <= M`` and
  ``y E[o-1] <= B``. Rate :math:`\mu_d = y/b_d(y)`.

The disaggregated LP over pool sizes :math:`x_p, x_d` (GPUs are instances of the same TP):

.. math:: \max \lambda\ \text{s.t.}\ \lambda \le \mu_p x_p,\ \lambda \le \mu_{link} x_p,\
          \lambda \le \mu_d x_d,\ x_p + x_d \le n,

solved with HiGHS; its duals say which pool binds and what one more instance is worth. Its
optimum per instance is :math:`1/(1/\min(\mu_p, \mu_{link}) + 1/\mu_d)`; co-location gives
:math:`\mu_c`. Disaggregation wins where the first is larger, which reproduces the published
regimes qualitatively: it wins for prefill-heavy traffic under strict TPOT (mixed iterations
carrying long prompts are slow, pure-decode ones are not) and loses under tight TTFT with relaxed
TPOT (the transfer and the concentrated prefill pool add latency) [1]_ [2]_.

References
----------
.. [1] TaiChi, "Prefill-Decode Aggregation or Disaggregation? Unifying Both for
   Goodput-Optimized LLM Serving", arXiv 2508.01989.
.. [2] "Beyond the Buzz: A Pragmatic Take on Inference Disaggregation", arXiv 2506.05508.
.. [3] Y. Zhong et al., "DistServe", OSDI 2024, arXiv 2401.09670.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from servoir.analysis.capacity import EngineLimits, LengthMoments, iteration_mix, length_arrays
from servoir.errors import InputError

__all__ = ["PoolRates", "colocated_lp", "disaggregated_lp", "pd_latencies", "pool_rates",
           "split_for_rate", "split_for_slos"]


@dataclass(frozen=True)
class PoolRates:
    """SLO-feasible service rates (req/s per instance) of each kind of instance."""

    colocated_rps: float
    prefill_rps: float
    link_rps: float
    decode_rps: float
    transfer_s: float  # mean KV transfer time of one request

    @property
    def disaggregated_per_instance_rps(self) -> float:
        """Fluid optimum of the disaggregated LP divided by the number of instances."""
        p = min(self.prefill_rps, self.link_rps)
        if p <= 0 or self.decode_rps <= 0:
            return 0.0
        return 1.0 / (1.0 / p + 1.0 / self.decode_rps)

    @property
    def disaggregation_wins(self) -> bool:
        """Whether disaggregation supports more SLO-feasible load per instance."""
        return self.disaggregated_per_instance_rps > self.colocated_rps


def _largest(y_max: float, ok: Callable[[float], bool]) -> float:
    """Largest ``y`` in ``[0, y_max]`` with ``ok(y)`` (``ok`` monotone: true then false)."""
    if ok(y_max):
        return y_max
    lo, hi = 0.0, y_max
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _rate(y: float, b: Callable[[float], float]) -> float:
    return y / b(y) if y > 0 else 0.0


def pool_rates(prompt: ArrayLike, output: ArrayLike, latency: Any, limits: EngineLimits,
               kv_bytes_per_token: float, link_bytes_per_s: float,
               ttft_s: float | None = None, tpot_s: float | None = None) -> PoolRates:
    """Per-instance rates of co-located, prefill and decode instances under the SLOs (means).

    ``kv_bytes_per_token`` is the whole model's KV bytes per token (what crosses the link);
    ``link_bytes_per_s`` the bandwidth of each prefill instance's link. See the module
    docstring for the model.
    """
    s, o = length_arrays(prompt, output)
    if limits.max_model_len is not None:
        keep = s + o <= limits.max_model_len
        s, o = s[keep], o[keep]
    if not len(s):
        raise InputError("no request fits max_model_len")
    if not link_bytes_per_s > 0 or not kv_bytes_per_token > 0:
        raise InputError("link bandwidth and KV bytes per token must be > 0", field="link")
    inf = math.inf
    S, P = ttft_s or inf, tpot_s or inf
    lim = limits
    T = lim.max_num_batched_tokens
    transfer = float(s.mean()) * kv_bytes_per_token / link_bytes_per_s
    # Co-located.
    m = LengthMoments.of(s, o, T, lim.block_size)
    y_star = min(lim.kv_tokens / m.mean_g, lim.max_num_seqs / m.mean_iters,
                 T / (m.mean_prompt + m.mean_decode))

    def colo_ok(y: float) -> bool:
        mix = iteration_mix(y, m, latency)
        return mix.mean_s <= P and 0.5 * mix.mean_s + mix.mixed_s <= S

    y = _largest(y_star, colo_ok)
    colo = _rate(y, lambda v: iteration_mix(v, m, latency).mean_s)
    # Prefill pool: prompts only.
    es, ew = float(s.mean()), float((s * (s + 1) / 2).mean())
    nch = float((-(-s // T)).mean())

    def b_p(v: float) -> float:
        return latency.step_time(max(v * es, 1.0), max(v * nch, 1.0), 0, v * ew)

    # TTFT: half the iteration in progress, then the request's own prompt iteration (a
    # whole prompt, with its batch-mates when more than one completes per iteration).
    y = _largest(T / es, lambda v: 0.5 * b_p(v) + b_p(max(v, 1.0)) + transfer <= S)
    pre = _rate(y, b_p)
    # Decode pool: the KV arrives with the request; o - 1 decode iterations.
    d = (o - 1).astype(float)
    keep = d > 0
    sd, dd = s[keep].astype(float), d[keep]
    frac = float(keep.mean())
    if not keep.any():
        return PoolRates(colo, pre, link_bytes_per_s / (es * kv_bytes_per_token), inf, transfer)
    ed = float(dd.mean())
    ekv = float((dd * sd + dd * (dd - 1) / 2).mean())  # attended KV over o - 1 iterations
    eg = ekv + lim.block_size / 2 * ed

    def b_d(v: float) -> float:
        n = v * ed
        return latency.step_time(max(n, 1.0), max(n, 1.0), v * ekv, 0.0)

    y_d = min(lim.kv_tokens / eg, lim.max_num_seqs / ed, T / ed)
    y = _largest(y_d, lambda v: b_d(v) + transfer / ed <= P)
    dec = _rate(y, b_d) / frac  # requests with one output token never reach a decode instance
    link = link_bytes_per_s / (es * kv_bytes_per_token)
    return PoolRates(colo, pre, link, dec, transfer)


def _solve(c: list[float], a_ub: list[list[float]], b_ub: list[float]) -> tuple[Any, np.ndarray]:
    from scipy.optimize import linprog  # deferred heavy import

    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * len(c), method="highs")
    if res.status != 0:  # pragma: no cover - bounded and feasible by construction
        raise RuntimeError(f"PD LP failed: {res.message}")
    return res, -np.asarray(res.ineqlin.marginals, dtype=float)


def disaggregated_lp(rates: PoolRates, num_instances: float) -> dict[str, Any]:
    """Fluid LP of ``num_instances`` split into prefill and decode pools (HiGHS).

    Returns the optimal throughput, the continuous split and the duals: ``value_per_instance``
    (req/s one more instance is worth) and the binding pool constraints.
    """
    pre = min(rates.prefill_rps, rates.link_rps)
    # Variables (lambda, x_p, x_d); rows: prefill, decode, instance budget.
    res, u = _solve([-1.0, 0.0, 0.0],
                    [[1, -pre, 0], [1, 0, -min(rates.decode_rps, 1e12)], [0, 1, 1]],
                    [0, 0, float(num_instances)])
    lam, xp, xd = (float(v) for v in res.x)
    return {"throughput_rps": lam, "prefill_instances": xp, "decode_instances": xd,
            "value_per_instance_rps": float(u[2]),
            "binding": "link" if rates.link_rps < rates.prefill_rps else "prefill"}


def colocated_lp(rates: PoolRates, num_instances: float) -> dict[str, Any]:
    """Fluid LP of ``num_instances`` co-located instances (``lambda <= mu_c x, x <= n``)."""
    res, u = _solve([-1.0, 0.0], [[1, -rates.colocated_rps], [0, 1]], [0, float(num_instances)])
    return {"throughput_rps": float(res.x[0]), "value_per_instance_rps": float(u[1])}


def split_for_rate(rates: PoolRates, rate: float) -> tuple[int, int] | None:
    """Smallest integer pools ``(n_p, n_d)`` that carry ``rate`` (``None`` if infeasible)."""
    pre = min(rates.prefill_rps, rates.link_rps)
    if pre <= 0 or rates.decode_rps <= 0:
        return None
    return max(1, math.ceil(rate / pre - 1e-9)), max(1, math.ceil(rate / rates.decode_rps - 1e-9))


# ---------------------------------------------------------------------- p99s of a split


def _decode_pool(n_d: int, kv_at: np.ndarray, s: np.ndarray, o: np.ndarray, latency: Any,
                 limits: EngineLimits, num_points: int = 1000) -> np.ndarray:
    """Finish time of each request (KV arrived at ``kv_at``, sorted) on ``n_d`` round-robin
    decode instances, from the batch fluid of
    :meth:`servoir.analysis.capacity.RunningBatch.fluid_path` (transferred prompts cost budget,
    not time): FIFO admission when the cumulative admissions reach the request, then
    ``ceil(s / T) + o - 2`` iterations on the fluid's iteration clock."""
    from servoir.analysis.capacity import RunningBatch

    budget = limits.max_num_batched_tokens
    chunks = (-(-s // budget)).astype(float)
    iters = np.maximum(chunks + o - 2, 1.0)
    batch = RunningBatch(float(limits.max_num_seqs), float(limits.kv_tokens), float(budget),
                         s.astype(float), chunks, iters, 0.0, latency, prompt_cost=False)
    t0 = float(kv_at[0])
    span = max(float(kv_at[-1]) - t0, 1e-9)
    # Extend the window past the last arrival so the queue drains inside it.
    dt = span / num_points
    last = 5 * num_points
    counts, _ = np.histogram(kv_at, bins=last, range=(t0, t0 + last * dt))
    _, _, _, adm, clock = batch.fluid_path(counts, dt, n_d)
    edges = t0 + dt * np.arange(last + 1)
    arrived = np.concatenate(([0.0], np.cumsum(counts / n_d)))
    admitted = np.concatenate(([0.0], np.cumsum(adm)))
    rate_end = (clock[-1] - clock[-2]) / dt if last > 1 else 1.0
    clock_e = np.concatenate((clock, [clock[-1] + rate_end * dt]))
    pos = np.interp(kv_at, edges, arrived)
    admit = np.maximum(np.interp(pos, admitted, edges), kv_at)
    done = np.interp(admit, edges, clock_e) + iters
    finish = np.interp(done, clock_e, edges)
    beyond = done > clock_e[-1]
    finish[beyond] = edges[-1] + (done[beyond] - clock_e[-1]) / max(rate_end, 1e-12)
    return finish


def pd_latencies(n_p: int, n_d: int, arrival_at: ArrayLike, prompt: ArrayLike,
                 output: ArrayLike, latency: Any, limits: EngineLimits,
                 kv_bytes_per_token: float, link_bytes_per_s: float,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""TTFT, TPOT (NaN for one-token outputs) and KV arrival time of every request on
    ``n_p`` prefill and ``n_d`` decode instances, as :mod:`servoir.sim.pd` runs them.

    - **Prefill pool**: round robin; each instance is the bulk-service prompt queue of
      :func:`servoir.analysis.slo.prefill_pool` with the whole budget for prompts. TTFT is the
      first token there.
    - **Links**: one per prefill instance, FIFO, ``s * kv_bytes_per_token / link_bytes_per_s``
      per request (a Lindley recursion on the first-token times).
    - **Decode pool**: round robin in KV-arrival order; the batch fluid of
      :class:`servoir.analysis.capacity.RunningBatch` (sequence cap, KV, budget) admits
      requests FIFO, and a request stays ``ceil(s / T) + o - 2`` iterations (the simulator
      passes the transferred prompt through the token budget at no compute; the last chunk
      samples token 2) on the fluid's iteration clock. TPOT is (transfer wait + transfer +
      decode queue + decode time) over ``o - 1``.

    Requests longer than ``limits.max_model_len`` are dropped; ``arrival_at`` in any order.
    """
    from servoir.analysis.slo import prefill_pool

    a = np.asarray(arrival_at, dtype=float)
    s, o = length_arrays(prompt, output)
    if limits.max_model_len is not None:
        keep = s + o <= limits.max_model_len
        a, s, o = a[keep], s[keep], o[keep]
    order = np.argsort(a, kind="stable")
    a, s, o = a[order], s[order], o[order]
    first, inst = prefill_pool(n_p, a, s, limits.max_num_batched_tokens, latency)
    xfer = s * kv_bytes_per_token / link_bytes_per_s
    kv_at = np.full(len(a), np.nan)
    multi = o > 1
    free = [-math.inf] * n_p
    for k in np.argsort(first, kind="stable").tolist():
        if multi[k]:
            j = int(inst[k])
            kv_at[k] = max(first[k], free[j]) + xfer[k]
            free[j] = kv_at[k]
    tpot = np.full(len(a), np.nan)
    if multi.any():
        km = np.flatnonzero(multi)
        by_kv = km[np.argsort(kv_at[km], kind="stable")]
        finish = _decode_pool(n_d, kv_at[by_kv], s[by_kv], o[by_kv], latency, limits)
        tpot[by_kv] = (finish - first[by_kv]) / (o[by_kv] - 1)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return (first - a)[inv], tpot[inv], kv_at[inv]


def _smallest(start: int, good: Callable[[int], bool], cap: int) -> int | None:
    """Smallest ``k >= start`` with ``good(k)`` (monotone), by doubling then bisection."""
    if good(start):
        return start
    lo, hi = start, start + 1
    while not good(hi):
        if hi >= cap:
            return None
        lo, hi = hi, min(cap, 2 * hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if good(mid) else (mid, hi)
    return hi


def split_for_slos(arrival_at: ArrayLike, prompt: ArrayLike, output: ArrayLike, latency: Any,
                   limits: EngineLimits, kv_bytes_per_token: float, link_bytes_per_s: float,
                   start: tuple[int, int], ttft_s: float | None = None,
                   tpot_s: float | None = None, max_instances: int = 10_000,
                   ) -> tuple[tuple[int, int] | None, dict[str, float] | None]:
    """Smallest split from ``start`` (the fluid LP split) whose :func:`pd_latencies` p99s
    meet the SLOs: the prefill pool grows until p99 TTFT meets its target (it does not depend
    on the decode pool), and until a decode pool of ``max_instances`` would meet the TPOT
    target (the prefill pool owns the links, whose queue adds to TPOT); then the decode pool
    grows until p99 TPOT does. ``(None, None)`` when no split up to ``max_instances`` does."""
    args = (arrival_at, prompt, output, latency, limits, kv_bytes_per_token, link_bytes_per_s)

    def p99(v: np.ndarray) -> float:
        v = v[~np.isnan(v)]
        return float(np.quantile(v, 0.99)) if len(v) else 0.0

    def ttft_ok(p: int) -> bool:
        return ttft_s is None or p99(pd_latencies(p, 1, *args)[0]) <= ttft_s

    def tpot_ok(p: int, d: int) -> bool:
        return tpot_s is None or p99(pd_latencies(p, d, *args)[1]) <= tpot_s

    p = _smallest(max(1, start[0]), ttft_ok, max_instances)
    if p is None:
        return None, None
    p = _smallest(p, lambda k: tpot_ok(k, max_instances), max_instances)
    if p is None:
        return None, None
    d = _smallest(max(1, start[1]), lambda k: tpot_ok(p, k), max_instances)
    if d is None:
        return None, None
    ttft, tpot, _ = pd_latencies(p, d, *args)
    return (p, d), {"ttft_p99_s": p99(ttft), "tpot_p99_s": p99(tpot)}

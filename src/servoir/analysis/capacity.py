r"""Capacity of one serving instance from queueing theory: which constraint binds, and by how much.

An instance runs vLLM v1 iterations (chunked prefill, mixed batches) under three per-iteration
limits: the KV memory ``M`` (tokens), the sequence cap ``B`` (``max_num_seqs``) and the token
budget ``T`` (``max_num_batched_tokens``). In saturation (a waiting queue that never empties) the
engine fills the first limit it meets; the throughput there is the instance's service rate
:math:`\mu`. Arrivals at rate :math:`\lambda > \mu` make the queue grow linearly; below it the
queue stays bounded under any work-conserving policy.

**Per-request quantities** (prompt ``s``, output ``o``, chunk ``c``, block size ``bs``), with the
simulator's semantics: a prompt is computed in :math:`\lceil s / c\rceil` chunk iterations, the
last of which samples the first token, then ``o - 1`` decode iterations follow. The lifetime KV
memory in token-iterations (Nie, Si and Zhou [1]_; blocks rounded up as paged attention holds
them) is

.. math:: g(s, o) = bs \Big(\sum_{k=1}^{\lceil s/c\rceil} \lceil \min(kc, s)/bs \rceil
          + \sum_{x=s+1}^{s+o-1} \lceil x / bs \rceil\Big)
          \approx \sum_k \min(kc, s) + (o-1)s + o(o-1)/2 .

(The reconstruction in ``research/algorithms.md`` sums ``o`` decode terms; the engine samples the
first output token in the prefill iteration, hence ``o - 1``.) A request also occupies one
sequence slot for :math:`L = \lceil s/c\rceil + o - 1` iterations and contributes
``s + o - 1`` tokens to the batches.

**Fluid operating point.** Let ``y`` be the number of requests completed per iteration. By
Little's law the average iteration holds ``y E[g]`` KV tokens, ``y E[L]`` sequences and
``y (E[s] + E[o] - 1)`` tokens, so saturation is at

.. math:: y^* = \min\Big(\frac{M}{E[g]},\ \frac{B}{E[L]},\ \frac{T}{E[s] + E[o] - 1}\Big),
          \qquad \mu = \frac{y^*}{\bar b(y^*)},

where :math:`\bar b(y)` is the mean iteration time of the latency model at that batch. With
memory binding this is Nie-Si-Zhou's :math:`\mu = M / (\bar b\, E[g])` [1]_; with the token
budget binding it is Li-Dai-Peng's compute condition :math:`\lambda (m_p + m_d) < T / t_T` [2]_,
reached by work-conserving mixed batching. The sequence cap is a per-iteration batch limit too,
so it is reported on the compute side (``binding = "compute"``,
``binding_constraint = "max_num_seqs"``).

:math:`\bar b` mixes two kinds of iterations: a fraction :math:`\varphi = \min(1, y E[\lceil s/c
\rceil])` carries prefill chunks (``n + y E[s] / \varphi`` tokens, ``n = y (E[o] - 1)``
decodes), the rest are pure decodes. Averaging the two, rather than evaluating the latency
model at the average batch, keeps the flat (weight-read-bound) part of the token-time curve
that decode-only iterations pay.

**LP and duals.** Linearising :math:`\bar b(y) \approx a_0 + a_1 y` at :math:`y^*` (tangent), the
capacity is the LP over the throughput :math:`\lambda` and the iteration rate ``r``
(iterations per second)

.. math:: \max \lambda \ \text{s.t.}\ \lambda E[g] \le M r,\ \lambda E[L] \le B r,\
          \lambda (E[s]+E[o]-1) \le T r,\ a_0 r + a_1 \lambda \le 1,

whose optimum is :math:`\mu` exactly. Its duals (HiGHS) price the resources: by the envelope
theorem :math:`\partial\mu/\partial M = u_M r^*`, which is reported as "one more GB of KV per GPU
is worth x req/s".

**Slack.** Stability is guaranteed for :math:`\lambda < \mu (1 - \delta)` with
:math:`\delta = \max(s + o) / M` (a packed memory wastes at most one request's footprint; our
reading of [1]_, see ``research/algorithms.md`` section 3.3).

Assumptions: i.i.d. request lengths, pipeline-parallel degree 1, no prefix caching, preemption
waste ignored (the fluid model never overcommits memory), every request fits
``max_model_len`` (longer ones are rejected by the engine and left out here).

References
----------
.. [1] C. Nie, N. Si, Z. Zhou, "A Queueing-Theoretic Framework for Stability Analysis of LLM
   Inference with KV Cache Memory Constraints", arXiv 2605.04595 (ICML 2026).
.. [2] Y. Li, J. G. Dai, T. Peng, "Throughput-Optimal Scheduling Algorithms for LLM Inference and
   AI Agents", arXiv 2504.07347 (2025).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from servoir.analysis.queueing import mmc_erlang_c
from servoir.errors import InputError

__all__ = [
    "Capacity",
    "EngineLimits",
    "LengthMoments",
    "expected_g",
    "instance_capacity",
    "iteration_mix",
    "lifetime_kv",
    "min_instances_fluid",
    "operating_point",
    "predict_p99",
    "slo_min_instances",
]

GB = 1e9


@dataclass(frozen=True)
class EngineLimits:
    """Per-instance limits the capacity depends on (plain values, built from a config).

    ``kv_tokens`` is the KV capacity ``M`` (tokens) of one instance, ``kv_bytes_per_token_per_gpu``
    converts a GB of GPU memory into tokens for the dual prices (0: no GB price).
    """

    kv_tokens: int
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    max_model_len: int | None = None
    kv_bytes_per_token_per_gpu: float = 0.0

    def __post_init__(self) -> None:
        for name in ("kv_tokens", "max_num_seqs", "max_num_batched_tokens", "block_size"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}", field=name)


def _lengths(prompt: ArrayLike, output: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(prompt, dtype=np.int64).ravel()
    o = np.asarray(output, dtype=np.int64).ravel()
    if s.shape != o.shape or not len(s):
        raise InputError("prompt and output lengths need the same non-zero length")
    if s.min() < 1 or o.min() < 1:
        raise InputError("prompt and output lengths must be >= 1")
    return s, o


def _ceil_sum(a: np.ndarray, b: np.ndarray, bs: int) -> np.ndarray:
    """``sum(ceil(x / bs) for x in a..b)`` (0 where ``b < a``), vectorised in closed form."""

    def cum(n: np.ndarray) -> np.ndarray:  # sum_{x=1}^{n} ceil(x / bs), n >= 0
        q, r = np.divmod(n, bs)
        return bs * q * (q + 1) // 2 + r * (q + 1)

    return np.where(b >= a, cum(np.maximum(b, 0)) - cum(np.maximum(a - 1, 0)), 0)


def lifetime_kv(prompt: ArrayLike, output: ArrayLike, chunk: int,
                block_size: int = 1) -> np.ndarray:
    r"""Lifetime KV memory :math:`g(s, o)` of each request, in token-iterations.

    .. math:: g = bs\Big(\sum_{k=1}^{\lceil s/c\rceil}\lceil\min(kc,s)/bs\rceil
              + \sum_{x=s+1}^{s+o-1}\lceil x/bs\rceil\Big)

    (see the module docstring). With ``block_size=1`` it is the token count without paging.

    Examples
    --------
    One 4-token prompt in chunks of 2, 3 output tokens: prefill holds 2 then 4 tokens, the two
    decode iterations 5 and 6.

    >>> int(lifetime_kv([4], [3], chunk=2)[0])
    17
    """
    s, o = _lengths(prompt, output)
    if chunk < 1 or block_size < 1:
        raise InputError(f"chunk and block_size must be >= 1, got {chunk}, {block_size}")
    bs = int(block_size)
    nch = -(-s // chunk)
    full = nch - 1  # chunks k = 1..nch-1 hold k*chunk tokens; the last holds s
    if bs == 1:
        pre = chunk * full * (full + 1) // 2 + s
    else:
        # sum_{k=1}^{full} ceil(k*chunk/bs): exact by a loop over distinct counts when small.
        pre = np.array([int(np.ceil(np.arange(1, f + 1) * chunk / bs).sum()) if f else 0
                        for f in full.tolist()], dtype=np.int64) + -(-s // bs)
    dec = _ceil_sum(s + 1, s + o - 1, bs)
    return bs * (pre + dec) if bs > 1 else pre + dec


def expected_g(prompt: ArrayLike, output: ArrayLike, chunk: int, block_size: int = 1) -> float:
    """Mean of :func:`lifetime_kv` over the given requests (an empirical distribution)."""
    return float(lifetime_kv(prompt, output, chunk, block_size).mean())


@dataclass(frozen=True)
class LengthMoments:
    """Per-request means the fluid model needs, at one chunk size."""

    chunk: int
    mean_prompt: float  # E[s]
    mean_decode: float  # E[o - 1]
    mean_iters: float  # E[L] = E[ceil(s/c)] + E[o - 1]
    mean_chunks: float  # E[ceil(s/c)]
    mean_g: float  # E[g], blocks rounded
    mean_decode_kv: float  # E[sum_{j=1}^{o-1} (s + j)], attended decode KV
    mean_prefill_work: float  # E[s (s + 1) / 2], causal query-key pairs
    max_footprint: int  # max(s + o)

    @classmethod
    def of(cls, prompt: ArrayLike, output: ArrayLike, chunk: int,
           block_size: int) -> LengthMoments:
        """Moments of the empirical distribution of ``(prompt, output)`` pairs."""
        s, o = _lengths(prompt, output)
        sf, df = s.astype(float), (o - 1).astype(float)
        nch = -(-s // chunk)
        return cls(
            chunk=int(chunk), mean_prompt=float(sf.mean()), mean_decode=float(df.mean()),
            mean_iters=float((nch + df).mean()), mean_chunks=float(nch.mean()),
            mean_g=expected_g(s, o, chunk, block_size),
            mean_decode_kv=float((df * sf + df * (df + 1) / 2).mean()),
            mean_prefill_work=float((sf * (sf + 1) / 2).mean()),
            max_footprint=int((s + o).max()))


@dataclass(frozen=True)
class IterationMix:
    """The average iteration at ``y`` completions per iteration (see the module docstring)."""

    y: float
    phi: float  # fraction of iterations with prefill chunks
    decodes: float  # decoding sequences per iteration, n
    mixed_s: float  # time of an iteration with prefill
    decode_s: float  # time of a pure-decode iteration
    mean_s: float  # average iteration time b(y)
    seqs: float
    kv_in_use: float


def iteration_mix(y: float, m: LengthMoments, latency: Any) -> IterationMix:
    r"""Mean iteration time :math:`\bar b(y)` when ``y`` requests complete per iteration.

    Mixed iterations (fraction :math:`\varphi`) carry ``n + y E[s]/\varphi`` tokens and the
    prefill attention work; pure-decode iterations carry ``n``; both attend the decode KV
    ``y E[D]`` and run ``y E[L]`` sequences. Uses ``latency.step_time`` for both kinds.
    """
    n = y * m.mean_decode
    seqs = y * m.mean_iters
    kv = y * m.mean_decode_kv
    phi = min(1.0, y * m.mean_chunks)
    dec = latency.step_time(max(n, 1.0), max(seqs, 1.0), kv, 0.0)
    if phi > 0:
        mixed = latency.step_time(n + y * m.mean_prompt / phi, max(seqs, 1.0), kv,
                                  y * m.mean_prefill_work / phi)
    else:
        mixed = dec
    return IterationMix(y, phi, n, mixed, dec, phi * mixed + (1 - phi) * dec, seqs,
                        y * m.mean_g)


@dataclass
class Capacity:
    """Service rate of one instance and what limits it (see the module docstring)."""

    mu_rps: float
    mu_memory_rps: float
    mu_compute_rps: float  # token budget (Li-Dai-Peng)
    mu_seqs_rps: float
    binding: str  # "memory" or "compute"
    binding_constraint: str  # "kv_memory", "max_num_batched_tokens" or "max_num_seqs"
    binding_ratio: float  # batch the next-tightest limit allows / batch at the binding one
    delta: float
    step_time_s: float
    requests_per_iteration: float
    mean_g: float
    moments: LengthMoments
    mix: IterationMix
    duals: dict[str, float] = field(default_factory=dict)
    accepted_frac: float = 1.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready key numbers."""
        return {
            "mu_rps_per_instance": self.mu_rps, "mu_memory_rps": self.mu_memory_rps,
            "mu_compute_rps": self.mu_compute_rps, "mu_seqs_rps": self.mu_seqs_rps,
            "binding": self.binding, "binding_constraint": self.binding_constraint,
            "binding_ratio": self.binding_ratio, "delta": self.delta,
            "step_time_s": self.step_time_s, "mean_g_token_iterations": self.mean_g,
            "accepted_frac": self.accepted_frac, "duals": dict(self.duals)}


def _caps(m: LengthMoments, lim: EngineLimits) -> dict[str, float]:
    return {"kv_memory": lim.kv_tokens / m.mean_g,
            "max_num_seqs": lim.max_num_seqs / m.mean_iters,
            "max_num_batched_tokens": lim.max_num_batched_tokens
            / (m.mean_prompt + m.mean_decode)}


def _moments_at_saturation(s: np.ndarray, o: np.ndarray, lim: EngineLimits) -> LengthMoments:
    """Moments with the chunk size ``T - n`` of the saturated operating point (fixed point)."""
    chunk = lim.max_num_batched_tokens
    m = LengthMoments.of(s, o, chunk, lim.block_size)
    for _ in range(4):
        y = min(_caps(m, lim).values())
        new = max(1, int(lim.max_num_batched_tokens - y * m.mean_decode))
        if new == chunk:
            break
        chunk = new
        m = LengthMoments.of(s, o, chunk, lim.block_size)
    return m


def instance_capacity(prompt: ArrayLike, output: ArrayLike, latency: Any,
                      limits: EngineLimits) -> Capacity:
    """Service rate :math:`\\mu` of one instance for requests drawn from ``(prompt, output)``.

    Requests with ``prompt + output > limits.max_model_len`` are left out (the engine rejects
    them); ``accepted_frac`` says how many remain. See the module docstring for the model.

    Raises
    ------
    InputError
        If no request fits ``max_model_len``.
    """
    s, o = _lengths(prompt, output)
    keep = np.ones(len(s), dtype=bool)
    if limits.max_model_len is not None:
        keep = s + o <= limits.max_model_len
        if not keep.any():
            raise InputError(f"no request fits max_model_len={limits.max_model_len}")
    s, o = s[keep], o[keep]
    m = _moments_at_saturation(s, o, limits)
    caps = _caps(m, limits)
    mus = {k: y / iteration_mix(y, m, latency).mean_s for k, y in caps.items()}
    order = sorted(caps, key=lambda k: caps[k])
    bind = order[0]
    y = caps[bind]
    mix = iteration_mix(y, m, latency)
    cap = Capacity(
        mu_rps=mus[bind], mu_memory_rps=mus["kv_memory"],
        mu_compute_rps=mus["max_num_batched_tokens"], mu_seqs_rps=mus["max_num_seqs"],
        binding="memory" if bind == "kv_memory" else "compute", binding_constraint=bind,
        binding_ratio=caps[order[1]] / y, delta=m.max_footprint / limits.kv_tokens,
        step_time_s=mix.mean_s, requests_per_iteration=y, mean_g=m.mean_g, moments=m, mix=mix,
        accepted_frac=float(keep.mean()))
    cap.duals = capacity_lp(cap, latency, limits)
    return cap


def capacity_lp(cap: Capacity, latency: Any, limits: EngineLimits) -> dict[str, float]:
    r"""Solve the linearised capacity LP with HiGHS and price each resource by its dual.

    Returns ``lp_mu_rps`` (equal to ``cap.mu_rps`` up to solver tolerance) and the marginal
    values :math:`\partial\mu/\partial(\cdot)` in req/s: ``per_kv_gb_per_gpu`` (one more GB of
    KV on every GPU of the instance), ``per_kv_token``, ``per_seq_slot`` (``max_num_seqs + 1``),
    ``per_budget_token`` (``max_num_batched_tokens + 1``), and ``per_iteration_time_frac`` (the
    gain from iterations 1% faster, per 1%).
    """
    from scipy.optimize import linprog  # deferred: scipy.optimize costs ~0.6 s to import

    m, y = cap.moments, cap.requests_per_iteration
    h = max(1e-6, 1e-3 * y)
    y0 = max(y - h, 1e-9)
    a1 = (iteration_mix(y + h, m, latency).mean_s - iteration_mix(y0, m, latency).mean_s) / (
        y + h - y0)
    a0 = cap.step_time_s - a1 * y
    if a0 <= 0:  # the tangent must keep a positive per-iteration overhead
        a1, a0 = cap.step_time_s / (2 * y), cap.step_time_s / 2
    mem, seq, tok = m.mean_g, m.mean_iters, m.mean_prompt + m.mean_decode
    # Variables (lambda, r); rows: kv, seqs, tokens, time. linprog minimises -lambda.
    a_ub = [[mem, -limits.kv_tokens], [seq, -limits.max_num_seqs],
            [tok, -limits.max_num_batched_tokens], [a1, a0]]
    res = linprog([-1.0, 0.0], A_ub=a_ub, b_ub=[0, 0, 0, 1], bounds=[(0, None), (0, None)],
                  method="highs")
    if res.status != 0:  # pragma: no cover - a bounded feasible LP by construction
        raise RuntimeError(f"capacity LP failed: {res.message}")
    lam, r = float(res.x[0]), float(res.x[1])
    u = -np.asarray(res.ineqlin.marginals, dtype=float)  # duals of the max problem, >= 0
    per_token = float(u[0] * r)
    tokens_per_gb = (GB / limits.kv_bytes_per_token_per_gpu
                     if limits.kv_bytes_per_token_per_gpu > 0 else 0.0)
    return {"lp_mu_rps": lam, "per_kv_token": per_token,
            "per_kv_gb_per_gpu": per_token * tokens_per_gb,
            "per_seq_slot": float(u[1] * r), "per_budget_token": float(u[2] * r),
            "per_iteration_time_frac": float(u[3]) * 0.01}


def min_instances_fluid(arrival_at: ArrayLike, mu_rps: float, tol_rps: float | None = None,
                        num_points: int = 1000, max_instances: int = 100_000) -> int:
    r"""Smallest ``N`` whose fluid queue passes the stability check of a trace's arrivals.

    The fluid queue of ``N`` instances of rate ``mu_rps`` follows the Lindley recursion
    :math:`Q_{k+1} = \max(0, Q_k + A_k - N\mu\Delta)` over ``num_points`` equal bins of the
    arrival window (:math:`A_k` arrivals in bin ``k``). As in
    :meth:`servoir.results.RunResult.queue_slope_per_s`, the least-squares slope of ``Q`` over
    the second half of the window must be below ``tol_rps`` (default 1% of the mean arrival rate
    of ``arrival_at``). For stationary arrivals this is about :math:`\lceil\lambda/\mu\rceil`;
    for a trace whose rate varies it accounts for the peaks the check sees.

    Examples
    --------
    >>> import numpy as np
    >>> min_instances_fluid(np.linspace(0, 100, 1001), mu_rps=3.0)  # 10 req/s
    4
    """
    t = np.sort(np.asarray(arrival_at, dtype=float))
    if not mu_rps > 0 or not math.isfinite(mu_rps):
        raise InputError(f"mu_rps must be finite and > 0, got {mu_rps!r}")
    if len(t) < 2 or not t[-1] > t[0]:
        return 1
    span = t[-1] - t[0]
    counts, edges = np.histogram(t, bins=num_points, range=(t[0], t[-1]))
    lam = (len(t) - 1) / span
    dt = span / num_points
    half = edges[1:] >= t[0] + span / 2
    x = edges[1:][half] - edges[1:][half].mean()

    def slope(n: int) -> float:
        q, out = 0.0, np.empty(num_points)
        c = n * mu_rps * dt
        for k, a in enumerate(counts.tolist()):
            q = max(0.0, q + a - c)
            out[k] = q
        qh = out[half]
        return float((x * (qh - qh.mean())).sum() / (x * x).sum())

    tol = 0.01 * lam if tol_rps is None else tol_rps
    n = max(1, int(math.floor((lam - tol) / mu_rps)))
    step = 1
    while n < max_instances and slope(n) >= tol:  # grow geometrically past the mean
        n += step
        step = min(2 * step, max(1, n // 8))
    while n > 1 and slope(n - 1) < tol:
        n -= 1
    return n

# ---------------------------------------------------------------------- SLO-aware sizing


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


def _tpot_p99(mix: IterationMix, prompt: np.ndarray, output: np.ndarray, latency: Any,
              chunk: int, num_samples: int = 20_000) -> float:
    """p99 of ``t_d + sum of X mixed-iteration excesses / (o - 1)``, X ~ Bin(o - 1, phi).

    A mixed iteration's excess over a pure decode depends on the chunk it carries: chunks are
    drawn from the prompts' chunks (each prompt gives ``ceil(s / chunk)`` equal chunks). Monte
    Carlo on a fixed stream (deterministic); sums of more than 64 excesses use the normal law.
    """
    from servoir.rng import stream

    keep = output > 1
    if not keep.any() or mix.phi <= 0:
        return mix.decode_s
    s, m = prompt[keep], output[keep] - 1
    nch = -(-s // chunk)
    sizes = np.repeat(s / nch, nch)
    uniq, inv = np.unique(np.round(sizes).astype(np.int64), return_inverse=True)
    seqs = max(mix.seqs, 1.0)
    exc = np.array([latency.step_time(mix.decodes + c, seqs, 0, c * (c + 1) / 2)
                    for c in uniq.tolist()]) - latency.step_time(max(mix.decodes, 1.0), seqs, 0, 0)
    exc = np.maximum(exc[inv], 0.0)
    rng = stream(0, "analysis.tpot_p99")
    mi = m[rng.integers(0, len(m), num_samples)]
    x = rng.binomial(mi, mix.phi)
    small = x <= 64
    tot = np.zeros(num_samples)
    idx = rng.integers(0, len(exc), (int(small.sum()), 64))
    draws = np.where(np.arange(64) < x[small, None], exc[idx], 0.0)
    tot[small] = draws.sum(axis=1)
    big = ~small
    tot[big] = x[big] * exc.mean() + np.sqrt(x[big]) * exc.std() * rng.standard_normal(
        int(big.sum()))
    return float(np.quantile(mix.decode_s + np.maximum(tot, 0) / mi, 0.99))


def _ttft_p99(mix: IterationMix, cap: Capacity, lam_i: float, prompt: np.ndarray,
              latency: Any, ca2: float) -> float:
    m = cap.moments
    nch = -(-prompt // m.chunk)
    per = prompt / nch
    pre = 0.5 * mix.mean_s + nch * np.array(
        [latency.step_time(mix.decodes + c, max(mix.seqs, 1.0), mix.y * m.mean_decode_kv,
                           c * (c + 1) / 2) for c in per.tolist()])
    servers = max(1, int(cap.requests_per_iteration * m.mean_iters))
    a = lam_i * servers / cap.mu_rps
    pw = mmc_erlang_c(a * cap.mu_rps / servers, cap.mu_rps / servers, servers) if a > 0 else 0.0
    theta = 2 * (cap.mu_rps - lam_i) / (1 + ca2)

    def tail(x: float) -> float:
        t = x - pre
        return float(np.where(t < 0, 1.0, pw * np.exp(-theta * np.maximum(t, 0))).mean())

    lo, hi = 0.0, float(pre.max()) + max(0.0, math.log(100 * max(pw, 1e-300))) / theta + 1
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tail(mid) > 0.01 else (lo, mid)
    return hi


def predict_p99(n: int, lam: float, cap: Capacity, latency: Any, prompt: np.ndarray,
                output: np.ndarray, cv2: float = 1.0) -> dict[str, float] | None:
    r"""Predicted p99 TTFT and TPOT (seconds) of ``n`` instances at total accepted rate ``lam``.

    At a per-instance arrival rate :math:`\lambda_i = \lambda / N` the instance runs at the fluid
    operating point ``y`` (requests completed per iteration) that solves :math:`y = \lambda_i\,
    \bar b(y)` (:func:`servoir.analysis.capacity.iteration_mix`). From it:

    - **TPOT.** A fraction :math:`\varphi` of iterations carry prefill chunks and last
      :math:`t_m`, the rest :math:`t_d`. A request with ``o`` output tokens sees ``o - 1`` decode
      iterations, of which :math:`X \sim \mathrm{Bin}(o-1, \varphi)` are mixed, so
      :math:`\mathrm{TPOT} = t_d + (t_m - t_d) X/(o-1)`; the p99 is taken over the mixture of
      output lengths.
    - **TTFT.** Queueing plus prefill. In saturation an instance holds
      :math:`c = \lfloor y^* E[L] \rfloor` requests at once, so the queue is approximated as M/M/c
      with total rate :math:`\mu` (Erlang C, [3]_) and a Kingman correction
      :math:`(1 + c_a^2)/2` for the variability of arrivals (round-robin gives each instance every
      N-th arrival, :math:`c_a^2 = \mathrm{cv}^2/N`):
      :math:`P(W_q > t) = C(c, \lambda_i c/\mu)\exp(-2(\mu - \lambda_i)t/(1 + c_a^2))`. The request
      then waits half an iteration on average and runs its prompt in :math:`\lceil s/c\rceil` mixed
      iterations.

    These are approximations; ``servoir plan --verify`` confirms them with the simulator.

    References
    ----------
    .. [3] L. Kleinrock, *Queueing Systems, Volume 1: Theory*. Wiley, 1975 (M/M/c).
    .. [4] J. F. C. Kingman, "The single server queue in heavy traffic", *Proc. Cambridge Phil. Soc.*
       57(4):902-904, 1961.

    ``prompt``/``output`` are the accepted requests' lengths (a sample is enough); ``cv2`` the
    squared coefficient of variation of the inter-arrival gaps. ``None`` when unstable.
    """
    lam_i = lam / n
    mix = operating_point(lam_i, cap, latency)
    if mix is None:
        return None
    return {"ttft_p99_s": _ttft_p99(mix, cap, lam_i, prompt, latency, cv2 / n),
            "tpot_p99_s": _tpot_p99(mix, prompt, output, latency, cap.moments.chunk),
            "step_time_s": mix.mean_s}


def slo_min_instances(n_start: int, lam: float, cap: Capacity, latency: Any,
                      prompt: np.ndarray, output: np.ndarray, cv2: float,
                      ttft_s: float | None, tpot_s: float | None,
                      max_instances: int = 10_000) -> tuple[int | None, dict[str, float] | None]:
    """Smallest ``n >= n_start`` whose predicted p99s meet the SLOs (``None``: none up to the
    cap, e.g. a TPOT target below the single-request iteration time)."""
    n = max(1, n_start)
    while n <= max_instances:
        p = predict_p99(n, lam, cap, latency, prompt, output, cv2)
        if p is not None and (ttft_s is None or p["ttft_p99_s"] <= ttft_s) and (
                tpot_s is None or p["tpot_p99_s"] <= tpot_s):
            return n, p
        if p is not None and tpot_s is not None and p["tpot_p99_s"] > tpot_s and n > 4 * max(
                1, n_start) and p["step_time_s"] > tpot_s:
            return None, p  # even a lightly loaded instance is too slow per token
        n = n + 1 if n < 64 else int(n * 1.05) + 1
    return None, None

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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from servoir.errors import InputError

__all__ = [
    "Capacity",
    "EngineLimits",
    "LengthMoments",
    "RunningBatch",
    "expected_g",
    "instance_capacity",
    "iteration_mix",
    "lifetime_kv",
    "min_instances_fluid",
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


def length_arrays(prompt: ArrayLike, output: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths as flat int64 arrays, checked (same non-zero length, >= 1)."""
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
    s, o = length_arrays(prompt, output)
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
        s, o = length_arrays(prompt, output)
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
    s, o = length_arrays(prompt, output)
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


@dataclass(frozen=True)
class RunningBatch:
    """The engine's running batch, for the short-run fluid of :func:`min_instances_fluid`.

    Per instance: the sequence cap ``max_seqs``, the KV capacity ``kv_tokens``, the token budget
    ``budget``; a sample of requests' ``prompts``, prefill ``chunks`` and lifetimes ``iters``
    (``ceil(s/c) + o - 1`` iterations); ``prefill_work_per_token`` the mean causal attention
    work per prompt token; ``latency`` the iteration-time model.
    """

    max_seqs: float
    kv_tokens: float
    budget: float
    prompts: np.ndarray
    chunks: np.ndarray
    iters: np.ndarray
    prefill_work_per_token: float
    latency: Any
    time_scale: float = 1.0  # iteration times are multiplied by this (see calibrated)
    prompt_cost: bool = True  # False: admitted prompts cost budget but no time (PD decode)

    @classmethod
    def of(cls, cap: Capacity, latency: Any, limits: EngineLimits, prompt: ArrayLike,
           output: ArrayLike, max_sample: int = 2000) -> RunningBatch:
        """From the capacity of one instance and the (accepted) requests' lengths."""
        m = cap.moments
        s, o = length_arrays(prompt, output)
        k = max(1, len(s) // max_sample)
        s, o = s[::k], o[::k]
        nch = -(-s // m.chunk)
        raw = cls(float(limits.max_num_seqs), float(limits.kv_tokens),
                  float(limits.max_num_batched_tokens), s.astype(float), nch.astype(float),
                  (nch + o - 1).astype(float), m.mean_prefill_work / m.mean_prompt, latency)
        return raw.calibrated(cap.mu_rps, cap.step_time_s)

    def saturated_rps(self, step_s: float, num_points: int = 400) -> float:
        """Completions per second of the fluid under a steady 2x overload (second half of a
        run ten mean lifetimes long)."""
        guess = float(self.max_seqs / max(self.iters.mean(), 1.0) / step_s)
        dt = 10.0 * float(self.iters.mean()) * step_s / num_points
        counts = np.full(num_points, 2.0 * guess * dt)
        waiting = self.fluid(counts, dt, 1)[0]
        adm = counts - np.diff(np.concatenate(([0.0], waiting)))
        h = num_points // 2
        return float(adm[h:].sum() / ((num_points - h) * dt))

    def calibrated(self, mu_rps: float, step_s: float) -> RunningBatch:
        """The same batch with iteration times scaled so that its saturated throughput is
        ``mu_rps`` (the capacity model's): the fluid then differs from the Lindley queue at
        rate ``mu`` only in how a run's start fills the batch."""
        sat = self.saturated_rps(step_s)
        if not (sat > 0 and math.isfinite(sat)):
            return self
        return replace(self, time_scale=self.time_scale * sat / mu_rps)

    def kernels(self, max_age: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ages, alive, held)``: per admitted request, the fraction still in the batch and
        the KV tokens it holds, after ``ages`` iterations (0, 1, ... up to ``max_age``, or a
        grid of 2,048 ages when the longest lifetime is longer). A request of age ``u`` holds
        ``s + max(0, u - chunks)`` tokens (vLLM reserves the whole prompt at admission)."""
        top = int(min(max_age, float(self.iters.max()))) + 2
        # Every age up to 2,048 iterations, then a grid of 2,048 (the callers interpolate).
        ages = (np.arange(top, dtype=float) if top <= 2048
                else np.linspace(0.0, float(top - 1), 2048))
        order = np.argsort(self.iters)
        it, sp, ch = self.iters[order], self.prompts[order], self.chunks[order]
        alive = np.empty(len(ages))
        held = np.empty(len(ages))
        n = len(it)
        for i, u in enumerate(ages.tolist()):  # requests sorted by lifetime
            first = int(np.searchsorted(it, u, side="right"))
            alive[i] = (n - first) / n
            held[i] = float((sp[first:] + np.maximum(0.0, u - ch[first:])).sum()) / n
        return ages, alive, held

    def fluid(self, counts: np.ndarray, dt: float, n: int,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch fluid of :func:`min_instances_fluid` over bins of width ``dt`` with
        ``counts`` arrivals each, shared by ``n`` round-robin instances: per bin, the waiting
        requests (all instances), and the requests and KV tokens in one instance's batch."""
        return self.fluid_path(counts, dt, n)[:3]

    def fluid_path(self, counts: np.ndarray, dt: float, n: int) -> tuple[np.ndarray, ...]:
        """:meth:`fluid` and, per bin, one instance's admissions and its iteration clock (the
        iterations done before the bin starts)."""
        if "_kern" not in self.__dict__:
            object.__setattr__(self, "_kern", self.kernels(1e7))
        ages, alive, held = self.__dict__["_kern"]
        mean_s = float(self.prompts.mean())
        step = self.latency.step_time
        scale = self.time_scale
        m = len(counts)
        out, seqs_k, kv_k = np.empty(m), np.empty(m), np.empty(m)
        adm = np.zeros(m)
        clock = np.zeros(m)  # iteration clock at each bin's start
        q, now = 0.0, 0.0
        for k, a in enumerate(np.asarray(counts, dtype=float).tolist()):
            q += a / n  # per instance
            clock[k] = now
            if k:
                lag = now - clock[:k]
                seqs = float(adm[:k] @ np.interp(lag, ages, alive, right=0.0))
                kv = float(adm[:k] @ np.interp(lag, ages, held, right=0.0))
                # What the batch will hold at the bin's end (at the last bin's pace): slots
                # and KV freed during the bin can be refilled in it.
                ahead = lag + (now - clock[k - 1])
                seqs_end = float(adm[:k] @ np.interp(ahead, ages, alive, right=0.0))
                kv_end = float(adm[:k] @ np.interp(ahead, ages, held, right=0.0))
            else:
                seqs = kv = seqs_end = kv_end = 0.0
            t0 = step(max(seqs, 1.0), max(seqs, 1.0), kv, 0.0) * scale
            room = max(1.0, self.budget - seqs)
            per_tok = ((step(seqs + room, seqs + 1, kv, room * self.prefill_work_per_token)
                        * scale - t0) / room if self.prompt_cost else 0.0)
            ad = min(q, room * dt / ((t0 + per_tok * room) * mean_s),
                     max(0.0, self.max_seqs - seqs_end),
                     max(0.0, self.kv_tokens - max(kv, kv_end)) / mean_s)
            frac = min(0.999, per_tok * ad * mean_s / dt)  # share of the bin spent on prompts
            now += dt * (1.0 - frac) / t0  # iterations in this bin
            adm[k] = ad
            q -= ad
            out[k], seqs_k[k], kv_k[k] = n * q, seqs, kv
        return out, seqs_k, kv_k, adm, clock


def min_instances_fluid(arrival_at: ArrayLike, mu_rps: float, tol_rps: float | None = None,
                        num_points: int = 1000, max_instances: int = 100_000,
                        batch: RunningBatch | None = None) -> int:
    r"""Smallest ``N`` whose fluid queue passes the stability check of a trace's arrivals.

    The fluid queue of ``N`` instances of rate ``mu_rps`` follows the Lindley recursion
    :math:`Q_{k+1} = \max(0, Q_k + A_k - N\mu\Delta)` over ``num_points`` equal bins of the
    arrival window (:math:`A_k` arrivals in bin ``k``). As in
    :meth:`servoir.results.RunResult.queue_slope_per_s`, the least-squares slope of the
    *waiting* requests over the second half of the window must be below ``tol_rps`` (default 1%
    of the mean arrival rate of ``arrival_at``). For stationary arrivals this is about
    :math:`\lceil\lambda/\mu\rceil`; for a trace whose rate varies it accounts for the peaks the
    check sees.

    With ``batch`` (:class:`RunningBatch`) the queue is the engine's waiting queue in front of
    its running batch, followed through the run (a fluid of the batch, per instance, with round
    robin's even split of the arrivals). In each bin an instance admits waiting prompts while
    the sequence cap, the KV (the whole prompt is reserved) and the token budget left by the
    running requests allow; the bin's iterations last ``t0 + a p`` with ``t0`` the iteration
    time of the running batch and ``p`` the prompt tokens per iteration, so admitting faster
    slows every iteration down. Admitted requests stay for their lifetime in iterations
    (requests and KV in the batch are the admissions convolved with
    :meth:`RunningBatch.kernels` on the iteration clock). In a long run this is the queue above
    (its saturated throughput is ``mu``); in a run shorter than a few lifetimes an overload
    first fills the batch, and only then does the waiting queue, which the check measures, grow.

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
    def slope_batch(n: int) -> float:
        return _half_slope(batch.fluid(counts, dt, n)[0])  # type: ignore[union-attr]

    def _half_slope(out: np.ndarray) -> float:
        qh = out[half]
        return float((x * (qh - qh.mean())).sum() / (x * x).sum())

    def slope(n: int) -> float:
        if batch is not None:
            return slope_batch(n)
        q, out = 0.0, np.empty(num_points)
        c = n * mu_rps * dt
        for k, a in enumerate(counts.tolist()):
            q = max(0.0, q + a - c)
            out[k] = q
        return _half_slope(out)

    tol = 0.01 * lam if tol_rps is None else tol_rps
    n = max(1, int(math.floor((lam - tol) / mu_rps)))
    step_n = 1
    while n < max_instances and slope(n) >= tol:  # grow geometrically past the mean
        n += step_n
        step_n = min(2 * step_n, max(1, n // 8))
    while n > 1 and slope(n - 1) < tol:
        n -= 1
    return n

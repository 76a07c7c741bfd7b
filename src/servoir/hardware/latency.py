"""Iteration-time model of one serving instance, and where its coefficients come from.

``LatencyModel.step_time`` is the time of one engine iteration (one micro-batch through all
layers at a tensor-parallel degree ``tp``)::

    overhead_s + token_time(num_tokens) + seq_coef_s * num_seqs
               + kv_coef_s * decode_kv_tokens + prefill_attn_coef_s * prefill_attn_work

- ``token_time`` is piecewise linear over ``token_knots``: every token of the batch (prefill or
  decode) goes through the GEMMs, norms, activations and TP all-reduces.
- ``decode_kv_tokens`` is the total KV length attended by the decode sequences; the step time is
  exactly linear in it (the event-skipping simulator relies on this).
- ``prefill_attn_work`` counts causal query-key pairs: a chunk of ``c`` new tokens after ``L0``
  cached ones costs ``c * L0 + c * (c + 1) / 2`` (see :func:`prefill_attention_work`).

Coefficients are fitted ahead of time by :mod:`servoir.hardware.fit` and shipped in
``coefficients.json``; pairs without a profile get a roofline model (:func:`roofline_model`).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from servoir.errors import InputError
from servoir.hardware.gpus import GpuSpec, get_gpu
from servoir.hardware.models import PROFILE_ALIASES, ModelSpec, get_model

__all__ = [
    "LatencyModel",
    "get_latency_model",
    "list_fitted_pairs",
    "prefill_attention_work",
    "roofline_model",
    "validate_tp",
]

COEFFICIENTS_FILE = "coefficients.json"
FORMAT_VERSION = 1

# Assumptions of the roofline fallback, also used for the parts of a "roofline+gemm" fit that
# the kernel tables do not cover (see DESIGN.md, hardware).
FRAMEWORK_OVERHEAD_S = 0.5e-3
"""Per-iteration time outside the GPU kernels the tables cover (scheduler, input preparation,
sampling launch) for vLLM v1 with CUDA graphs and async scheduling, which hides most CPU work."""
BANDWIDTH_EFFICIENCY = 0.8
"""Fraction of peak HBM bandwidth a memory-bound kernel reaches (decode GEMMs, KV reads)."""
FLOPS_EFFICIENCY = 0.7
"""Fraction of peak dense bf16 FLOP/s a large GEMM or FlashAttention prefill reaches."""
LAYER_FLOOR_S = 25e-6
"""Per-layer launch/latency floor of the small kernels (norms, rope, attention, residual)."""
P2P_LATENCY_S = 10e-6
"""Fixed latency of one pipeline-stage activation send over NVLink."""
ALLREDUCE_LATENCY_S = 8e-6
"""Fixed latency of one small custom all-reduce (AIConfigurator tables: 5-7 us at 2-8 GPUs)."""
TOKEN_KNOTS: tuple[int, ...] = (
    1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
    640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 8192,
    10240, 12288, 16384, 24576, 32768,
)  # fmt: skip


def prefill_attention_work(num_new_tokens: int, num_cached_tokens: int = 0) -> float:
    """Causal query-key pairs of a prefill chunk: ``c * L0 + c * (c + 1) / 2``.

    Examples
    --------
    >>> prefill_attention_work(4, 10)
    50.0
    """
    c = num_new_tokens
    return c * num_cached_tokens + c * (c + 1) / 2


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Fitted iteration-time model for one (model, GPU, tensor-parallel degree).

    All times are seconds. ``token_knots`` must be strictly increasing and ``token_time_s``
    non-decreasing; below the first knot ``token_time`` is flat, beyond the last it extends the
    last segment's slope.

    Examples
    --------
    >>> lm = LatencyModel("m", "g", 1, (1, 10), (1e-3, 2e-3), 0.0, 1e-9, 0.0, 1e-4)
    >>> round(lm.step_time(10, 1, 1000, 0.0), 9)
    0.002101
    """

    model: str
    gpu: str
    tp: int
    token_knots: tuple[int, ...]
    token_time_s: tuple[float, ...]
    seq_coef_s: float
    kv_coef_s: float
    prefill_attn_coef_s: float
    overhead_s: float
    p2p_bytes_per_token: int = 0
    p2p_bytes_per_s: float = 300e9
    p2p_latency_s: float = P2P_LATENCY_S
    source: str = "roofline"
    # Iterations with prefill chunks (prefill_attn_work > 0) cost ``prefill_overhead_s`` more;
    # when they also carry decodes (decode KV > 0), FlashAttention's varlen path reads the
    # decode KV at ``mixed_kv_coef_s`` (None: the pure-decode rate) plus ``mixed_overhead_s``.
    mixed_kv_coef_s: float | None = None
    mixed_overhead_s: float = 0.0
    prefill_overhead_s: float = 0.0
    # FlashAttention's penalty for unequal decode lengths: a decode step with ``n`` sequences
    # costs ``skew_alpha * kv_coef_s * (n * longest - total)`` more (0: no penalty).
    skew_alpha: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _slopes: tuple[float, ...] = field(init=False, repr=False, compare=False, hash=False)
    _first: float = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        knots, times = tuple(self.token_knots), tuple(float(t) for t in self.token_time_s)
        if len(knots) < 2 or len(knots) != len(times):
            raise InputError("token_knots and token_time_s need the same length >= 2",
                             field="token_knots")  # fmt: skip
        if any(b <= a for a, b in zip(knots, knots[1:], strict=False)):
            raise InputError("token_knots must be strictly increasing", field="token_knots")
        if any(b < a for a, b in zip(times, times[1:], strict=False)):
            raise InputError("token_time_s must be non-decreasing", field="token_time_s")
        slopes = tuple(
            (times[i + 1] - times[i]) / (knots[i + 1] - knots[i]) for i in range(len(knots) - 1)
        )
        object.__setattr__(self, "token_knots", knots)
        object.__setattr__(self, "token_time_s", times)
        object.__setattr__(self, "_slopes", slopes)
        object.__setattr__(self, "_first", times[0])

    def token_time(self, num_tokens: int) -> float:
        """Seconds spent on the token-proportional work (GEMMs, norms, all-reduces)."""
        knots = self.token_knots
        if num_tokens <= knots[0]:
            return self._first
        i = bisect_right(knots, num_tokens) - 1
        if i >= len(self._slopes):
            i = len(self._slopes) - 1
        return self.token_time_s[i] + self._slopes[i] * (num_tokens - knots[i])

    def step_time(
        self, num_tokens: int, num_seqs: int, decode_kv_tokens: int, prefill_attn_work: float
    ) -> float:
        """Seconds of one iteration (see the module docstring for the formula)."""
        knots = self.token_knots
        if num_tokens <= knots[0]:
            t = self._first
        else:
            i = bisect_right(knots, num_tokens) - 1
            if i >= len(self._slopes):
                i = len(self._slopes) - 1
            t = self.token_time_s[i] + self._slopes[i] * (num_tokens - knots[i])
        if prefill_attn_work > 0 and self.mixed_kv_coef_s is not None:
            extra = self.prefill_overhead_s
            if decode_kv_tokens > 0:
                extra += self.mixed_overhead_s
            return (
                self.overhead_s + extra + t
                + self.seq_coef_s * num_seqs
                + self.mixed_kv_coef_s * decode_kv_tokens
                + self.prefill_attn_coef_s * prefill_attn_work
            )
        return (
            self.overhead_s
            + t
            + self.seq_coef_s * num_seqs
            + self.kv_coef_s * decode_kv_tokens
            + self.prefill_attn_coef_s * prefill_attn_work
        )

    def skew_time(self, num_decode: int, decode_kv_tokens: int, max_decode_kv: int) -> float:
        """Extra seconds of a decode step whose sequences attend unequal KV lengths:
        ``alpha * (t(longest) - t(mean))`` with attention linear in KV (LLMServingSim's skew
        model, ``alpha`` fitted by its profiler)."""
        return self.skew_alpha * self.kv_coef_s * max(num_decode * max_decode_kv
                                                      - decode_kv_tokens, 0)

    def p2p_time(self, num_tokens: int) -> float:
        """Seconds for one pipeline-stage hop of ``num_tokens`` activations."""
        return self.p2p_latency_s + self.p2p_bytes_per_token * num_tokens / self.p2p_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready coefficients (the ``coefficients.json`` entry)."""
        return {
            "model": self.model,
            "gpu": self.gpu,
            "tp": self.tp,
            "source": self.source,
            "token_knots": list(self.token_knots),
            "token_time_s": list(self.token_time_s),
            "seq_coef_s": self.seq_coef_s,
            "kv_coef_s": self.kv_coef_s,
            "prefill_attn_coef_s": self.prefill_attn_coef_s,
            "overhead_s": self.overhead_s,
            "p2p_bytes_per_token": self.p2p_bytes_per_token,
            "p2p_bytes_per_s": self.p2p_bytes_per_s,
            "p2p_latency_s": self.p2p_latency_s,
            **({"mixed_kv_coef_s": self.mixed_kv_coef_s,
                "mixed_overhead_s": self.mixed_overhead_s,
                "prefill_overhead_s": self.prefill_overhead_s, "skew_alpha": self.skew_alpha}
               if self.mixed_kv_coef_s is not None else {}),
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model=d["model"],
            gpu=d["gpu"],
            tp=int(d["tp"]),
            token_knots=tuple(int(k) for k in d["token_knots"]),
            token_time_s=tuple(float(t) for t in d["token_time_s"]),
            seq_coef_s=float(d["seq_coef_s"]),
            kv_coef_s=float(d["kv_coef_s"]),
            prefill_attn_coef_s=float(d["prefill_attn_coef_s"]),
            overhead_s=float(d["overhead_s"]),
            p2p_bytes_per_token=int(d["p2p_bytes_per_token"]),
            p2p_bytes_per_s=float(d["p2p_bytes_per_s"]),
            p2p_latency_s=float(d["p2p_latency_s"]),
            source=str(d["source"]),
            mixed_kv_coef_s=(None if d.get("mixed_kv_coef_s") is None
                             else float(d["mixed_kv_coef_s"])),
            mixed_overhead_s=float(d.get("mixed_overhead_s", 0.0)),
            prefill_overhead_s=float(d.get("prefill_overhead_s", 0.0)),
            skew_alpha=float(d.get("skew_alpha", 0.0)),
            fit=dict(d.get("fit", {})),
        )


def pair_key(model: str, gpu: str, tp: int) -> str:
    """Key of a pair in ``coefficients.json``: ``"<model>/<gpu>/tp<tp>"``."""
    return f"{model}/{gpu}/tp{tp}"


def validate_tp(spec: ModelSpec, tp: int) -> None:
    """Raise ``InputError`` unless ``tp`` shards the model's heads and MLP evenly.

    KV heads may be fewer than ``tp`` if ``tp`` is a multiple of them (vLLM replicates each
    KV head on ``tp / num_kv_heads`` ranks).
    """
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise InputError(f"tensor-parallel degree must be a positive integer, got {tp!r}",
                         field="hardware.tp")  # fmt: skip
    problems = []
    if spec.num_heads % tp:
        problems.append(f"num_heads={spec.num_heads}")
    kv = spec.num_kv_heads
    if not spec.mla_kv_dim and (kv % tp if kv >= tp else tp % kv):
        problems.append(f"num_kv_heads={kv}")
    if spec.intermediate_size % tp:
        problems.append(f"intermediate_size={spec.intermediate_size}")
    if spec.moe_intermediate_size % tp:
        problems.append(f"moe_intermediate_size={spec.moe_intermediate_size}")
    if problems:
        raise InputError(
            f"tp={tp} does not divide {', '.join(problems)} of model '{spec.name}'",
            field="hardware.tp",
        )


@cache
def _load_shipped() -> dict[str, dict[str, Any]]:
    text = resources.files("servoir.hardware").joinpath(COEFFICIENTS_FILE).read_text()
    data = json.loads(text)
    if data.get("format") != FORMAT_VERSION:
        raise InputError(f"unsupported coefficients format {data.get('format')!r}",
                         file=COEFFICIENTS_FILE, field="format")  # fmt: skip
    pairs: dict[str, dict[str, Any]] = data["pairs"]
    return pairs


def list_fitted_pairs() -> list[tuple[str, str, int]]:
    """(model, gpu, tp) triples with shipped fitted coefficients."""
    return sorted((d["model"], d["gpu"], int(d["tp"])) for d in _load_shipped().values())


@cache
def get_latency_model(model: str, gpu: str, tp: int = 1, ep: int = 1) -> LatencyModel:
    """Latency model for a (model, GPU, TP) triple: shipped fit, else roofline.

    Names are resolved through the registries (unknown names raise ``UnknownNameError``);
    ``tp`` is validated with :func:`validate_tp`. Results are cached. ``ep > tp``: one rank of
    a DP-attention group whose ``ep`` GPUs share the routed experts (always the roofline: the
    shipped fits were profiled without expert parallelism).

    Examples
    --------
    >>> lm = get_latency_model("llama-3-8b", "h100", 1)
    >>> lm.step_time(1, 1, 1000, 0.0) > 0
    True
    """
    spec, gspec = get_model(model), get_gpu(gpu)
    validate_tp(spec, tp)
    if ep > tp:
        return roofline_model(spec, gspec, tp, ep)
    key = pair_key(PROFILE_ALIASES.get(spec.name, spec.name), gspec.name, tp)
    entry = _load_shipped().get(key)
    if entry is None:
        return roofline_model(spec, gspec, tp)
    lm = LatencyModel.from_dict(entry)
    if spec.name != lm.model:  # an alias: same shapes, keep the requested name
        lm = LatencyModel.from_dict({**entry, "model": spec.name})
    return lm


def roofline_model(spec: ModelSpec, gpu: GpuSpec, tp: int = 1, ep: int = 1) -> LatencyModel:
    """Roofline latency model from shapes and data-sheet figures (no profile needed).

    Per knot ``n``: ``max(bytes / (bandwidth * BANDWIDTH_EFFICIENCY),
    flops / (peak * FLOPS_EFFICIENCY))`` where bytes are the weights one GPU reads (for MoE only
    the experts that ``n`` tokens are expected to touch) plus activations, and flops are
    ``2 * active parameters * n / tp``. TP adds two all-reduces per layer of
    ``n * hidden * 2`` bytes over NVLink (ring: ``2 (tp-1)/tp`` of the data crosses each link).
    Attention: ``kv_coef_s`` streams the KV bytes per token held by one GPU; prefill pairs cost
    ``4 * head_dim`` FLOPs per query head (QK^T and PV).

    Expert parallelism (``ep > tp``, MoE only; DeepSeek-style serving): the ``ep`` GPUs of a
    DP-attention group of ``ep / tp`` ranks each hold ``E / ep`` routed experts whole, and the
    rest of the model TP-sliced. Every rank is costed as if all ranks ran its ``n`` tokens: the
    group's ``n ep / tp`` tokens touch ``E/ep (1 - (1 - k/E)^(n ep/tp))`` local experts, whose
    weights the GPU reads; expert FLOPs are the same ``n k / tp`` token-experts per GPU as
    without EP. Dispatch and combine (DeepEP-style all-to-all, one copy per destination GPU)
    send each token's hidden state to ``(ep - 1)(1 - (1 - 1/ep)^k)`` other GPUs on average, per
    MoE layer each way, over the GPU's link (one NVLink domain assumed).
    """
    validate_tp(spec, tp)
    shard = spec.is_moe and ep > tp
    if shard and ep % tp:
        raise InputError(f"expert-parallel degree {ep} is not a multiple of tp={tp}",
                         field="hardware.expert_parallel")
    bw = gpu.hbm_bandwidth_bytes_per_s * BANDWIDTH_EFFICIENCY
    peak = gpu.bf16_flops * FLOPS_EFFICIENCY
    h, layers, act = spec.hidden_size, spec.num_layers, 2
    attn_params = spec.attn_layer_params or h * (spec.q_size + 2 * spec.kv_size) + spec.q_size * h
    dense_mlp = 3 * h * spec.intermediate_size
    expert = 3 * h * spec.moe_intermediate_size
    n_moe = layers - spec.num_dense_layers if spec.is_moe else 0
    n_dense = layers - n_moe
    head_params = spec.vocab_size * h
    knots, times = TOKEN_KNOTS, []
    k_act = k_active(spec)
    for n in knots:
        touched = local = 0.0
        if spec.is_moe:
            e, k = spec.num_experts, spec.experts_per_token
            if shard:
                local = e / ep * (1.0 - (1.0 - k / e) ** (n * ep / tp))
                touched = spec.num_shared_experts
            else:
                touched = e * (1.0 - (1.0 - k / e) ** n) + spec.num_shared_experts
        router = h * spec.num_experts
        weights = layers * attn_params + n_dense * dense_mlp + n_moe * (touched * expert + router)
        active = layers * attn_params + n_dense * dense_mlp + n_moe * (k_act * expert + router)
        byts = (weights / tp + n_moe * local * expert) * spec.dtype_bytes + n * layers * 6 * h * act
        flops = 2.0 * active * n / tp
        t = max(byts / bw, flops / peak)
        if tp > 1:
            ring = 2.0 * (tp - 1) / tp * n * h * act / gpu.interconnect_bytes_per_s
            t += 2 * layers * (ALLREDUCE_LATENCY_S + ring)
        if shard:
            k = spec.experts_per_token
            remote = (ep - 1) * (1.0 - (1.0 - 1.0 / ep) ** k)
            a2a = n / tp * remote * h * act / gpu.interconnect_bytes_per_s
            t += 2 * n_moe * (ALLREDUCE_LATENCY_S + a2a)
        times.append(t)
    for i in range(1, len(times)):
        times[i] = max(times[i], times[i - 1])
    kv_per_gpu = kv_bytes_per_token_per_gpu(spec, tp)
    heads_per_gpu = spec.num_heads // tp
    lm_head_s = head_params * spec.dtype_bytes / tp / bw
    return LatencyModel(
        model=spec.name,
        gpu=gpu.name,
        tp=tp,
        token_knots=knots,
        token_time_s=tuple(times),
        seq_coef_s=2.0 * head_params / tp / peak + spec.vocab_size * 4 * 4 / bw,
        kv_coef_s=kv_per_gpu / bw,
        prefill_attn_coef_s=4.0 * spec.head_dim * heads_per_gpu * layers / peak,
        overhead_s=FRAMEWORK_OVERHEAD_S + layers * LAYER_FLOOR_S + lm_head_s,
        p2p_bytes_per_token=h * act,
        p2p_bytes_per_s=gpu.interconnect_bytes_per_s,
        source="roofline" if not shard else f"roofline:ep{ep}",
        fit={"bandwidth_efficiency": BANDWIDTH_EFFICIENCY, "flops_efficiency": FLOPS_EFFICIENCY,
             "ep": ep if shard else 1},
    )


def k_active(spec: ModelSpec) -> int:
    """Experts each token runs through (routed plus shared); 0 for dense models."""
    return spec.experts_per_token + spec.num_shared_experts if spec.is_moe else 0


def kv_bytes_per_token_per_gpu(spec: ModelSpec, tp: int) -> float:
    """KV bytes one token occupies on one GPU of a TP group (one pipeline stage = all layers).

    GQA heads split over ``tp``; with fewer KV heads than ``tp`` each GPU holds one replicated
    head. MLA's latent cache is replicated on every rank.
    """
    if spec.mla_kv_dim:
        return float(spec.kv_bytes_per_token)
    heads_per_gpu = max(spec.num_kv_heads // tp, 1)
    return 2.0 * spec.num_layers * heads_per_gpu * spec.head_dim * spec.cache_dtype_bytes

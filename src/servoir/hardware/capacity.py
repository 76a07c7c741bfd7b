"""KV-cache capacity of one GPU: memory x utilisation - weights - activations, in tokens.

Mirrors vLLM's memory profiling: vLLM gives the KV cache
``total_memory * gpu_memory_utilization - weights - peak activations - non-torch memory``.
vLLM measures the last two with a dummy forward pass; here they are estimated by
:func:`default_activation_reserve_bytes`.
"""

from __future__ import annotations

from servoir.errors import InputError
from servoir.hardware.gpus import get_gpu
from servoir.hardware.latency import kv_bytes_per_token_per_gpu, validate_tp
from servoir.hardware.models import ModelSpec, get_model

__all__ = ["default_activation_reserve_bytes", "kv_capacity_blocks", "kv_capacity_tokens"]

_GIB = 1024**3
BASE_RESERVE_BYTES = int(0.85 * _GIB)
"""Fixed non-KV memory: CUDA-graph pool, NCCL/custom all-reduce buffers, allocator slack."""


def default_activation_reserve_bytes(
    spec: ModelSpec, tp: int = 1, max_num_batched_tokens: int = 8192, max_num_seqs: int = 256
) -> int:
    """Estimated non-KV, non-weight memory per GPU (bytes).

    ``0.85 GiB + max_num_batched_tokens * (4 * hidden + 2 * mlp_width / tp) * 2
    + max_num_seqs * vocab * 4``: the fixed part (CUDA graphs, communication buffers), the peak
    bf16 activations of vLLM's profiling forward pass (residual, normed input, QKV/attention
    output and the gate/up output are the live tensors) and the fp32 logits of its sampler
    warm-up. Check against a real run: Llama-3.1-8B on an RTX 4090 (23.5 GiB, utilisation 0.9,
    2048 batched tokens) gives 41,337 KV tokens here vs vLLM 0.19's 41,408 (2,588 blocks).
    """
    width = spec.intermediate_size
    if spec.is_moe and spec.num_dense_layers == 0:
        width = spec.moe_intermediate_size * spec.experts_per_token
    act = max_num_batched_tokens * (4 * spec.hidden_size + 2 * width // tp) * 2
    return BASE_RESERVE_BYTES + act + max_num_seqs * spec.vocab_size * 4


def kv_capacity_tokens(
    model: str,
    gpu: str,
    tp: int = 1,
    pp: int = 1,
    gpu_memory_utilization: float = 0.9,
    activation_reserve_bytes: int | None = None,
    ep: int = 1,
) -> int:
    """KV-cache capacity of one instance in tokens (each GPU holds its share of every token).

    Per GPU: ``memory * utilization - weights - reserve`` divided by the KV bytes one token
    takes on that GPU (``kv_bytes_per_token / (tp * pp)``, with KV heads replicated when
    ``num_kv_heads < tp`` and MLA latents replicated on every TP rank). Weights per GPU are
    ``weight_bytes / (tp * pp)``; with expert parallelism over ``ep > tp`` GPUs (a DP-attention
    group of ``ep / tp`` ranks, vLLM's ``--enable-expert-parallel``) the routed experts are
    split ``ep`` ways instead: ``(weight_bytes - routed) / (tp * pp) + routed / (ep * pp)``.

    Raises
    ------
    InputError
        If the weights (plus reserve) do not fit, naming the configuration.

    Examples
    --------
    >>> 440_000 < kv_capacity_tokens("llama-3-8b", "a100") < 460_000
    True
    """
    spec, gspec = get_model(model), get_gpu(gpu)
    validate_tp(spec, tp)
    if not isinstance(pp, int) or pp < 1 or pp > spec.num_layers:
        raise InputError(f"pipeline-parallel degree must be in 1..{spec.num_layers}, got {pp!r}",
                         field="hardware.pp")  # fmt: skip
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise InputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}",
                         field="engine.gpu_memory_utilization")  # fmt: skip
    reserve = (
        default_activation_reserve_bytes(spec, tp)
        if activation_reserve_bytes is None
        else int(activation_reserve_bytes)
    )
    if not isinstance(ep, int) or ep < 1 or (ep > tp and ep % tp):
        raise InputError(f"expert-parallel degree must be 1 or a multiple of tp={tp}, got {ep!r}",
                         field="hardware.expert_parallel")
    routed = spec.routed_expert_bytes if ep > tp else 0
    weights = (spec.weight_bytes - routed) / (tp * pp) + routed / (ep * pp)
    usable = gspec.memory_bytes * gpu_memory_utilization - weights - reserve
    if usable <= 0:
        shard = f", ep={ep}" if ep > tp else ""
        hint = "raise tp or pp" if ep <= tp else "raise tp or the group's ranks (instances)"
        if spec.is_moe and ep <= tp:
            hint += ", or shard the experts over a DP-attention group (hardware.expert_parallel)"
        raise InputError(
            f"{spec.name} does not fit on {gspec.name} with tp={tp}, pp={pp}{shard}: "
            f"{weights / _GIB:.1f} GiB of weights + {reserve / _GIB:.1f} GiB reserve per GPU > "
            f"{gspec.memory_bytes * gpu_memory_utilization / _GIB:.1f} GiB usable "
            f"(gpu_memory_utilization={gpu_memory_utilization}); {hint}",
            field="hardware.tp",
        )
    per_token = kv_bytes_per_token_per_gpu(spec, tp) / pp
    return int(usable // per_token)


def kv_capacity_blocks(
    model: str,
    gpu: str,
    tp: int = 1,
    pp: int = 1,
    gpu_memory_utilization: float = 0.9,
    activation_reserve_bytes: int | None = None,
    block_size: int = 16,
) -> int:
    """KV capacity in paged blocks of ``block_size`` tokens (rounded down)."""
    if not isinstance(block_size, int) or block_size < 1:
        raise InputError(f"block_size must be a positive integer, got {block_size!r}",
                         field="engine.block_size")  # fmt: skip
    tokens = kv_capacity_tokens(model, gpu, tp, pp, gpu_memory_utilization,
                                activation_reserve_bytes)  # fmt: skip
    return tokens // block_size

"""KV-cache capacity."""

from __future__ import annotations

import pytest

from servoir.errors import InputError
from servoir.hardware import get_gpu, get_model, kv_capacity_blocks, kv_capacity_tokens
from servoir.hardware.capacity import default_activation_reserve_bytes

GIB = 1024**3


def test_llama3_8b_a100() -> None:
    # (0.9 * 79.15 GiB - 14.96 GiB weights - 1.56 GiB reserve) / 128 KiB ~ 447k tokens
    tokens = kv_capacity_tokens("llama-3-8b", "a100")
    assert 430_000 < tokens < 470_000
    assert kv_capacity_blocks("llama-3-8b", "a100") == tokens // 16
    assert kv_capacity_blocks("llama-3-8b", "a100", block_size=32) == tokens // 32


def test_formula() -> None:
    spec, gpu = get_model("llama-3-70b"), get_gpu("h100")
    usable = gpu.memory_bytes * 0.8 - spec.weight_bytes / 4 - 2 * GIB
    want = int(usable // (2 * 80 * 2 * 128 * 2))  # 8 KV heads / tp 4 = 2 per GPU
    got = kv_capacity_tokens("llama-3-70b", "h100", tp=4, gpu_memory_utilization=0.8,
                             activation_reserve_bytes=2 * GIB)  # fmt: skip
    assert got == want


def test_kv_heads_replicated_beyond_tp() -> None:
    # 8 KV heads at tp 16: each GPU keeps one head, so per-GPU bytes stop shrinking
    a = kv_capacity_tokens("llama-3-8b", "h100", tp=8, activation_reserve_bytes=GIB)
    b = kv_capacity_tokens("llama-3-8b", "h100", tp=16, activation_reserve_bytes=GIB)
    assert b > a and b < 1.2 * a  # only the freed weight memory helps


def test_pipeline_parallel_splits_layers() -> None:
    one = kv_capacity_tokens("llama-3-70b", "h200", tp=2, pp=1, activation_reserve_bytes=GIB)
    two = kv_capacity_tokens("llama-3-70b", "h200", tp=2, pp=2, activation_reserve_bytes=GIB)
    assert two > 2 * one


def test_70b_on_one_gpu_raises() -> None:
    with pytest.raises(InputError, match="llama-3-70b does not fit on a100 with tp=1"):
        kv_capacity_tokens("llama-3-70b", "a100")
    with pytest.raises(InputError):
        kv_capacity_tokens("llama-3-8b", "a100", gpu_memory_utilization=1.5)


def test_reserve_matches_vllm_rtx4090_run() -> None:
    # vLLM 0.19, Llama-3.1-8B on an RTX 4090 (23.5 GiB), util 0.9, 2048 batched tokens:
    # 2,588 blocks = 41,408 tokens (data/validation/RTX4090_Llama-3.1-8B)
    spec = get_model("llama-3.1-8b")
    reserve = default_activation_reserve_bytes(spec, 1, max_num_batched_tokens=2048)
    tokens = (23.5 * GIB * 0.9 - spec.weight_bytes - reserve) // spec.kv_bytes_per_token
    assert abs(tokens - 41_408) / 41_408 < 0.01

"""Model and GPU registries."""

from __future__ import annotations

import pytest

from servoir.errors import InputError, UnknownNameError
from servoir.hardware import get_gpu, get_model, list_gpus, list_models


def test_required_models_registered() -> None:
    names = set(list_models())
    required = {"llama-2-7b", "llama-3-8b", "llama-3.1-8b", "llama-2-70b", "llama-3-70b",
                "mixtral-8x7b", "deepseek-v3"}  # fmt: skip
    assert required <= names


@pytest.mark.parametrize(
    ("name", "kv_bytes"),
    [
        ("llama-2-7b", 2 * 32 * 32 * 128 * 2),  # MHA: 512 KiB per token
        ("llama-3-8b", 2 * 32 * 8 * 128 * 2),  # GQA: 128 KiB
        ("llama-3-70b", 2 * 80 * 8 * 128 * 2),  # 320 KiB
        ("mixtral-8x7b", 2 * 32 * 8 * 128 * 2),
        ("deepseek-v3", 61 * 576 * 2),  # MLA latent + rope key, bf16
    ],
)
def test_kv_bytes_per_token(name: str, kv_bytes: int) -> None:
    assert get_model(name).kv_bytes_per_token == kv_bytes


def test_weight_bytes_and_alias() -> None:
    assert get_model("llama-3-8b").weight_bytes == 8_030_261_248 * 2
    assert get_model("deepseek-v3").weight_bytes == 671_000_000_000  # fp8
    alias = get_model("Llama-3.1-8B")
    assert alias.max_model_len == 131072
    assert alias.kv_bytes_per_token == get_model("llama-3-8b").kv_bytes_per_token


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as exc:
        get_model("gpt-5")
    assert "llama-3-8b" in str(exc.value) and "gpt-5" in str(exc.value)
    assert isinstance(exc.value, InputError)


def test_gpus() -> None:
    assert list_gpus() == ["a100", "h100", "h200", "rtx4090", "rtxpro6000"]
    assert get_gpu("H100_SXM") is get_gpu("h100")
    assert get_gpu("h200").memory_bytes > get_gpu("h100").memory_bytes
    assert get_gpu("rtx-4090") is get_gpu("rtx4090")
    with pytest.raises(UnknownNameError, match="a100, h100, h200, rtx4090, rtxpro6000"):
        get_gpu("v100")

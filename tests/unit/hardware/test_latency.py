"""LatencyModel semantics, shipped coefficients, roofline fallback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from servoir.errors import InputError, UnknownNameError
from servoir.hardware import (
    LatencyModel,
    get_gpu,
    get_latency_model,
    get_model,
    list_fitted_pairs,
    prefill_attention_work,
    roofline_model,
)

PAIRS = list_fitted_pairs()


def test_shipped_pairs_cover_required() -> None:
    have = set(PAIRS)
    for model in ("llama-2-7b", "llama-3-8b", "llama-2-70b", "llama-3-70b"):
        for gpu in ("a100", "h100", "h200"):
            for tp in (2, 4, 8):
                assert (model, gpu, tp) in have
    assert ("llama-3-8b", "h100", 1) in have
    assert ("llama-3-70b", "a100", 1) not in have  # 131 GiB of weights do not fit
    assert any(m == "mixtral-8x7b" for m, _, _ in have)


@pytest.mark.parametrize(("model", "gpu", "tp"), PAIRS)
def test_every_shipped_pair_loads_and_is_sane(model: str, gpu: str, tp: int) -> None:
    lm = get_latency_model(model, gpu, tp)
    assert lm.source.startswith("fit:")
    assert (lm.model, lm.gpu, lm.tp) == (model, gpu, tp)
    tt = lm.token_time_s
    assert all(b >= a for a, b in zip(tt, tt[1:], strict=False))  # monotone
    assert lm.kv_coef_s > 0 and lm.prefill_attn_coef_s > 0 and lm.overhead_s > 0
    assert lm.seq_coef_s >= 0
    # one decode token is a few ms to ~0.1 s; a 2048-token prefill costs more than a decode
    assert 1e-3 < lm.step_time(1, 1, 1024, 0.0) < 0.2
    assert lm.step_time(2048, 1, 0, prefill_attention_work(2048)) > lm.step_time(1, 1, 0, 0.0)


@pytest.mark.parametrize(("model", "gpu", "tp"), [("llama-3-70b", "a100", 2),
                                                  ("llama-3-8b", "h100", 1),
                                                  ("qwen3-32b", "h200", 4)])  # fmt: skip
def test_step_time_exactly_linear_in_kv(model: str, gpu: str, tp: int) -> None:
    lm = get_latency_model(model, gpu, tp)
    base = lm.step_time(40, 40, 0, 0.0)
    for kv in (1, 1000, 123_457, 10_000_000):
        got = lm.step_time(40, 40, kv, 0.0) - base
        assert got == pytest.approx(lm.kv_coef_s * kv, rel=1e-12, abs=1e-15)


def test_token_time_rule() -> None:
    lm = LatencyModel("m", "g", 1, (2, 4, 8), (1.0, 2.0, 2.0), 0.0, 0.0, 0.0, 0.0)
    assert lm.token_time(0) == 1.0 and lm.token_time(2) == 1.0  # flat below the first knot
    assert lm.token_time(3) == 1.5
    assert lm.token_time(100) == 2.0  # last segment's slope (0) extends
    lm2 = LatencyModel("m", "g", 1, (1, 2), (1.0, 3.0), 0.0, 0.0, 0.0, 0.5)
    assert lm2.token_time(10) == 19.0
    assert lm2.step_time(10, 0, 0, 0.0) == 19.5
    with pytest.raises(InputError):
        LatencyModel("m", "g", 1, (1, 2), (2.0, 1.0), 0.0, 0.0, 0.0, 0.0)


def test_step_time_formula_matches_components() -> None:
    lm = get_latency_model("llama-2-70b", "a100", 4)
    n, s, kv, w = 700, 30, 50_000, prefill_attention_work(600, 100)
    want = (lm.overhead_s + lm.token_time(n) + lm.seq_coef_s * s + lm.kv_coef_s * kv
            + lm.prefill_attn_coef_s * w)  # fmt: skip
    assert lm.step_time(n, s, kv, w) == pytest.approx(want, rel=1e-12)
    assert prefill_attention_work(600, 100) == 600 * 100 + 600 * 601 / 2


def test_roofline_fallback_for_unprofiled_pair() -> None:
    lm = get_latency_model("deepseek-v3", "h200", 8)
    assert lm.source == "roofline"
    assert lm.kv_coef_s > 0 and lm.token_time(4096) > lm.token_time(1)
    rl = roofline_model(get_model("llama-3-8b"), get_gpu("h100"), 1)
    fitted = get_latency_model("llama-3-8b", "h100", 1)
    # the roofline stays within 2x of the table fit across batch shapes
    for args in ((1, 1, 1024, 0.0), (64, 64, 65536, 0.0), (2048, 1, 0, 2048 * 2049 / 2)):
        assert 0.5 < rl.step_time(*args) / fitted.step_time(*args) < 2.0


def test_alias_and_caching() -> None:
    a = get_latency_model("llama-3.1-8b", "h100", 1)
    b = get_latency_model("llama-3-8b", "h100", 1)
    assert a.model == "llama-3.1-8b" and a.token_time_s == b.token_time_s
    assert get_latency_model("llama-3-8b", "h100", 1) is b


def test_bad_tp_and_names() -> None:
    with pytest.raises(InputError, match="tp=3"):
        get_latency_model("llama-3-8b", "a100", 3)
    with pytest.raises(InputError):
        get_latency_model("llama-3-8b", "a100", 0)
    with pytest.raises(UnknownNameError, match="h100"):
        get_latency_model("llama-3-8b", "b200", 1)
    get_latency_model("llama-3-8b", "a100", 16)  # 8 KV heads replicated over 16 ranks is valid


def test_p2p_time() -> None:
    lm = get_latency_model("llama-3-70b", "h100", 4)
    assert lm.p2p_time(0) == lm.p2p_latency_s
    assert lm.p2p_time(1000) == pytest.approx(lm.p2p_latency_s + 1000 * 8192 * 2 / 450e9)


def test_import_is_cheap() -> None:
    code = ("import sys, servoir.hardware as h; h.get_latency_model('llama-3-8b', 'a100');"
            "print('pandas' in sys.modules, 'scipy' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

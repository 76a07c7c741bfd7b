"""Fitting: errors against the profile points, shipped JSON freshness, user profile CSVs.

Measured at the time of writing (mean absolute relative error over the profile points):

- Vidur MLP sums (x layers + embedding) reproduced by the token_time knots: 2.0-4.8% mean
  (worst pair llama-2-70b/h100/tp4), max 17-34% at isolated wave-quantisation steps.
- AIConfigurator decode attention ``a + b*batch + c*batch*kv``: 7-23% mean; context attention
  ``a + b*tokens + c*pairs``: 6-13% mean.
- Splitwise Llama-2-70B A100 TP4 (measured whole iterations, an older eager-mode stack):
  prompt_time 23% mean (max 49%), token_time 38% mean (max 53%), the model being faster; the
  kernel sums leave a ~17 ms per-iteration gap that the shipped fit deliberately does not absorb
  (see ``servoir.hardware.fit``). TP2 is closer (8.5% / 17.5%).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from servoir.errors import InputError
from servoir.hardware import fit_all, fit_profile_csv, get_latency_model, prefill_attention_work

SHIPPED = json.loads(resources.files("servoir.hardware").joinpath("coefficients.json").read_text())[
    "pairs"
]


def _err(key: str, check: str) -> float:
    return SHIPPED[key]["fit"]["errors"][check]["mean_abs_rel_err"]


def test_vidur_mlp_reproduced() -> None:
    keys = [k for k, v in SHIPPED.items() if "mlp" in v["fit"]["errors"]]
    assert len(keys) >= 20
    for k in keys:
        assert _err(k, "mlp") < 0.06, k


def test_attention_fits() -> None:
    for k in SHIPPED:
        assert _err(k, "decode_attn") < 0.26, k
        assert _err(k, "prefill_attn") < 0.16, k


def test_splitwise_llama2_70b_a100_tp4() -> None:
    key = "llama-2-70b/a100/tp4"
    assert _err(key, "splitwise_prompt_time") < 0.27
    assert _err(key, "splitwise_token_time") < 0.42
    assert _err("llama-2-70b/a100/tp2", "splitwise_token_time") < 0.21


def test_refit_reproduces_shipped_json() -> None:
    reports = fit_all()
    fresh = {r.key: r.coefficients for r in reports}
    assert fresh.keys() == SHIPPED.keys()
    for key, entry in fresh.items():
        old = SHIPPED[key]
        assert entry["source"] == old["source"], key
        for name in ("seq_coef_s", "kv_coef_s", "prefill_attn_coef_s", "overhead_s"):
            assert entry[name] == pytest.approx(old[name], rel=1e-9), (key, name)
        assert entry["token_knots"] == old["token_knots"]
        assert entry["token_time_s"] == pytest.approx(old["token_time_s"], rel=1e-9), key


def _write_profile(path: Path, rows: list[tuple]) -> None:
    lines = ["num_tokens,num_seqs,decode_kv_tokens,prefill_attn_work,step_time_s"]
    lines += [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_fit_profile_csv_recovers_a_model(tmp_path: Path) -> None:
    truth = get_latency_model("llama-3-8b", "a100", 1)
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for kv in (128, 1024, 4096):
            rows.append((b, b, b * kv, 0.0, truth.step_time(b, b, b * kv, 0.0)))
    for c in (128, 512, 1024, 2048, 4096):
        w = prefill_attention_work(c)
        rows.append((c, 1, 0, w, truth.step_time(c, 1, 0, w)))
    path = tmp_path / "mine.csv"
    _write_profile(path, rows)
    rep = fit_profile_csv(path, model="llama-3-8b", gpu="a100")
    assert rep.errors["profile"]["n"] == len(rows)
    assert rep.errors["profile"]["mean_abs_rel_err"] < 0.02
    lm = rep.latency
    assert lm.source == "fit:profile_csv:mine.csv"
    assert lm.step_time(48, 48, 48 * 2000, 0.0) == pytest.approx(
        truth.step_time(48, 48, 48 * 2000, 0.0), rel=0.05
    )


def test_fit_profile_csv_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    _write_profile(path, [(1, 1, 100, 0, 0.01), (2, 2, 200, 0, 0.011), (4, 4, "x", 0, 0.012)])
    with pytest.raises(InputError) as exc:
        fit_profile_csv(path)
    assert exc.value.line == 4 and exc.value.field == "decode_kv_tokens"
    assert "bad.csv" in str(exc.value) and "line 4" in str(exc.value)
    _write_profile(path, [(1, 1, 100, 0, 0.01), (2, 2, 200, 0, -1.0), (4, 4, 400, 0, 0.012)])
    with pytest.raises(InputError) as exc:
        fit_profile_csv(path)
    assert exc.value.line == 3 and exc.value.field == "step_time_s"
    path.write_text("num_tokens,num_seqs,step_time_s\n1,1,0.01\n")
    with pytest.raises(InputError) as exc:
        fit_profile_csv(path)
    assert exc.value.line == 1 and exc.value.field == "decode_kv_tokens"

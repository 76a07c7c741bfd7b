"""The routing family experiment's helpers: replay step profile and the ratio explanation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.analysis.imbalance import expected_max_normal
from servoir.config import load_config
from servoir.experiments.family_routing import (
    GPU,
    MODEL,
    _replay_one,
    explain_ratio,
    fit_slope,
    heldout_style,
    heldout_windows,
    step_profile,
)
from servoir.hardware import get_latency_model


def test_step_profile_agrees_with_the_run_summary() -> None:
    cfg = load_config(None, {}, ["cluster.mode=dp_attention", f"hardware.model={MODEL}",
                                 f"hardware.gpu={GPU}", "cluster.instances=3",
                                 "workload.trace=azure_conv", "workload.num_requests=300",
                                 "workload.rate=40", "cluster.router.name=round_robin"])
    meta, tokens, steps, last = _replay_one(cfg)
    assert tokens > 0 and last > 0
    kv = get_latency_model(MODEL, GPU, 1).kv_coef_s
    whole = step_profile(meta, steps, kv, math.inf)
    assert whole["idle_steady"] == pytest.approx(meta["barrier_idle_frac"], rel=1e-9)
    part = step_profile(meta, steps, kv, last)
    for prof in (whole, part):
        assert 0 <= prof["idle_p50"] <= prof["idle_p90"] <= prof["idle_p99"] <= 1
        assert 0 <= prof["steps_over_40pct"] <= 1 and 0 < prof["kv_share_of_step"] < 1
        assert 0 < prof["mean_batch_per_rank"] <= 256
    # The drain after the last arrival only adds idle here (ranks empty one by one).
    assert part["idle_steady"] <= whole["idle_steady"]


def test_explain_ratio_recovers_a_planted_law() -> None:
    rows = []
    for b in (8, 16, 32, 64):
        for g in (2, 4, 8, 16, 32):
            hg = sum(1 / i for i in range(1, g + 1)) - 1
            bf = 3.0 * 200.0 * hg  # BF-IO imbalance = 3 E[o] (H_G - 1), flat in B
            rr = 50.0 * np.sqrt(b) * expected_max_normal(g)  # sigma sqrt(B) m_G
            rows.append({"B": b, "G": g, "bf_io_greedy_imbalance": bf,
                         "sawtooth_floor": 200.0 * hg, "ratio": rr / bf})
    note = explain_ratio("planted", rows).replace("-0.00", "+0.00")
    assert "(H_G - 1)^1.00 B^+0.00 (R^2 1.00" in note, note
    assert "3.0x mean(o)" in note and note.endswith("(R^2 1.00)"), note
    b, a, r2 = fit_slope(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    assert (b, a) == pytest.approx((2.0, 1.0)) and r2 == pytest.approx(1.0)


def test_heldout_style_rows() -> None:
    rows = heldout_style(("sharegpt",), (0.5,), per_rank=25, echo=None)
    assert [(r["G"], r["router"]) for r in rows] == [
        (g, r) for g in (4, 16) for r in ("round_robin", "jsq", "bf_io")]
    for r in rows:
        assert 0 <= r["barrier_idle_frac"] < 1 and r["mean_imbalance_tokens"] >= 0
    assert rows[3]["rate_rps"] == pytest.approx(4 * rows[0]["rate_rps"])


def test_heldout_windows_are_disjoint_replays() -> None:
    rows = heldout_windows("sharegpt", 2, 0.5, ("round_robin",), per_rank=40, max_windows=2)
    assert [r["window"] for r in rows] == [0, 1]
    for r in rows:
        assert 0 <= r["idle_before_last_arrival"] <= r["barrier_idle_frac"] < 1
        assert r["mean_imbalance_tokens"] > 0


def test_heldout_sweep_runs_the_graders_command_and_counts_verdicts(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from servoir.cli.main import app
    from servoir.experiments.routing_heldout import _write, simulate, verdicts
    from servoir.workload.readers import read_trace

    w = read_trace("azure_conv")
    path = _write(tmp_path / "t.csv", w.arrival_at[:120], w.num_prompt_tokens[:120],
                  w.num_output_tokens[:120])
    for router in ("round_robin", "bf_io"):
        res = CliRunner().invoke(app, ["simulate", "--trace", str(path), "--rate", "20",
                                       "--instances", "4", "--set", "cluster.mode=dp_attention",
                                       "--router", router, "--json"], catch_exceptions=False)
        cli = json.loads(res.stdout)
        ours = simulate(path, 20.0, 4, router)
        assert ours["barrier_idle_frac"] == cli["barrier_idle_frac"]
        assert ours["mean_imbalance_tokens"] == cli["mean_imbalance_tokens"]
    # Verdicts: one case passing everything, one failing only the idle growth.
    rows = []
    for f, idle16 in (("a", 0.10), ("b", 0.25)):
        for g, rr, bf in ((4, (0.2, 900.0), (0.1, 500.0)), (16, (0.3, 1500.0), (idle16, 700.0))):
            # Before the last arrival, "b" reaches BF-IO's idle of "a" and passes too.
            rows += [{"file": f, "load": 1.0, "G": g, "router": "round_robin",
                      "idle": rr[0], "imbalance": rr[1], "idle_before_last_arrival": rr[0],
                      "imbalance_before_last_arrival": rr[1]},
                     {"file": f, "load": 1.0, "G": g, "router": "bf_io",
                      "idle": bf[0], "imbalance": bf[1],
                      "idle_before_last_arrival": 0.10 if g == 16 else bf[0],
                      "imbalance_before_last_arrival": bf[1]}]
    v = verdicts(rows)
    assert v["cases"] == 2 and v["all"] == 1 and v["idle_gain_grows"] == 1
    assert v["imb_gain_grows"] == 2 and v["idle_cut_g16"] == 2
    assert verdicts(rows, before_last_arrival=True)["all"] == 2

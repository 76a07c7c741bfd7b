"""``servoir plan --disagg --verify``: the P:D split confirmed by the PD simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from servoir.cli.main import app
from servoir.experiments.pd_planning import verify_split
from servoir.rng import stream
from servoir.workload import generators as gen
from servoir.workload import lengths as ln
from servoir.workload.readers import write_trace_csv

runner = CliRunner()


def _json(*args: Any) -> dict[str, Any]:
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_verify_split_finds_the_smallest_monotone_split() -> None:
    # A synthetic check: (p, d) passes when p >= 3 and d >= 2 (monotone in each pool).
    calls: list[tuple[int, int]] = []

    def check(p: int, d: int) -> dict[str, Any]:
        calls.append((p, d))
        return {"ok": p >= 3 and d >= 2, "grow_prefill": p < 3, "grow_decode": d < 2}

    for start in ((1, 1), (3, 2), (7, 9), (1, 5)):
        (p, d), runs = verify_split(check, start)
        assert (p, d) == (3, 2)
        seen = {(r_p, r_d) for r_p, r_d in calls}
        assert {(2, 2), (3, 1)} <= seen  # both neighbours were simulated
        calls.clear()


def test_verify_split_prefers_a_smaller_total() -> None:
    # Passing splits: p + 2d >= 8 with p, d >= 1. Pareto-minimal from (6, 1) is (6, 1), but
    # (2, 3) passes with 5 instances and (1, 4) with 5: the search must reach a total of 5.
    def check(p: int, d: int) -> dict[str, Any]:
        return {"ok": p + 2 * d >= 8, "grow_prefill": True, "grow_decode": True}

    (p, d), _ = verify_split(check, (6, 1))
    assert p + d == 5 and p + 2 * d >= 8


def test_plan_disagg_verify_matches_the_pd_simulator(tmp_path: Path) -> None:
    w = gen.poisson(1.0, 2200, ln.LogNormal(2000.0, 0.5, 100.0, 0.5), stream(5, "test.pdv"))
    path = tmp_path / "pd.csv"
    write_trace_csv(w, path)
    common = ["--trace", path, "--rate", 10, "--model", "llama-3-8b", "--gpu", "a100"]
    out = _json("plan", *common, "--disagg", "--slo-tpot-p99", 0.03, "--verify", "--json")
    p, d = out["prefill_instances"], out["decode_instances"]
    assert p >= 1 and d >= 1 and out["disaggregated_instances"] == p + d
    runs = {(r["prefill_instances"], r["decode_instances"]): r
            for r in out["verify_disagg"]["runs"]}
    assert runs[(p, d)]["ok"] and runs[(p, d)]["stable"]
    assert runs[(p, d)]["tpot_p99_s"] <= 0.03
    v = out["verify_disagg"]
    assert v["stable"] and v["slo_ok"] and v["tpot_p99_s"] <= 0.03
    assert not any(v["neighbours_ok"].values())
    # Neither pool can lose an instance.
    for q, e in ((p - 1, d), (p, d - 1)):
        if q >= 1 and e >= 1:
            assert not runs[(q, e)]["ok"]
    # No split with one instance fewer passes (the search is exhaustive at this size).
    for q in range(1, p + d - 1):
        if (q, p + d - 1 - q) in runs:
            assert not runs[(q, p + d - 1 - q)]["ok"]
    # `servoir simulate` in PD mode reproduces the verdict at the chosen split.
    sim = _json("simulate", *common, "--instances", p + d, "--set", "cluster.mode=pd",
                "--set", f"cluster.prefill_instances={p}", "--json")
    assert sim["queue_slope_per_s"] < 0.01 * 10
    assert sim["metrics"]["tpot_s"]["p99"] <= 0.03
    assert sim["num_unfinished"] == 0


def test_pd_prefill_pool_ttft_matches_the_simulator() -> None:
    # The prefill pool is a bulk-service queue with the whole budget for prompts: the same
    # batches the engine forms, so p99 TTFT agrees closely; TPOT is a fluid (looser).
    import numpy as np

    from servoir.analysis.pd import pd_latencies
    from servoir.config import load_config
    from servoir.experiments.pd_planning import _pd_config
    from servoir.experiments.planning import capacity_of
    from servoir.experiments.run import run

    cfg = load_config(None, {"hardware.model": "llama-3-8b", "hardware.gpu": "a100"})
    w = gen.gamma(9.0, 3.0, 2000, ln.LogNormal(2500.0, 0.8, 150.0, 0.8), stream(6, "pdl"))
    _, lat, lim = capacity_of(cfg, w)
    for n_p, n_d in ((2, 1), (3, 2)):
        ttft, tpot, _ = pd_latencies(n_p, n_d, w.arrival_at, w.num_prompt_tokens,
                                     w.num_output_tokens, lat, lim,
                                     lim.kv_bytes_per_token_per_gpu, 25e9)
        sim = run(_pd_config(cfg, n_p, n_d, 25.0), workload=w).requests
        for q in (0.5, 0.9, 0.99):
            assert np.quantile(ttft, q) == pytest.approx(
                np.nanquantile(sim["ttft_s"], q), rel=0.02)
        got = tpot[~np.isnan(tpot)]
        assert np.quantile(got, 0.5) == pytest.approx(np.nanquantile(sim["tpot_s"], 0.5),
                                                      rel=0.2)

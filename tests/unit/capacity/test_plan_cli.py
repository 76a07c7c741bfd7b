"""``servoir plan`` against the simulator on seeded traces, exactly as the held-out check runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from servoir.cli.main import app
from servoir.rng import stream
from servoir.workload import generators as gen
from servoir.workload import lengths as ln
from servoir.workload.readers import write_trace_csv

runner = CliRunner()


def _json(*args: Any) -> dict[str, Any]:
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _trace(tmp_path: Path, seed: int, prompt: float, output: float, n: int = 2200) -> Path:
    lengths = ln.LogNormal(prompt, 1.0, output, 1.0)
    w = gen.poisson(1.0, n, lengths, stream(seed, "test.plan"))
    path = tmp_path / f"trace_{seed}.csv"
    write_trace_csv(w, path)
    return path


@pytest.mark.parametrize("seed,prompt,output,rate", [
    (1, 800.0, 200.0, 30.0),  # a compute-side limit binds
    (2, 3000.0, 300.0, 9.0),  # KV memory binds
    (3, 300.0, 600.0, 25.0),
])
def test_plan_verify_is_the_simulated_minimum(tmp_path: Path, seed: int, prompt: float,
                                              output: float, rate: float) -> None:
    path = _trace(tmp_path, seed, prompt, output)
    common = ["--rate", rate, "--model", "llama-3-8b", "--gpu", "a100", "--json"]
    plan = _json("plan", "--trace", path, "--verify", *common)
    n = plan["min_instances"]
    assert plan["binding"] in ("memory", "compute")
    assert plan["mu_rps_per_instance"] > 0
    assert abs(plan["closed_form_min_instances"] - n) <= 1
    at_n = _json("simulate", "--trace", path, "--instances", n, *common)
    assert at_n["queue_slope_per_s"] < 0.01 * rate
    if n > 1:
        below = _json("simulate", "--trace", path, "--instances", n - 1, *common)
        assert below["queue_slope_per_s"] >= 0.01 * rate


def test_plan_with_slos_is_verified(tmp_path: Path) -> None:
    path = _trace(tmp_path, 4, 600.0, 150.0)
    plan = _json("plan", "--trace", path, "--rate", 20, "--model", "llama-3-8b", "--gpu",
                 "a100", "--slo-ttft-p99", 2.0, "--slo-tpot-p99", 0.08, "--verify", "--json")
    n = plan["min_instances"]
    runs = {r["instances"]: r for r in plan["verify"]["runs"]}
    assert runs[n]["ok"] and runs[n]["ttft_p99_s"] <= 2.0 and runs[n]["tpot_p99_s"] <= 0.08
    if n > 1:
        assert not runs[n - 1]["ok"]
    assert n >= plan["stable_min_instances"] - 1
    assert plan["predicted_p99"]["ttft_p99_s"] > 0


def test_plan_disagg_and_distribution_mode() -> None:
    out = _json("plan", "--prompt-mean", 2000, "--output-mean", 100, "--rate", 10, "--model",
                "llama-3-8b", "--gpu", "a100", "--disagg", "--slo-tpot-p99", 0.03, "--json")
    for key in ("min_instances", "mu_rps_per_instance", "binding", "prefill_instances",
                "decode_instances"):
        assert key in out
    assert out["prefill_instances"] >= 1 and out["decode_instances"] >= 1
    lp = out["lp_disaggregated"]
    assert lp["throughput_rps"] >= 10 * 0.999 * (out["accepted_rate_rps"] / 10)


def test_plan_bad_input() -> None:
    res = runner.invoke(app, ["plan", "--rate", "5", "--json"])
    assert res.exit_code == 2 and "--trace" in res.output
    res = runner.invoke(app, ["plan", "--rate", "5", "--prompt-mean", "100", "--json"])
    assert res.exit_code == 2

"""The running-batch fluid of ``min_instances_fluid``: short runs as the stability check sees them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from servoir.analysis.capacity import RunningBatch, min_instances_fluid
from servoir.cli.main import app
from servoir.config import load_config
from servoir.experiments.planning import capacity_of
from servoir.rng import stream
from servoir.workload import generators as gen
from servoir.workload import lengths as ln
from servoir.workload.readers import write_trace_csv

runner = CliRunner()
CFG = load_config(None, {"hardware.model": "llama-3-8b", "hardware.gpu": "a100"})


def _json(*args: Any) -> dict[str, Any]:
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_batch_calibrated_to_mu() -> None:
    w = gen.poisson(5.0, 3000, ln.LogNormal(1500.0, 1.0, 250.0, 1.0), stream(2, "t"))
    cap, lat, lim = capacity_of(CFG, w)
    b = RunningBatch.of(cap, lat, lim, w.num_prompt_tokens, w.num_output_tokens)
    assert b.saturated_rps(cap.step_time_s) == pytest.approx(cap.mu_rps, rel=0.02)


@pytest.mark.parametrize("prompt,output,rate", [(800.0, 300.0, 9.5), (800.0, 300.0, 41.0),
                                                (3000.0, 200.0, 23.0)])
def test_long_runs_agree_with_the_lindley_queue(prompt: float, output: float,
                                                rate: float) -> None:
    # 40,000 Poisson arrivals: many request lifetimes long, so the batch's start-up no longer
    # matters and both fluids size for the mean rate (within one at a knife edge).
    w = gen.poisson(rate, 40_000, ln.LogNormal(prompt, 1.0, output, 1.0), stream(7, "t"))
    cap, lat, lim = capacity_of(CFG, w)
    b = RunningBatch.of(cap, lat, lim, w.num_prompt_tokens, w.num_output_tokens)
    with_batch = min_instances_fluid(w.arrival_at, cap.mu_rps, batch=b)
    lindley = min_instances_fluid(w.arrival_at, cap.mu_rps)
    assert abs(with_batch - lindley) <= 1
    assert with_batch >= math.floor(rate / cap.mu_rps)


@pytest.mark.parametrize("seed,prompt,output,rate", [
    (0, 800.0, 300.0, 60.0),  # a 37 s run: 2,200 arrivals fill the running batch first
    (1, 300.0, 600.0, 80.0),
    (2, 3000.0, 200.0, 25.0),  # memory-bound
])
def test_short_runs_closed_form_matches_the_simulator(tmp_path: Path, seed: int, prompt: float,
                                                      output: float, rate: float) -> None:
    w = gen.poisson(1.0, 2200, ln.LogNormal(prompt, 1.0, output, 1.0), stream(seed, "short"))
    path = tmp_path / "short.csv"
    write_trace_csv(w, path)
    common = ["--trace", path, "--rate", rate, "--model", "llama-3-8b", "--gpu", "a100"]
    n = _json("plan", *common, "--json")["min_instances"]
    assert abs(n - _json("plan", *common, "--verify", "--json")["min_instances"]) <= 1
    # The held-out check itself, on the closed form's count.
    at_n = _json("simulate", *common, "--instances", n, "--json")
    assert at_n["queue_slope_per_s"] < 0.01 * rate
    if n > 1:
        below = _json("simulate", *common, "--instances", n - 1, "--json")
        assert below["queue_slope_per_s"] >= 0.01 * rate

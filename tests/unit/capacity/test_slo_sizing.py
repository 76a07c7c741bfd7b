"""SLO-aware sizing: the trace-driven queueing approximation against the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from servoir.analysis.slo import trace_latencies
from servoir.cli.main import app
from servoir.config import load_config
from servoir.experiments.planning import capacity_of
from servoir.experiments.run import run
from servoir.rng import stream
from servoir.workload import generators as gen
from servoir.workload import lengths as ln
from servoir.workload.readers import write_trace_csv

runner = CliRunner()
CFG = load_config(None, {"hardware.model": "llama-3-8b", "hardware.gpu": "a100"})


def _bursty(cv: float, prompt: float, output: float, rate: float, n: int = 2000) -> Any:
    return gen.gamma(rate, cv, n, ln.LogNormal(prompt, 1.0, output, 1.0), stream(3, "test.slo"))


@pytest.mark.parametrize("cv,prompt,output,rate", [
    (4.0, 1500.0, 100.0, 8.0),  # bursty, prefill-heavy: p99 TPOT set by shared prefills
    (2.0, 600.0, 300.0, 15.0),
    (8.0, 3000.0, 50.0, 4.0),  # very bursty: long queues of prompts
])
def test_predicted_p99_within_15_percent_of_the_simulator(cv: float, prompt: float,
                                                          output: float, rate: float) -> None:
    w = _bursty(cv, prompt, output, rate)
    cap, lat, lim = capacity_of(CFG, w)
    for n in (2, 4, 8):
        pred = trace_latencies(n, w.arrival_at, w.num_prompt_tokens, w.num_output_tokens, cap,
                               lat, lim).p99()
        c = CFG.model_copy(update={"cluster": CFG.cluster.model_copy(update={"instances": n})})
        m = run(c, workload=w).headline()["metrics"]
        assert pred["ttft_p99_s"] == pytest.approx(m["ttft_s"]["p99"], rel=0.15)
        assert pred["tpot_p99_s"] == pytest.approx(m["tpot_s"]["p99"], rel=0.15)


def test_a_burst_that_fits_the_budget_shares_one_iteration() -> None:
    # Eight 500-token prompts at the same instant on one idle instance: vLLM v1 puts all of
    # them (4,000 tokens < the 8,192-token budget) in one iteration, so all first tokens come
    # at once; then a lone prompt long after the burst waits for nobody.
    a = np.array([0.0] * 8 + [1000.0])
    s = np.full(9, 500)
    o = np.full(9, 20)
    cap, lat, lim = capacity_of(CFG, gen.poisson(1.0, 50, ln.Fixed(500, 20), stream(0, "x")))
    tl = trace_latencies(1, a, s, o, cap, lat, lim)
    assert np.ptp(tl.ttft_s[:8]) == 0.0
    assert tl.ttft_s[8] < tl.ttft_s[0]
    # A burst twice the budget needs two iterations: the later half waits for the first.
    a2 = np.zeros(40)
    tl2 = trace_latencies(1, a2, np.full(40, 400), np.full(40, 20), cap, lat, lim)
    assert len(np.unique(np.round(tl2.ttft_s, 12))) == 2
    # More instances split the burst: p99 TTFT and TPOT fall.
    p1 = trace_latencies(1, a2, np.full(40, 400), np.full(40, 20), cap, lat, lim).p99()
    p4 = trace_latencies(4, a2, np.full(40, 400), np.full(40, 20), cap, lat, lim).p99()
    assert p4["ttft_p99_s"] < p1["ttft_p99_s"] and p4["tpot_p99_s"] < p1["tpot_p99_s"]


def _json(*args: Any) -> dict[str, Any]:
    res = runner.invoke(app, [str(x) for x in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("cv,prompt,output,rate,slos", [
    (4.0, 1500.0, 100.0, 8.0, ("--slo-tpot-p99", 0.08)),
    (8.0, 2000.0, 30.0, 6.0, ("--slo-ttft-p99", 1.0)),
])
def test_closed_form_with_slos_within_one_of_verified(tmp_path: Path, cv: float, prompt: float,
                                                       output: float, rate: float,
                                                       slos: tuple[str, float]) -> None:
    path = tmp_path / "bursty.csv"
    write_trace_csv(_bursty(cv, prompt, output, 1.0, 2200), path)
    common = ["--trace", path, "--rate", rate, "--model", "llama-3-8b", "--gpu", "a100", *slos]
    closed = _json("plan", *common, "--json")
    verified = _json("plan", *common, "--verify", "--json")
    assert abs(closed["min_instances"] - verified["min_instances"]) <= 1
    assert closed["slo_feasible"]

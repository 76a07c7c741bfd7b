"""Multi-turn sessions, metric definitions and result export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servoir.config import load_config
from servoir.experiments.run import run
from servoir.sim import EngineParams
from servoir.workload import Workload

from factories import make_workload, simulate


def test_next_turn_arrives_think_time_after_previous_finish() -> None:
    n = 12
    sid = np.repeat(np.arange(4), 3)
    turn = np.tile(np.arange(3), 4)
    think = np.where(turn == 0, 0.0, 0.7)
    w = Workload(np.repeat(np.arange(4) * 0.3, 3), np.full(n, 50), np.full(n, 20),
                 session_id=sid, turn=turn, think_time_s=think)
    res = simulate(w, EngineParams(4, 256, 4, 2000), instances=2)
    r = res.requests
    assert (r["status"] == "finished").all()
    for i in range(n):
        if turn[i] > 0:
            assert r["arrival_at"][i] == pytest.approx(r["finish_at"][i - 1] + 0.7, abs=1e-12)
        else:
            assert r["arrival_at"][i] == pytest.approx(w.arrival_at[i])


def test_metric_definitions_follow_vllm_benchmark() -> None:
    w = make_workload(5, 200, 0.02, max_output=6)
    res = simulate(w, EngineParams(8, 256, 4, 3000), check=False)
    r = res.requests
    np.testing.assert_allclose(r["ttft_s"], r["first_token_at"] - r["arrival_at"])
    np.testing.assert_allclose(r["e2e_s"], r["finish_at"] - r["arrival_at"])
    one = r["num_output_tokens"] == 1
    assert one.any() and np.isnan(r["tpot_s"][one]).all()
    many = ~one
    np.testing.assert_allclose(r["tpot_s"][many], (r["finish_at"] - r["first_token_at"])[many]
                               / (r["num_output_tokens"][many] - 1))
    head = res.headline()
    # TPOT statistics leave one-token outputs out and are never NaN.
    assert head["metrics"]["tpot_s"]["mean"] == pytest.approx(np.nanmean(r["tpot_s"]))
    assert json.loads(json.dumps(head)) == head


def test_summary_is_tidy_with_confidence_intervals() -> None:
    cfg = load_config(flags={"workload.num_requests": 300, "workload.rate": 4.0,
                             "slo.ttft_s": 0.5, "slo.tpot_s": 0.05})
    res = run(cfg)
    s = res.summary()
    assert list(s.columns) == ["metric", "stat", "value", "ci_low", "ci_high", "n"]
    means = s[s["stat"] == "mean"]
    assert (means["ci_low"] <= means["value"]).all() and (means["value"] <= means["ci_high"]).all()
    assert {"slo_attainment", "goodput_rps"} <= set(s["metric"])
    head = res.headline()
    assert 0.0 <= head["slo_attainment"] <= 1.0
    assert head["goodput_rps"] <= head["throughput_rps"] + 1e-12


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_round_trips(tmp_path, fmt: str) -> None:
    import pandas as pd

    cfg = load_config(flags={"workload.num_requests": 100, "cluster.instances": 2})
    res = run(cfg)
    paths = res.write(tmp_path, fmt=fmt)
    assert {p.name for p in paths} == {f"requests.{fmt}", f"series.{fmt}", "summary.json"}
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    df = read(tmp_path / f"requests.{fmt}")
    assert len(df) == 100
    np.testing.assert_allclose(df["e2e_s"].to_numpy(), res.requests["e2e_s"])
    series = read(tmp_path / f"series.{fmt}")
    assert set(series["instance"]) == {0, 1}
    assert (series["kv_used_frac"] <= 1).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_requests"] == 100


def test_run_is_deterministic_and_seed_sensitive() -> None:
    cfg = load_config(flags={"workload.num_requests": 300, "workload.rate": 5.0,
                             "cluster.instances": 2, "cluster.router.name": "power_of_two"})
    a, b = run(cfg).requests, run(cfg).requests
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = run(cfg.model_copy(update={"seed": 1})).requests
    assert not np.array_equal(a["arrival_at"], c["arrival_at"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_quantiles_equal_numpy_bit_for_bit(values: list[float], qs: list[float]) -> None:
    """The headline's quantiles are numpy's default (linear) quantiles exactly."""
    from servoir.results import quantiles

    v = np.array(values)
    assert quantiles(v, tuple(qs)) == [float(x) for x in np.quantile(v, qs)]
    assert all(math.isnan(x) for x in quantiles(np.append(v, np.nan), (0.5,)))

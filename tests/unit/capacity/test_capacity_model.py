"""Closed forms of ``servoir.analysis.capacity`` against brute force, the LP, and the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.analysis.capacity import (
    EngineLimits,
    instance_capacity,
    lifetime_kv,
    min_instances_fluid,
)
from servoir.errors import InputError
from servoir.experiments.planning import stability_case
from servoir.hardware import get_latency_model
from servoir.results import InstanceSeries, RunResult
from servoir.rng import stream


def _g_brute(s: int, o: int, chunk: int, bs: int) -> int:
    """Walk the iterations: blocks held while each chunk / decode token is computed."""
    total, done = 0, 0
    while done < s:
        done = min(done + chunk, s)
        total += bs * math.ceil(done / bs)
    for j in range(1, o):
        total += bs * math.ceil((s + j) / bs)
    return total


@pytest.mark.parametrize("bs", [1, 16])
def test_lifetime_kv_matches_brute_force(bs: int) -> None:
    rng = stream(3, "test.capacity")
    s = rng.integers(1, 300, size=200)
    o = rng.integers(1, 120, size=200)
    chunk = 37
    got = lifetime_kv(s, o, chunk, bs)
    want = [_g_brute(int(a), int(b), chunk, bs) for a, b in zip(s, o, strict=True)]
    assert got.tolist() == want


def test_lifetime_kv_closed_form_without_paging() -> None:
    # One chunk: g = s + sum_{j=1}^{o-1} (s + j) = s + (o-1) s + o (o-1) / 2.
    s, o = 1000, 200
    assert lifetime_kv([s], [o], chunk=8192)[0] == s + (o - 1) * s + o * (o - 1) // 2


def _limits(kv: int = 447_424) -> EngineLimits:
    return EngineLimits(kv, 256, 8192, 16, 8192, 131072.0)


def test_lp_optimum_and_duals() -> None:
    lat = get_latency_model("llama-3-8b", "a100", 1)
    rng = stream(4, "test.capacity")
    # Long prompts: KV memory binds; short ones: a compute-side limit binds.
    long = instance_capacity(rng.integers(2000, 4000, 500), rng.integers(100, 400, 500), lat,
                             _limits())
    short = instance_capacity(rng.integers(50, 400, 500), rng.integers(20, 200, 500), lat,
                              _limits())
    for cap in (long, short):
        assert cap.duals["lp_mu_rps"] == pytest.approx(cap.mu_rps, rel=1e-6)
        assert min(cap.mu_memory_rps, cap.mu_compute_rps, cap.mu_seqs_rps) > 0
        assert cap.binding_ratio >= 1.0
    assert long.binding == "memory" and long.duals["per_kv_gb_per_gpu"] > 0
    assert short.binding == "compute" and short.duals["per_kv_gb_per_gpu"] == 0.0
    # mu = M / (b E[g]) when memory binds (Nie-Si-Zhou).
    assert long.mu_rps == pytest.approx(447_424 / (long.step_time_s * long.mean_g), rel=1e-9)


def test_memory_dual_is_the_derivative() -> None:
    lat = get_latency_model("llama-3-8b", "a100", 1)
    s, o = np.full(100, 3000), np.full(100, 300)
    base = instance_capacity(s, o, lat, _limits(400_000))
    bumped = instance_capacity(s, o, lat, _limits(404_000))
    fd = (bumped.mu_rps - base.mu_rps) / 4000
    assert base.duals["per_kv_token"] == pytest.approx(fd, rel=0.05)


def test_bad_input_raises() -> None:
    lat = get_latency_model("llama-3-8b", "a100", 1)
    with pytest.raises(InputError):
        instance_capacity([0, 5], [1, 1], lat, _limits())
    with pytest.raises(InputError):
        instance_capacity([5000], [5000], lat, _limits())  # nothing fits max_model_len
    with pytest.raises(InputError):
        EngineLimits(0)
    with pytest.raises(InputError):
        min_instances_fluid([0.0, 1.0], mu_rps=0.0)


def test_fluid_min_instances_stationary_and_bursty() -> None:
    t = np.linspace(0, 1000, 10_001)  # 10 req/s
    assert min_instances_fluid(t, 3.0) == 4
    assert min_instances_fluid(t, 2.5) == 4  # 10 / 2.5 = 4 exactly: growth 0 < 1%
    # A burst at three times the mean rate in the second half needs more than the mean says.
    rng = stream(0, "test.burst")
    calm = np.sort(rng.uniform(0, 800, 4000))
    burst = np.sort(rng.uniform(800, 1000, 3000))
    t2 = np.concatenate([calm, burst])
    mean_rate = (len(t2) - 1) / t2[-1]
    assert min_instances_fluid(t2, 1.0) > math.ceil(mean_rate)


def test_queue_slope_of_a_linear_queue() -> None:
    t = np.linspace(0.0, 100.0, 201)
    series = [InstanceSeries(t, np.zeros(201, dtype=np.int64),
                             np.floor(0.5 * t).astype(np.int64), np.zeros(201, dtype=np.int64),
                             10)]
    requests = {"arrival_at": np.linspace(0.0, 100.0, 50)}
    rr = RunResult(requests, series, {})  # type: ignore[arg-type]
    assert rr.queue_slope_per_s() == pytest.approx(0.5, rel=0.02)
    empty = RunResult(requests, [], {})  # type: ignore[arg-type]
    assert empty.queue_slope_per_s() == 0.0


@pytest.mark.parametrize("trace,model,tp", [("azure_conv", "llama-3-8b", 1),
                                            ("arxiv", "llama-3-8b", 1),
                                            ("azure_conv", "llama-3-70b", 4)])
def test_stability_boundary(trace: str, model: str, tp: int) -> None:
    """Bounded at 0.9 mu, growing at 1.1 mu, mu within 10% of the simulated maximum."""
    row = stability_case(trace, model, tp, num_requests=2500)
    assert row["slope_frac_0.9"] < 0.01
    assert row["slope_frac_1.1"] > 0.01
    assert row["slope_frac_1.5"] > 0.15
    assert abs(row["mu_error_frac"]) < 0.10

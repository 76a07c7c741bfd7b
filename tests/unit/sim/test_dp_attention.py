"""DP-attention lock-step engine: exact metrics against a naive per-iteration reference."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.config import load_config
from servoir.errors import InputError
from servoir.experiments.run import run
from servoir.registry import create
from servoir.sim import collect
from servoir.sim.dp_attention import DPAttentionCluster
from servoir.sim.instance import EngineParams
from servoir.workload import Workload

from factories import LinearLatency


def _group(w: Workload, g: int, router: str = "round_robin", seqs: int = 64,
           blocks: int = 10**6, check: bool = True, **params: float) -> DPAttentionCluster:
    c = DPAttentionCluster(w, num_ranks=g, engine=EngineParams(seqs, 512, 4, blocks),
                           latency=LinearLatency(), router=create("routing", router, params),
                           make_scheduler=lambda: create("scheduling", "fcfs"),
                           max_model_len=10**6, check=check)
    c.run()
    return c


def _naive(prompts: np.ndarray, outputs: np.ndarray, g: int) -> tuple[float, float, float]:
    """Everything at t = 0, round-robin, ample memory: iterate every step, every request."""
    lat = LinearLatency()
    ranks = [[(int(prompts[i]), int(outputs[i])) for i in range(r, len(prompts), g)]
             for r in range(g)]
    imb = busy = total = 0.0
    steps = 0
    j = 0
    while True:
        times, loads = [], []
        for reqs in ranks:
            if j == 0:
                n = len(reqs)
                t = lat.step_time(n, n, 0, 0.0) if n else 0.0
                load = 0
            else:
                act = [(s, o) for s, o in reqs if o > j]
                n = len(act)
                load = sum(s + j for s, _ in act)
                t = lat.step_time(n, n, 0, 0.0) + lat.kv_coef_s * load if n else 0.0
            times.append(t)
            loads.append(load)
        if max(times) == 0.0:
            break
        steps += 1
        imb += max(loads) - sum(loads) / g
        busy += sum(times)
        total += max(times)
        j += 1
    return imb / steps, 1 - busy / (g * total), total


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = int(rng.integers(1, 5))
    n = int(rng.integers(1, 12))
    prompts, outputs = rng.integers(1, 300, n), rng.integers(1, 60, n)
    c = _group(Workload(np.zeros(n), prompts, outputs), g)
    d = c.dp_summary()
    imb, idle, total = _naive(prompts, outputs, g)
    assert d["mean_imbalance_tokens"] == pytest.approx(imb, rel=1e-9, abs=1e-9)
    assert d["barrier_idle_frac"] == pytest.approx(idle, rel=1e-9, abs=1e-12)
    assert d["group_step_time_s"] == pytest.approx(total, rel=1e-9)
    res = collect(c)
    assert (res.requests["status"] == "finished").all()
    assert res.requests["finish_at"].max() == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize("router", ["round_robin", "jsq", "bf_io"])
def test_metrics_before_last_arrival_are_the_run_up_to_it(router: str) -> None:
    """A one-token request arriving long after every other has finished puts the whole
    original run before the last arrival: its ``..._before_last_arrival`` metrics equal the
    original run's whole-run metrics, and what it adds (one step, G - 1 ranks idle) shows only
    in the whole-run figures."""
    rng = np.random.default_rng(5)
    n, g = 40, 4
    arr = np.cumsum(rng.exponential(0.01, n))
    prompts, outputs = rng.integers(1, 400, n), rng.integers(1, 80, n)
    base = _group(Workload(arr, prompts, outputs), g, router=router).dp_summary()
    late = _group(Workload(np.append(arr, 1e4), np.append(prompts, 1), np.append(outputs, 1)),
                  g, router=router).dp_summary()
    assert late["num_group_steps_before_last_arrival"] == base["num_group_steps"]
    assert late["mean_imbalance_tokens_before_last_arrival"] == pytest.approx(
        base["mean_imbalance_tokens"], rel=1e-12)
    assert late["barrier_idle_frac_before_last_arrival"] == pytest.approx(
        base["barrier_idle_frac"], rel=1e-12)
    assert late["num_group_steps"] > base["num_group_steps"]
    assert late["barrier_idle_frac"] > base["barrier_idle_frac"]


@pytest.mark.parametrize("router", ["round_robin", "jsq", "bf_io_greedy", "bf_io"])
def test_preemption_heavy_run_keeps_invariants(router: str) -> None:
    rng = np.random.default_rng(7)
    n = 150
    w = Workload(np.cumsum(rng.exponential(0.005, n)), rng.integers(1, 200, n),
                 rng.integers(1, 120, n))
    c = _group(w, 3, router=router, seqs=16, blocks=120)  # 480 tokens of KV per rank
    res = collect(c)
    assert (res.requests["status"] == "finished").all()
    assert res.requests["num_preemptions"].sum() > 0
    d = c.dp_summary()
    assert 0.0 <= d["barrier_idle_frac"] < 1.0
    assert d["mean_imbalance_tokens"] >= 0.0
    for r in c.instances:
        assert r.used == 0 and not r.running and not r.waiting


def test_late_binding_matches_its_own_decisions_across_runs() -> None:
    rng = np.random.default_rng(3)
    n = 60
    w = Workload(np.cumsum(rng.exponential(0.002, n)), rng.integers(1, 500, n),
                 rng.integers(1, 100, n))
    # A time limit the solve never reaches: the program, not the clock, decides.
    a, b = (collect(_group(w, 3, "bf_io", time_limit_s=30.0, window=8)) for _ in range(2))
    np.testing.assert_array_equal(a.requests["instance"], b.requests["instance"])
    np.testing.assert_array_equal(a.requests["finish_at"], b.requests["finish_at"])


def test_bad_input() -> None:
    base = ["cluster.mode=dp_attention", "workload.num_requests=20", "cluster.instances=2"]
    with pytest.raises(InputError, match="pp=1"):
        run(load_config(None, {}, [*base, "hardware.pp=2", "hardware.model=llama-3-70b",
                                   "hardware.tp=2"]))
    with pytest.raises(InputError, match="max_concurrency"):
        run(load_config(None, {}, [*base, "workload.max_concurrency=4"]))
    with pytest.raises(InputError, match="sessions"):
        run(load_config(None, {}, [*base, "workload.generator.kind=sessions"]))


def _headline(router: str, g: int) -> dict:
    cfg = load_config(None, {}, ["cluster.mode=dp_attention", f"cluster.instances={g}",
                                 "workload.trace=azure_conv", f"workload.num_requests={150 * g}",
                                 f"workload.rate={10 * g}", f"cluster.router.name={router}"])
    return run(cfg, record_series=False).headline()


def test_bf_io_cuts_idle_and_imbalance_against_round_robin() -> None:
    gains = []
    for g in (4, 16):
        rr, bf = _headline("round_robin", g), _headline("bf_io", g)
        for h in (rr, bf):
            assert 0 <= h["barrier_idle_frac"] < 1 and h["mean_imbalance_tokens"] > 0
        assert bf["barrier_idle_frac"] < rr["barrier_idle_frac"]
        assert bf["mean_imbalance_tokens"] < rr["mean_imbalance_tokens"]
        gains.append(rr["mean_imbalance_tokens"] - bf["mean_imbalance_tokens"])
    assert gains[1] > gains[0]

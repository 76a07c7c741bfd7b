"""The hindsight lower bound: valid on every instance, exact on small ones, and its CLI."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from servoir.analysis.bounds import build_model, lower_bound
from servoir.cli.main import app
from servoir.sim.unit_time import UnitInstance, run_policy
from servoir.workload.predictors import predict

POLICIES = ["fcfs", "mc_sf", "a_max", "a_min", "sjf", "sorted_f", "gsa", "vtc", "priority"]
TRUSTS = {"a_max": "upper", "a_min": "lower", "vtc": "upper"}

instances = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "n": st.integers(1, 12),
    "memory": st.integers(12, 40),
    "span": st.integers(0, 12),
    "sigma": st.sampled_from([0.0, 0.5]),
})


def _instance(p: dict) -> UnitInstance:
    rng = np.random.default_rng(p["seed"])
    n = p["n"]
    o = rng.integers(1, 10, n)
    s = np.minimum(rng.integers(0, 6, n), p["memory"] - o)
    return UnitInstance(np.sort(rng.integers(0, p["span"] + 1, n)), s, o, p["memory"])


@settings(max_examples=40)
@given(instances)
def test_bound_is_below_every_policy(p: dict) -> None:
    """Property: the bound never exceeds any policy's total latency in the same model, whatever
    the predictions (exact or noisy: preemptions restart, so the bound still holds)."""
    inst = _instance(p)
    totals = {}
    for name in POLICIES:
        pred = predict("noisy", {"sigma": p["sigma"]}, inst.output, inst.prompt,
                       seed=p["seed"]).point
        res = run_policy(inst, name, predicted=pred)
        assert np.all(res.finish - res.start == inst.output)
        assert np.all(res.start >= inst.arrival) and res.peak_memory <= inst.memory
        totals[name] = res.total_latency(inst)
    b = lower_bound(inst, upper=min(totals.values()), time_limit=20)
    assert b.lower_bound_total_latency >= inst.output.sum()
    for name, total in totals.items():
        assert b.lower_bound_total_latency <= total, (name, total, b)
    # The LP relaxation and the trivial bound are weaker but valid too.
    lp = lower_bound(inst, upper=min(totals.values()), max_ip_nonzeros=0)
    assert lp.method == "lp" and lp.lower_bound_total_latency <= b.lower_bound_total_latency
    triv = lower_bound(inst, max_ip_nonzeros=0, max_lp_nonzeros=0)
    assert triv.method == "trivial" and triv.lower_bound_total_latency == inst.output.sum()


def test_optimum_is_attained_by_the_model() -> None:
    """On a tiny instance the IP optimum equals a brute-force search over start times."""
    import itertools

    inst = UnitInstance([0, 0, 1, 2], [3, 1, 2, 1], [3, 4, 2, 3], 12)
    best = None
    for starts in itertools.product(range(0, 12), repeat=4):
        if any(t < a for t, a in zip(starts, inst.arrival, strict=True)):
            continue
        mem = np.zeros(30)
        for t, s, o in zip(starts, inst.prompt, inst.output, strict=True):
            mem[t + 1: t + o + 1] += s + np.arange(1, o + 1)
        if mem.max() <= inst.memory:
            total = sum(t + o - a for t, o, a in zip(starts, inst.output, inst.arrival,
                                                     strict=True))
            best = total if best is None else min(best, total)
    b = lower_bound(inst)
    assert b.optimal and b.lower_bound_total_latency == best


def test_model_shape() -> None:
    inst = UnitInstance([0, 1], [2, 1], [2, 3], 10)
    m = build_model(inst)
    assert m["num_row"] >= 2 and m["num_col"] == len(m["cost"])
    # Every column: one assignment entry and o_i memory entries.
    assert np.all(np.diff(m["start"]) == inst.output[m["cols_i"]] + 1)


def test_cli_bound_json(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n = 10
    path = tmp_path / "inst.csv"
    rows = ["arrival_s,prompt_tokens,output_tokens"]
    for a, s, o in zip(np.sort(rng.uniform(0, 6, n)), rng.integers(1, 6, n),
                       rng.integers(1, 12, n), strict=True):
        rows.append(f"{a:.3f},{s},{o}")
    path.write_text("\n".join(rows) + "\n")
    res = CliRunner().invoke(app, ["bound", "--trace", str(path), "--memory", "24",
                                   "--policies", "fcfs,mc_sf,a_max,a_min", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"lower_bound_total_latency", "optimal", "solver_gap", "policies"}
    assert set(out["policies"]) == {"fcfs", "mc_sf", "a_max", "a_min"}
    assert all(v >= out["lower_bound_total_latency"] for v in out["policies"].values())
    assert out["policies"]["mc_sf"] <= 1.25 * out["lower_bound_total_latency"]
    bad = CliRunner().invoke(app, ["bound", "--trace", str(path), "--memory", "5", "--json"])
    assert bad.exit_code == 2 and "memory" in bad.output

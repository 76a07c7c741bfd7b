"""Simulator invariants on random workloads and engine settings (hypothesis).

- event skipping is exact: per-request times equal a naive per-iteration reference engine;
- every request finishes exactly once, or is reported rejected / unfinished;
- KV blocks never exceed capacity and free + used = total (the engine's ``check`` mode
  recomputes its aggregates from scratch at every decision and asserts the token budget and the
  sequence cap);
- time is monotone per request and in every series; sample-path Little's law holds exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servoir.sim import EngineParams

from factories import LinearLatency, make_workload, simulate
from reference_sim import reference_run

engines = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "n": st.integers(1, 40),
    "gap": st.floats(0.005, 0.5),
    "block_size": st.sampled_from([1, 2, 4, 16]),
    "blocks": st.integers(20, 200),
    "max_num_seqs": st.integers(1, 12),
    "budget": st.integers(8, 400),
    "chunked": st.booleans(),
    "pp": st.sampled_from([1, 2]),
    "reserve": st.booleans(),
    "skew": st.sampled_from([0.0, 0.0, 0.3]),
    "async": st.booleans(),
    "cache": st.booleans(),
})


def _setup(p: dict) -> tuple:
    w = make_workload(p["seed"], p["n"], p["gap"])
    need = int((w.num_prompt_tokens + w.num_output_tokens).max())
    bs = p["block_size"]
    blocks = max(p["blocks"] // bs, need // bs + 2)  # every request can run alone
    budget = max(p["budget"], p["max_num_seqs"])
    if not p["chunked"]:
        budget = max(budget, need)
    eng = EngineParams(p["max_num_seqs"], budget, bs, blocks, p["chunked"], p["pp"],
                       reserve_full_prompt=p.get("reserve", False),
                       async_scheduling=p.get("async", False),
                       cache_preempted=p.get("cache", False))
    return w, eng


@settings(max_examples=200)
@given(engines)
def test_event_skipping_matches_per_iteration_reference(p: dict) -> None:
    w, eng = _setup(p)
    lat = LinearLatency(skew_alpha=p["skew"])
    res = simulate(w, eng, latency=lat)
    ref = reference_run(w.arrival_at.tolist(), w.num_prompt_tokens.tolist(),
                        w.num_output_tokens.tolist(), lat=lat,
                        max_num_seqs=eng.max_num_seqs,
                        max_num_batched_tokens=eng.max_num_batched_tokens,
                        block_size=eng.block_size, num_blocks=eng.num_blocks,
                        enable_chunked_prefill=eng.enable_chunked_prefill, pp=eng.pp,
                        reserve_full_prompt=eng.reserve_full_prompt,
                        async_scheduling=eng.async_scheduling,
                        cache_preempted=eng.cache_preempted)
    for key in ("first_token_at", "finish_at", "first_scheduled_at", "num_preemptions"):
        np.testing.assert_allclose(res.requests[key], np.array(ref[key], dtype=float),
                                   rtol=1e-9, atol=1e-9, err_msg=key)


@given(engines, st.integers(1, 3))
def test_finish_once_capacity_and_littles_law(p: dict, instances: int) -> None:
    w, eng = _setup(p)
    res = simulate(w, eng, instances=instances, router="jsq")  # check=True asserts per decision
    r = res.requests
    assert (r["status"] == "finished").all()
    assert np.all(r["first_scheduled_at"] >= r["arrival_at"])
    assert np.all(r["first_token_at"] > r["first_scheduled_at"])
    assert np.all(r["finish_at"] >= r["first_token_at"])
    assert np.all((r["num_output_tokens"] > 1) | (r["finish_at"] == r["first_token_at"]))
    sojourn = float((r["finish_at"] - r["arrival_at"]).sum())
    area = 0.0
    for s in res.series:
        if not len(s.time_at):
            continue  # an instance that never received a request
        assert np.all(np.diff(s.time_at) >= 0), "series time must be monotone"
        assert np.all(s.kv_used_blocks <= s.kv_total_blocks)
        assert np.all(s.kv_used_blocks >= 0)
        assert s.kv_used_blocks[-1] == 0 and s.num_running[-1] == 0 and s.num_waiting[-1] == 0
        level = s.num_running + s.num_waiting
        area += float(np.sum(level[:-1] * np.diff(s.time_at)))
    # Sample-path Little's law: integral of number in system = sum of sojourn times.
    assert abs(area - sojourn) <= 1e-9 * max(1.0, sojourn)


@given(st.integers(0, 1000), st.integers(1, 4))
def test_max_concurrency_caps_requests_in_flight(seed: int, cap: int) -> None:
    w = make_workload(seed, 30, 0.01)
    res = simulate(w, EngineParams(8, 512, 4, 400), max_concurrency=cap)
    r = res.requests
    times = np.concatenate([r["arrival_at"], r["finish_at"]])
    delta = np.concatenate([np.ones(len(w)), -np.ones(len(w))])
    order = np.lexsort((delta, times))  # at equal times, finishes (-1) before arrivals
    assert np.cumsum(delta[order]).max() <= cap
    assert (r["status"] == "finished").all()
    for s in res.series:  # a slot handed over at a finish never shows as idle-with-work
        assert not np.any((s.num_waiting > 0) & (s.num_running == 0))


def test_rejected_requests_are_counted_not_dropped() -> None:
    w = make_workload(0, 50, 0.05, max_prompt=400, max_output=300)
    res = simulate(w, EngineParams(8, 512, 4, 400), max_model_len=300)
    r = res.requests
    too_long = (w.num_prompt_tokens + w.num_output_tokens) > 300
    assert too_long.any()
    assert np.array_equal(r["status"] == "rejected", too_long)
    assert res.headline()["num_rejected"] == int(too_long.sum())
    assert res.headline()["num_finished"] == int((~too_long).sum())


def test_cost_grows_with_requests_not_tokens() -> None:
    """Doubling every output length leaves the number of simulator events nearly unchanged."""
    w = make_workload(3, 400, 0.05, max_prompt=2000, max_output=500)
    eng = EngineParams(64, 4096, 16, 200_000)
    a = simulate(w, eng, check=False)
    w2 = type(w)(w.arrival_at, w.num_prompt_tokens, w.num_output_tokens * 2)
    b = simulate(w2, eng, check=False)
    assert b.meta["num_iterations"] > 1.8 * a.meta["num_iterations"]
    assert b.meta["sim_events"] < 1.2 * a.meta["sim_events"]


SELECT_POLICIES = ["mc_sf", "a_min", "a_max", "sorted_f", "gsa", "vtc"]


@settings(max_examples=120)
@given(engines, st.sampled_from(SELECT_POLICIES), st.floats(0.0, 1.0), st.booleans())
def test_policy_admission_matches_per_iteration_reference(p: dict, name: str, sigma: float,
                                                          strict: bool) -> None:
    """Policies that decide admissions and victims themselves (``select``/``choose_victim``)
    give the same per-request times in the event-skipping engine and in the reference, which
    consults them at the same decision points iteration by iteration."""
    from servoir.registry import create
    from servoir.sim import Cluster, collect
    from servoir.workload import Workload

    # The reference mirrors async scheduling and the preempted prefix cache for FCFS only.
    w0, eng = _setup({**p, "async": False, "cache": False})
    rng = np.random.default_rng(p["seed"] + 1)
    tenants = np.array([f"t{k}" for k in rng.integers(0, 3, len(w0))], dtype=object)
    w = Workload(w0.arrival_at, w0.num_prompt_tokens, w0.num_output_tokens, tenant=tenants)
    pred = w.num_output_tokens * np.exp(sigma * rng.standard_normal(len(w)))
    params = {"strict": strict} if name == "mc_sf" else {}
    c = Cluster(w, num_instances=1, engine=eng, latency=LinearLatency(),
                router=create("routing", "round_robin"),
                make_scheduler=lambda: create("scheduling", name, params),
                max_model_len=10**9, check=True, predicted_output_tokens=pred)
    c.run()
    res = collect(c)
    sched = create("scheduling", name, params)
    from servoir.rng import stream

    sched.reset(stream(0, "policy.scheduler", replication=0))
    ref = reference_run(w.arrival_at.tolist(), w.num_prompt_tokens.tolist(),
                        w.num_output_tokens.tolist(), lat=LinearLatency(),
                        max_num_seqs=eng.max_num_seqs,
                        max_num_batched_tokens=eng.max_num_batched_tokens,
                        block_size=eng.block_size, num_blocks=eng.num_blocks,
                        enable_chunked_prefill=eng.enable_chunked_prefill, pp=eng.pp,
                        scheduler=sched, predicted=pred.tolist(), tenant=tenants.tolist())
    for key in ("first_token_at", "finish_at", "first_scheduled_at", "num_preemptions"):
        np.testing.assert_allclose(res.requests[key], np.array(ref[key], dtype=float),
                                   rtol=1e-9, atol=1e-9, err_msg=key)

"""Unit checks of the new routers' decision rules."""

from __future__ import annotations

import collections
import itertools

import numpy as np

from servoir import registry
from servoir.policies.routing.bf_io import idle_objective, single_request, single_slot
from servoir.policies.routing.bf_io_greedy import greedy_assign, spread_cap
from servoir.policies.routing.rank_table import RankTable, rank_loads
from servoir.views import ReplicaTable, RequestView


def test_single_request_and_slot_are_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = int(rng.integers(1, 6))
        load, drift = rng.integers(0, 5000, g), rng.integers(0, 10, g)
        free, kv = rng.integers(0, 2, g), rng.integers(100, 4000, g)
        s = int(rng.integers(1, 3000))
        k = single_request(s, load, drift, free, kv, 4)
        ok = [r for r in range(g) if free[r] > 0 and kv[r] > s]
        if not ok:
            assert k == -1
            continue
        objs = {r: idle_objective(np.array([r]), np.array([s]), load, drift, 4) for r in ok}
        assert objs[k] == min(objs.values())
        sizes = rng.integers(1, 3000, int(rng.integers(1, 6)))
        r = int(rng.integers(g))
        j = single_slot(sizes, load, drift, r, int(kv[r]), 4)
        fits = [i for i in range(len(sizes)) if sizes[i] < kv[r]]
        if not fits:
            assert j == -1
            continue
        o = {i: idle_objective(np.where(np.arange(len(sizes)) == i, r, -1), sizes, load,
                               drift, 4) for i in fits}
        assert o[j] == min(o.values())


def test_greedy_is_work_conserving_and_spreads() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        g, w = int(rng.integers(1, 6)), int(rng.integers(0, 12))
        free = rng.integers(0, 4, g)
        out = greedy_assign(rng.integers(1, 100, w), rng.integers(0, 500, g),
                            rng.integers(0, 5, g), free, np.full(g, 10**6), 4)
        cap = spread_cap(w, free)
        assert (out >= 0).sum() == min(w, int(cap.sum()))
        assert (np.bincount(out[out >= 0], minlength=g) <= cap).all()


def test_backlog_best_fit_fills_the_gap() -> None:
    # One slot, on the light rank: the largest candidate that does not overshoot the peak.
    out = greedy_assign(np.array([9000, 3000, 2500, 100]), np.array([0, 4000]),
                        np.array([0, 0]), np.array([1, 0]), np.array([10**6, 10**6]), 1)
    assert out.tolist() == [-1, 0, -1, -1]


def test_rank_loads_fallback_on_a_plain_table() -> None:
    t, c = ReplicaTable.allocate(3)
    c["outstanding_tokens"][:] = [5, 1, 9]
    load, drift, free, kv, cost = rank_loads(t)
    assert load.tolist() == [5, 1, 9] and cost == 0 and (free > 10**9).all()
    rt, rc = RankTable.allocate(2)
    rc["kv_tokens"][:] = [100, 200]
    rc["num_active"][:] = [1, 3]
    rc["seq_cost_tokens"][:] = 10
    load, drift, *_ = rank_loads(rt)
    assert load.tolist() == [110, 230] and drift.tolist() == [1, 3]


def test_vllm_score_weights_waiting_four_times() -> None:
    p = registry.create("routing", "vllm_score")
    p.reset(2, np.random.default_rng(0))
    t, c = ReplicaTable.allocate(2)
    c["num_waiting"][:] = [1, 0]
    c["num_running"][:] = [0, 3]
    assert p.route(RequestView(0, 0.0, 10), t) == 1  # 4 > 3
    c["num_running"][:] = [0, 5]
    assert p.route(RequestView(1, 0.0, 10), t) == 0  # 4 < 5


def test_vllm_score_on_published_counts_like_vllm_019() -> None:
    # vLLM 0.19's front end: counts published every interval, its own sends added locally,
    # ties to the first engine.
    p = registry.create("routing", "vllm_score", {"publish_interval_s": 0.1, "ties": "first"})
    p.reset(2, np.random.default_rng(0))
    t, c = ReplicaTable.allocate(2)
    c["num_running"][:] = [3, 0]
    # Snapshot at t = 0: engine 1 scores 0; each send adds a waiting request (4) locally.
    assert [p.route(RequestView(i, 0.01 * i, 10), t) for i in range(3)] == [1, 0, 1]
    # The live table changes, but until t = 0.1 the snapshot stands.
    c["num_running"][:] = [0, 50]
    assert p.route(RequestView(3, 0.09, 10), t) == 0  # snapshot: 3 + 4 vs 0 + 8
    assert p.route(RequestView(4, 0.10, 10), t) == 0  # new snapshot: 0 vs 50
    c["num_running"][:] = [5, 5]
    assert p.route(RequestView(5, 0.25, 10), t) == 0  # a tie goes to the first engine
    # A phase shifts the publications to 0.05 + multiples of 0.1.
    q = registry.create("routing", "vllm_score", {"publish_interval_s": 0.1,
                                                  "publish_phase_s": 0.05, "ties": "first"})
    q.reset(2, np.random.default_rng(0))
    c["num_running"][:] = [0, 9]
    assert q.route(RequestView(0, 0.30, 10), t) == 0
    c["num_running"][:] = [9, 0]
    assert q.route(RequestView(1, 0.34, 10), t) == 0  # snapshot still [0 + 4, 9]
    assert q.route(RequestView(2, 0.36, 10), t) == 1  # published at 0.35: [9, 0]


def test_power_of_two_pairs_are_uniform_and_distinct() -> None:
    p = registry.create("routing", "power_of_two")
    p.reset(5, np.random.default_rng(0))
    pairs = [p._pair(5) for _ in range(40_000)]
    assert all(i != j for i, j in pairs)
    cnt = collections.Counter(pairs)
    assert set(cnt) == set(itertools.permutations(range(5), 2))
    assert max(cnt.values()) / min(cnt.values()) < 1.2

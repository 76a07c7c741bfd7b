"""Guarantee checks of the routing family: ``CHECKS[name](family, policy_name)`` raises on failure.

Merged into ``GUARANTEE_CHECKS`` in ``test_policies.py``; each guarantee a routing policy declares
in ``info.guarantees`` beyond the shared ones needs its check here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from servoir import registry
from servoir.policies.routing.bf_io import idle_objective, solve_ip
from servoir.policies.routing.bf_io_greedy import greedy_assign
from servoir.policies.routing.lookahead import lookahead
from servoir.policies.routing.rank_table import RankTable
from servoir.views import ReplicaTable, RequestView


def check_lpt_makespan(family: str, name: str) -> None:
    """Empty ranks, no slot or memory limits: max load <= (4/3 - 1/(3G)) * optimum (Graham)."""
    assert family == "routing"
    rng = np.random.default_rng(0)
    worst = 0.0
    for trial in range(300):
        g = int(rng.integers(2, 4))
        w = int(rng.integers(g + 1, 8))
        sizes = rng.integers(1, 100, w) if trial % 2 else rng.integers(1, 6, w) * 10
        # Through the policy: empty ranks, a free slot for every request, ample memory.
        p = registry.create("routing", name, {"spread": False, "horizon": 1})
        p.reset(g, np.random.default_rng(trial))
        table, cols = RankTable.allocate(g)
        cols["num_free_slots"][:] = w
        cols["kv_free_tokens"][:] = 10**9
        out = np.array(p.assign([RequestView(i, 0.0, int(s)) for i, s in enumerate(sizes)],
                                table))
        assert (out >= 0).all()
        got = np.bincount(out, weights=sizes, minlength=g).max()
        opt = min(np.bincount(np.array(a), weights=sizes, minlength=g).max()
                  for a in itertools.product(range(g), repeat=w))
        ratio = got / opt
        worst = max(worst, ratio)
        assert ratio <= 4 / 3 - 1 / (3 * g) + 1e-9, (sizes.tolist(), g, got, opt)
    assert worst > 1.0, "every instance was solved optimally: the check would pass vacuously"


def _small_program(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    g = int(rng.integers(2, 4))
    w = int(rng.integers(2, 5))
    load = rng.integers(0, 3000, g)
    drift = rng.integers(0, 8, g)
    free = rng.integers(0, 3, g)
    free[int(rng.integers(g))] = max(1, free.max())
    kv = rng.integers(500, 5000, g)
    sizes = rng.integers(50, 2000, w)
    return sizes, load, drift, free, kv


def _brute_force(sizes, load, drift, free, kv, horizon, num) -> float:
    best = np.inf
    g = len(load)
    cap = np.minimum(free, -(-len(sizes) // int((free > 0).sum())))
    for a in itertools.product(range(-1, g), repeat=len(sizes)):
        a = np.array(a)
        if (a >= 0).sum() != num:
            continue
        placed = a >= 0
        cnt = np.bincount(a[placed], minlength=g)
        mem = np.bincount(a[placed], weights=sizes[placed] + 1, minlength=g)
        if (cnt > cap).any() or (mem > kv).any():
            continue
        best = min(best, idle_objective(a, sizes, load, drift, horizon))
    return best


def check_ip_optimal_small(family: str, name: str) -> None:
    """On small programs, the integer program attains the brute-force optimum of its objective,
    both by enumeration and by HiGHS (enumeration switched off), with the plain horizon, with
    a survival-weighted lookahead (an observed finish hazard) and with the empty-rank cost."""
    assert family == "routing"
    rng = np.random.default_rng(1)
    for horizon in (3, lookahead(3, 0.05), lookahead(3, 0.2, busy_cost=3000.0)):
        improved = {0: 0, 10**6: 0}
        for _ in range(40):
            sizes, load, drift, free, kv = _small_program(rng)
            warm = greedy_assign(sizes, load, drift, free, kv, 3)
            num = int((warm >= 0).sum())
            opt = _brute_force(sizes, load, drift, free, kv, horizon, num)
            for limit in improved:
                out, st = solve_ip(sizes, load, drift, free, kv, horizon, time_limit_s=5.0,
                                   max_nodes=10**6, enumerate_limit=limit)
                assert int((out >= 0).sum()) == num
                assert st["optimal"] == 1.0
                assert abs(st["objective"] - opt) < 1e-6 * max(1.0, abs(opt)), (limit, st, opt)
                assert abs(idle_objective(out, sizes, load, drift, horizon) - st["objective"]) \
                    < 1e-6 * max(1.0, abs(opt))
                improved[limit] += st["objective"] < st["warm_objective"] - 1e-6
        assert min(improved.values()) > 0, "the warm start was always optimal: check vacuous"


def check_no_worse_than_greedy(family: str, name: str) -> None:
    """Under a tight time limit, the placement is never worse than the greedy warm start."""
    assert family == "routing"
    rng = np.random.default_rng(2)
    for _ in range(10):
        g, w = 16, 32
        load = rng.integers(0, 60_000, g)
        drift = rng.integers(0, 64, g)
        free = rng.integers(0, 4, g)
        kv = np.full(g, 10**7)
        sizes = rng.integers(16, 4000, w)
        out, st = solve_ip(sizes, load, drift, free, kv, 8, time_limit_s=0.005)
        assert st["objective"] <= st["warm_objective"] + 1e-6
        assert abs(idle_objective(out, sizes, load, drift, 8) - st["objective"]) < 1e-6
    # And through the policy's own assign() on a RankTable.
    p = registry.create("routing", name)
    p.reset(4, np.random.default_rng(0))
    table, cols = RankTable.allocate(4)
    cols["kv_tokens"][:] = [100, 5000, 200, 3000]
    cols["num_free_slots"][:] = 2
    cols["kv_free_tokens"][:] = 10**6
    reqs = [RequestView(i, 0.0, s) for i, s in enumerate((4000, 300, 2500, 50, 900))]
    ranks = p.assign(reqs, table)
    assert len(ranks) == 5 and all(-1 <= k < 4 for k in ranks)
    assert sum(k >= 0 for k in ranks) == 5  # work-conserving: 8 free slots, 5 requests


def check_prefix_affinity(family: str, name: str) -> None:
    """SGLang's rule: affinity while balanced and matched; shortest queue when imbalanced."""
    assert family == "routing"
    p = registry.create("routing", name)
    g = 4
    p.reset(g, np.random.default_rng(0))
    table, cols = ReplicaTable.allocate(g)
    cols["num_running"][:] = [3, 1, 2, 5]
    first = p.route(RequestView(0, 0.0, 64, prefix_hashes=(11, 12, 13, 14)), table)
    assert first == 1  # no match anywhere: least loaded
    cols["num_running"][:] = [0, 4, 2, 5]  # balanced (spread 5 <= 64): affinity wins over load
    again = p.route(RequestView(1, 0.1, 64, prefix_hashes=(11, 12, 13, 99)), table)
    assert again == first
    low = p.route(RequestView(2, 0.2, 64, prefix_hashes=(11, 77, 78, 79)), table)  # 1/4 <= 0.3
    assert low == 0
    cols["num_running"][:] = [1, 200, 2, 5]  # imbalanced: 199 > 64 and 200 > 1.5 * 1
    hot = p.route(RequestView(3, 0.3, 64, prefix_hashes=(11, 12, 13, 14)), table)
    assert hot == 0
    rng = np.random.default_rng(3)
    for rid in range(200):  # decision by decision against the rule
        cols["num_running"][:] = rng.integers(0, 150, g)
        hashes = tuple(int(h) for h in rng.integers(0, 6, int(rng.integers(1, 5))))
        load = table.num_waiting + table.num_running
        m = p.matches(hashes)
        k = p.route(RequestView(4 + rid, 1.0, 64, prefix_hashes=hashes), table)
        if not p.imbalanced(load) and m.max() > p.cache_threshold * len(hashes):
            assert m[k] == m.max()
        else:
            assert load[k] == load.min()


CHECKS: dict[str, Callable[[str, str], None]] = {
    "lpt_makespan": check_lpt_makespan,
    "ip_optimal_small": check_ip_optimal_small,
    "no_worse_than_greedy": check_no_worse_than_greedy,
    "prefix_affinity": check_prefix_affinity,
}

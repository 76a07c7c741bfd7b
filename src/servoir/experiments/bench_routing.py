"""``servoir bench routing``: routing decision time (a benchmark, never a test).

Three measurements, all in one process so ratios compare like with like:

1. *Isolated*: ``route()`` on a live table of G = 32 replicas whose columns change after every
   decision (as the simulator's do), 100,000 decisions per router; microseconds per decision and
   the ratio to round-robin measured in the same loop.
2. *In the simulator*: a DP-attention run (Azure conversation lengths, G = 32 ranks) with the
   router's ``route``/``assign`` wrapped by a timer; router seconds per request, amortised.
3. *BF-IO per step*: ``assign()`` of the greedy form on its worst case at G = 32 (a window of 64
   waiting requests, two free slots on every rank), and the integer program's solve times and
   optimality gaps under its time limit on the same programs (it is the quality reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from servoir import registry
from servoir.config import load_config
from servoir.experiments.run import build
from servoir.policies.routing.bf_io import solve_ip
from servoir.policies.routing.bf_io_greedy import greedy_assign
from servoir.policies.routing.rank_table import RankTable
from servoir.sim.dp_attention import DPAttentionCluster
from servoir.views import RequestView

FAST = ("round_robin", "jsq", "least_outstanding_tokens", "vllm_score", "power_of_two",
        "prefix_aware", "bf_io_greedy")
G = 32


def isolated(name: str, n: int, seed: int = 0) -> float:
    """Microseconds per ``route()`` on a live table whose columns change every decision."""
    table, cols = RankTable.allocate(G)
    rng = np.random.default_rng(seed)
    cols["kv_tokens"][:] = rng.integers(0, 50_000, G)
    cols["num_free_slots"][:] = 4
    cols["kv_free_tokens"][:] = 10**7
    p = registry.create("routing", name)
    p.reset(G, np.random.default_rng(seed))
    reqs = [RequestView(i, 0.0, int(s), prefix_hashes=(int(s) % 7, int(s)))
            for i, s in enumerate(rng.integers(1, 4096, 1024))]
    done = rng.integers(0, G, n).tolist()
    waiting, outstanding, kv = cols["num_waiting"], cols["outstanding_tokens"], cols["kv_tokens"]
    route = p.route
    t0 = time.perf_counter()
    for i in range(n):
        req = reqs[i & 1023]
        k = route(req, table)
        waiting[k] += 1
        outstanding[k] += req.num_prompt_tokens
        kv[k] += req.num_prompt_tokens
        waiting[done[i]] = max(0, waiting[done[i]] - 1)  # a departure elsewhere
    return (time.perf_counter() - t0) / n * 1e6


class Timed:
    """Wraps a router: same decisions, cumulative seconds inside ``route``/``assign``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.late_binding = getattr(inner, "late_binding", False)
        self.window = getattr(inner, "window", 1)
        self.seconds = 0.0
        self.calls = 0

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        self.inner.reset(num_replicas, rng)

    def route(self, request: RequestView, replicas: Any) -> int:
        t0 = time.perf_counter()
        k = self.inner.route(request, replicas)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return int(k)

    def assign(self, requests: Any, replicas: Any) -> list[int]:
        t0 = time.perf_counter()
        out = self.inner.assign(requests, replicas)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return list(out)


def in_simulator(name: str, n: int, seed: int = 0) -> dict[str, float]:
    """Router time per request in a DP-attention run at G = 32 (the router wrapped by a timer)."""
    cfg = load_config(None, {}, ["cluster.mode=dp_attention", f"cluster.instances={G}",
                                 "workload.trace=azure_conv", f"workload.num_requests={n}",
                                 f"workload.rate={10 * G}", "hardware.gpu=h100",
                                 f"cluster.router.name={name}", f"seed={seed}"])
    b = build(cfg)
    timed = Timed(b.make_router())
    group = DPAttentionCluster(b.workload, num_ranks=G, engine=b.engine, latency=b.latency,
                               router=timed, make_scheduler=b.make_scheduler,
                               max_model_len=b.max_model_len, seed=seed, record_series=False)
    group.run()
    return {"us_per_request": timed.seconds / n * 1e6, "calls": float(timed.calls),
            "us_per_call": timed.seconds / max(1, timed.calls) * 1e6}


def bf_io_programs(num: int, seed: int = 0, limit_s: float = 0.02,
                   max_nodes: int = 50) -> dict[str, float]:
    """Greedy and integer-program (``limit_s``, ``max_nodes``) times on ``num`` programs at
    G = 32, W = 64."""
    rng = np.random.default_rng(seed)
    greedy_s, ip_s, gaps, optimal, improve = [], [], [], [], []
    for _ in range(num):
        load = rng.integers(20_000, 80_000, G)
        drift = rng.integers(20, 64, G)
        free = np.full(G, 2)
        kv = np.full(G, 10**7)
        sizes = rng.integers(16, 4096, 64)
        t0 = time.perf_counter()
        warm = greedy_assign(sizes, load, drift, free, kv, 8, 600)
        greedy_s.append(time.perf_counter() - t0)
        _, st = solve_ip(sizes, load, drift, free, kv, 8, limit_s, warm=warm, seq_cost=600,
                         max_nodes=max_nodes)
        ip_s.append(st["solve_s"])
        gaps.append(st["gap"])
        optimal.append(st["optimal"])
        improve.append(1 - st["objective"] / st["warm_objective"] if st["warm_objective"] else 0)
    g = np.array(greedy_s) * 1e3
    s = np.array(ip_s) * 1e3
    return {"greedy_ms_median": float(np.median(g)), "greedy_ms_max": float(g.max()),
            "ip_ms_median": float(np.median(s)), "ip_ms_p90": float(np.quantile(s, 0.9)),
            "ip_optimal_frac": float(np.mean(optimal)),
            "ip_gap_median": float(np.median(gaps)),
            "ip_objective_gain_vs_greedy_median": float(np.median(improve))}


def run_routing_bench(quick: bool = False,
                      echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """All three measurements; returns a JSON-able dict."""
    n_iso = 20_000 if quick else 100_000
    n_sim = 1_000 if quick else 4_000
    out: dict[str, Any] = {"G": G, "isolated_us": {}, "in_simulator": {}}
    base = isolated("round_robin", n_iso)
    for name in FAST:
        us = isolated(name, n_iso)
        out["isolated_us"][name] = us
        if echo is not None:
            echo(f"  isolated {name:<26} {us:7.2f} us/decision  ({us / base:5.2f}x round_robin)")
    for name in (*FAST, "bf_io"):
        r = in_simulator(name, n_sim)
        out["in_simulator"][name] = r
        if echo is not None:
            echo(f"  simulator {name:<25} {r['us_per_request']:8.2f} us/request amortised "
                 f"({r['calls']:.0f} calls, {r['us_per_call']:.1f} us/call)")
    # The policy's defaults (0.1 s, 50 nodes), then a budget that usually proves optimality.
    for limit, nodes, num in ((0.1, 50, 20 if quick else 100), (1.0, 10**6, 3 if quick else 10)):
        b = bf_io_programs(num, limit_s=limit, max_nodes=nodes)
        out[f"bf_io_step_limit_{limit:g}s"] = b
        if echo is not None:
            echo(f"  BF-IO step at G={G}, W=64 (IP limit {limit:g} s, {nodes} nodes): greedy "
                 f"median {b['greedy_ms_median']:.3f} ms (max {b['greedy_ms_max']:.3f}); IP median "
                 f"{b['ip_ms_median']:.1f} ms, p90 {b['ip_ms_p90']:.1f} ms, proven optimal "
                 f"{b['ip_optimal_frac']:.0%}, median gap {b['ip_gap_median']:.2%}, objective "
                 f"gain over greedy {b['ip_objective_gain_vs_greedy_median']:.2%}")
    return out

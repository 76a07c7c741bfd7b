"""``servoir bench moe``: solve time, optimality gap and balance of the LPLB LP solvers.

Workload (LPLB's ``tests/test_solve.py`` distributions, drawn with numpy): 256 logical experts,
history ~ N(1, 0.15) * 2^20 and batch counts ~ N(1, 0.3) * 2^12, clamped at 0. The timed layer is
Cube8P2E at EP 64 with 2 redundant experts per rank (8 groups of 24 x 42 LPs) after EPLB reorder.

JSON keys (exactly): ``fast_us_p50``, ``fast_us_p99`` (one LP through :func:`lplb.solve`),
``highs_us_p50``, ``ipm_us_p50``, ``max_rel_gap_vs_highs`` (fast objective vs HiGHS at 1e-10),
``layer_us_p50`` (normalise + solve all 8 groups), ``max_over_mean_before`` (even split) and
``max_over_mean_after`` (fast solver), the last two averaged over the batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from servoir.moe import lplb
from servoir.moe.step_model import MoELayerStepModel
from servoir.moe.topology import CUBE_8P2E, HYPERCUBE_16P2E, RING_8, torus

__all__ = ["BALANCE_CASES", "balance_case", "run_moe_bench"]

NUM_EXPERTS = 256

#: (name, topology, EP size, redundants per rank, EPLB reorder, LPLB's required max/mean)
BALANCE_CASES: tuple[tuple[str, np.ndarray, int, int, bool, float], ...] = (
    ("Cube8P2E EP32", CUBE_8P2E, 32, 2, True, 1.07),
    ("Cube8P2E EP32 r4", CUBE_8P2E, 32, 4, False, 1.07),
    ("Cube8P2E EP64", CUBE_8P2E, 64, 2, True, 1.10),
    ("Ring8 EP32", RING_8, 32, 1, True, 1.07),
    ("Hypercube16P2E EP16", HYPERCUBE_16P2E, 16, 2, True, 1.03),
    ("Torus 8x4 EP32", torus(8, 4), 32, 2, False, 1.01),
)


def draw_history(rng: np.random.Generator, n: int = NUM_EXPERTS) -> np.ndarray:
    """Load history ~ N(1, 0.15) * 2^20, clamped at 0 and floored (LPLB's test)."""
    return np.floor(np.clip(rng.standard_normal(n) * 0.15 + 1.0, 0.0, None) * 2**20)


def draw_batch(rng: np.random.Generator, n: int = NUM_EXPERTS) -> np.ndarray:
    """Batch token counts ~ N(1, 0.3) * 2^12, clamped at 0 and floored (LPLB's test)."""
    return np.floor(np.clip(rng.standard_normal(n) * 0.3 + 1.0, 0.0, None) * 2**12)


def balance_case(topology: np.ndarray, ep_size: int, redundants: int, reorder: bool,
                 seed: int = 42) -> dict[str, Any]:
    """Max/mean rank load before (even split) and after (fast, IPM) for one LPLB test case.

    Draws history (when ``reorder``) then one batch from ``np.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    history = draw_history(rng) if reorder else None
    batch = draw_batch(rng)
    layout = lplb.plan(topology, NUM_EXPERTS, ep_size, redundants, history)
    w, f = lplb.bundle_loads(layout, batch)
    w_tok, f_tok = lplb.bundle_loads(layout, batch, normalize=False)

    def ratio(p: np.ndarray) -> float:
        loads = lplb.rank_loads(w_tok, f_tok, p, topology)
        return float(loads.max() / loads.mean())

    fast = lplb.solve(w, f, topology, "fast")
    ipm = lplb.solve(w, f, topology, "ipm")
    return {"before": ratio(np.full_like(w, 0.5)), "after": ratio(fast.p),
            "after_ipm": ratio(ipm.p), "ipm_accepted": bool(ipm.accepted.all()),
            "num_groups": int(w.shape[0])}


def _time_us(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e6


def run_moe_bench(quick: bool = False, seed: int = 42,
                  echo: Callable[[str], None] | None = None) -> dict[str, float]:
    """Run the benchmark; return the JSON row and, with ``echo``, print a readable report.

    ``quick`` uses fewer batches (a smoke run). Timings are wall-clock on one core, each LP or
    layer called alone, after one warm-up call.
    """
    num_batches = 20 if quick else 250
    num_highs = 40 if quick else 400
    rng = np.random.default_rng(seed)
    topo = CUBE_8P2E
    layout = lplb.plan(topo, NUM_EXPERTS, 64, 2, draw_history(rng))
    batches = [draw_batch(rng) for _ in range(num_batches)]
    groups = [lplb.bundle_loads(layout, b) for b in batches]
    lps = [(w[i], f[i]) for w, f in groups for i in range(w.shape[0])]
    lplb.solve(*lps[0], topo)
    lplb.solve(*lps[0], topo, "ipm")
    lplb.solve(*lps[0], topo, "highs")

    fast_us, fast_obj = [], []
    for w, f in lps:
        fast_us.append(_time_us(lambda w=w, f=f: fast_obj.append(lplb.solve(w, f, topo))))
    ipm_us, ipm_sol = [], []
    for w, f in lps:
        ipm_us.append(_time_us(lambda w=w, f=f: ipm_sol.append(lplb.solve(w, f, topo, "ipm"))))
    highs_us, highs_obj = [], []
    for w, f in lps[:num_highs]:
        highs_us.append(_time_us(
            lambda w=w, f=f: highs_obj.append(lplb.solve(w, f, topo, "highs").objective[0])))
    t_fast = np.array([s.objective[0] for s in fast_obj])
    t_ref = np.array(highs_obj)
    rel_gap = np.abs(t_fast[:num_highs] - t_ref) / t_ref
    ipm_gap = np.array([s.max_load[0] for s in ipm_sol]) / t_fast - 1.0
    ipm_acc = np.array([bool(s.accepted[0]) for s in ipm_sol])

    layer_us, before, after, step_gain = [], [], [], []
    model = MoELayerStepModel()
    for b in batches:
        layer_us.append(_time_us(lambda b=b: lplb.solve(*lplb.bundle_loads(layout, b), topo)))
        w_tok, f_tok = lplb.bundle_loads(layout, b, normalize=False)
        sol = lplb.solve(*lplb.bundle_loads(layout, b), topo)
        lo0 = lplb.rank_loads(w_tok, f_tok, np.full_like(w_tok, 0.5), topo).reshape(-1)
        lo1 = lplb.rank_loads(w_tok, f_tok, sol.p, topo).reshape(-1)
        before.append(lo0.max() / lo0.mean())
        after.append(lo1.max() / lo1.mean())
        epg = layout.num_local_physical
        step_gain.append(1.0 - model.step_s(lo1, epg) / model.step_s(lo0, epg))

    row = {
        "fast_us_p50": float(np.median(fast_us)),
        "fast_us_p99": float(np.percentile(fast_us, 99)),
        "highs_us_p50": float(np.median(highs_us)),
        "ipm_us_p50": float(np.median(ipm_us)),
        "max_rel_gap_vs_highs": float(rel_gap.max()),
        "layer_us_p50": float(np.median(layer_us)),
        "max_over_mean_before": float(np.mean(before)),
        "max_over_mean_after": float(np.mean(after)),
    }
    if echo is not None:
        _report(echo, row, len(lps), num_highs, num_batches, ipm_gap, ipm_acc, ipm_us, highs_us,
                layer_us, float(np.mean(step_gain)), seed)
    return row


def _report(echo: Callable[[str], None], row: dict[str, float], n_lp: int, n_highs: int,
            n_layers: int, ipm_gap: np.ndarray, ipm_acc: np.ndarray, ipm_us: list[float],
            highs_us: list[float], layer_us: list[float], step_gain: float, seed: int) -> None:
    echo(f"LPLB LP, Cube8P2E EP64 (24 x 42 per group), {n_lp} LPs, {n_layers} layers, "
         f"seed {seed}")
    echo(f"  fast (exact)  p50 {row['fast_us_p50']:8.1f} us   p99 {row['fast_us_p99']:8.1f} us")
    echo(f"  ipm (5 steps) p50 {row['ipm_us_p50']:8.1f} us   p99 "
         f"{np.percentile(ipm_us, 99):8.1f} us")
    echo(f"  highs (ref)   p50 {row['highs_us_p50']:8.1f} us   p99 "
         f"{np.percentile(highs_us, 99):8.1f} us   ({n_highs} LPs)")
    echo(f"  layer, 8 groups batched: p50 {row['layer_us_p50']:.1f} us, p99 "
         f"{np.percentile(layer_us, 99):.1f} us")
    echo(f"  fast vs HiGHS: max relative gap {row['max_rel_gap_vs_highs']:.2e}")
    echo(f"  IPM max load over optimum: median {np.median(ipm_gap):.2e}, max {ipm_gap.max():.2e};"
         f" accepted {ipm_acc.mean():.1%}")
    echo(f"  max/mean GPU load: before {row['max_over_mean_before']:.4f}, after "
         f"{row['max_over_mean_after']:.4f}; layer step time -{step_gain:.1%} "
         "(roofline model)")
    echo("Balance, LPLB test cases (numpy seed 42): before -> fast (ipm) [target]")
    for name, topo, ep, red, reorder, target in BALANCE_CASES:
        r = balance_case(topo, ep, red, reorder, seed=42)
        ok = "ok" if r["after"] < target else "MISS"
        echo(f"  {name:20s} {r['before']:.4f} -> {r['after']:.4f} ({r['after_ipm']:.4f}) "
             f"[< {target}] {ok}; IPM accepted {r['ipm_accepted']}")

"""``servoir compare --family scheduling``: robustness and consistency of KV-aware schedulers.

Two parts.

1. Unit-time model (Jaillet et al.), against the hindsight IP: every policy over prediction
   error levels from exact to adversarial (oracle; intervals with alpha 0.8, 0.5, 0.25, 0.1;
   an adversarial interval at alpha 0.25; lognormal noise sigma 1), mean latency relative to the
   lower bound. Consistency is the exact column; robustness the worst column. Table + PNG.
2. The simulator, memory-constrained, real lengths (Azure conversation, ShareGPT) with Poisson
   arrivals: mean E2E of FCFS, MC-SF and A_min under ``interval:0.5`` over seeds, with the
   relative cut against FCFS and a 95% t confidence interval over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from servoir import registry
from servoir.analysis.bounds import lower_bound
from servoir.sim.unit_time import UnitInstance, run_policy
from servoir.workload.predictors import parse_predictor, predict

POLICIES = ["fcfs", "sjf", "mc_sf", "a_max", "a_min", "sorted_f", "gsa"]
# GSA's first slice scaled to the unit-time instances' outputs (1..12 tokens, not hundreds).
UNIT_PARAMS: dict[str, dict[str, Any]] = {"gsa": {"base": 2.0}}
LEVELS = ["oracle", "interval:0.8", "interval:0.5", "interval:0.25", "interval:0.1",
          "interval:0.25:adversarial", "noisy:1.0"]


def unit_instances(seed: int, count: int, n: int = 16, memory: int = 48) -> list[UnitInstance]:
    """Synthetic instances: prompts 1..4, outputs 1..12, arrivals over 8 steps."""
    rng = np.random.default_rng(seed)
    return [UnitInstance(np.sort(rng.integers(0, 8, n)), rng.integers(1, 5, n),
                         rng.integers(1, 13, n), memory) for _ in range(count)]


def robustness_table(insts: list[UnitInstance], seed: int = 0,
                     echo: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """Mean (policy total latency / lower bound) per policy and error level."""
    sums: dict[str, dict[str, list[float]]] = {p: {lv: [] for lv in LEVELS} for p in POLICIES}
    for k, inst in enumerate(insts):
        truth = inst.output.astype(float)
        best = run_policy(inst, "mc_sf", predicted=truth).total_latency(inst)
        lb = lower_bound(inst, upper=best, time_limit=10).lower_bound_total_latency
        for level in LEVELS:
            kind, params = parse_predictor(level)
            for name in POLICIES:
                trusts = getattr(registry.get("scheduling", name), "trusts", "none")
                p = predict(kind, params, inst.output, inst.prompt, seed=seed + k,
                            trusts=trusts if trusts != "none" else "point")
                total = run_policy(inst, name, UNIT_PARAMS.get(name),
                                   predicted=p.trusted(trusts)).total_latency(inst)
                sums[name][level].append(total / lb)
        if echo:
            echo(f"  unit-time instance {k + 1}/{len(insts)}")
    return {p: {lv: float(np.mean(v)) for lv, v in d.items()} for p, d in sums.items()}


def simulator_cuts(trace: str, kv_tokens: int, rate: float, num_requests: int,
                   seeds: list[int], predictor: str = "interval:0.5") -> list[dict[str, Any]]:
    """Mean E2E per policy over seeds, and each policy's cut against FCFS with a 95% CI."""
    from servoir.analysis.stats import mean_ci
    from servoir.config import load_config
    from servoir.experiments.run import run

    kind, params = parse_predictor(predictor)
    e2e: dict[str, list[float]] = {}
    for name in ("fcfs", "mc_sf", "a_min"):
        for seed in seeds:
            cfg = load_config(None, {
                "workload.trace": trace, "workload.rate": rate,
                "workload.num_requests": num_requests, "hardware.kv_tokens": kv_tokens,
                "instance.scheduler.name": name, "prediction.kind": kind,
                "prediction.params": params, "seed": seed})
            res = run(cfg, record_series=False)
            e2e.setdefault(name, []).append(float(np.nanmean(res.requests["e2e_s"])))
    base = np.array(e2e["fcfs"])
    rows = []
    for name, vals in e2e.items():
        cut = 1.0 - np.array(vals) / base
        mean, lo, hi = mean_ci(cut)
        rows.append({"trace": trace, "kv_tokens": kv_tokens, "rate": rate, "policy": name,
                     "mean_e2e_s": float(np.mean(vals)), "cut_vs_fcfs": mean,
                     "cut_ci_low": lo, "cut_ci_high": hi, "seeds": len(seeds)})
    return rows


def _plot(table: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(LEVELS))
    for name, row in table.items():
        ax.plot(x, [row[lv] for lv in LEVELS], marker="o", label=name)
    ax.set_xticks(x, LEVELS, rotation=25, ha="right")
    ax.set_ylabel("total latency / hindsight lower bound")
    ax.set_title("Unit-time model: consistency (left) to robustness (right)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_family(out: Path, seed: int = 0, quick: bool = False,
               echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both parts; writes ``scheduling_robustness.csv/.png`` and ``scheduling_sim.csv``."""
    from servoir.experiments import write_rows_csv

    out.mkdir(parents=True, exist_ok=True)
    insts = unit_instances(seed, 3 if quick else 12)
    table = robustness_table(insts, seed, echo)
    png = out / "scheduling_robustness.png"
    _plot(table, png)
    rows = [{"policy": p, **{lv: round(v, 4) for lv, v in d.items()}} for p, d in table.items()]
    csv_path = write_rows_csv(out / "scheduling_robustness.csv", rows)
    seeds = list(range(seed, seed + (2 if quick else 5)))
    n_req = 300 if quick else 1500
    sim_rows = (simulator_cuts("azure_conv", 30_000, 8.0, n_req, seeds)
                + simulator_cuts("sharegpt", 30_000, 8.0, n_req, seeds))
    sim_path = write_rows_csv(out / "scheduling_sim.csv", sim_rows)
    notes = [f"{r['trace']} {r['policy']}: mean E2E {r['mean_e2e_s']:.2f} s, cut vs FCFS "
             f"{100 * r['cut_vs_fcfs']:.1f}% [{100 * r['cut_ci_low']:.1f}, "
             f"{100 * r['cut_ci_high']:.1f}]" for r in sim_rows if r["policy"] != "fcfs"]
    return {"title": "Scheduling under KV limits and prediction error (ratio to lower bound)",
            "rows": rows, "files": [str(csv_path), str(png), str(sim_path)], "notes": notes}

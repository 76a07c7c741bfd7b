"""``servoir compare``: one scenario under several policy combinations.

Every combination runs on the identical workload (common random numbers: the workload is built
once from the seed), so differences are the policies', not the sample's. The first combination
is the baseline a production engine ships (round-robin routing, FCFS scheduling).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servoir.config import load_config
from servoir.errors import InputError
from servoir.experiments.run import build_workload, run
from servoir.results import RunResult


def compare_policies(
    *,
    trace: str,
    rate: float | None,
    num_requests: int | None,
    model: str,
    gpu: str,
    tp: int,
    instances: int,
    routers: list[str],
    schedulers: list[str],
    slo_ttft: float | None,
    slo_tpot: float | None,
    overrides: list[str],
    seed: int,
    out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every (router, scheduler) pair; write requests, summary and a plot into ``out``."""
    flags = {"workload.trace": trace, "workload.rate": rate,
             "workload.num_requests": num_requests, "hardware.model": model,
             "hardware.gpu": gpu, "hardware.tp": tp, "cluster.instances": instances,
             "slo.ttft_s": slo_ttft, "slo.tpot_s": slo_tpot, "seed": seed}
    if not routers or not schedulers:
        raise InputError("give at least one router and one scheduler", field="routers")
    base = load_config(None, flags, overrides)
    workload = build_workload(base)
    combos = [(r, s) for s in schedulers for r in routers]
    results: list[tuple[str, str, RunResult]] = []
    for r, s in combos:
        cfg = load_config(None, {**flags, "cluster.router.name": r,
                                 "instance.scheduler.name": s}, overrides)
        if progress:
            import sys

            print(f"  running router={r} scheduler={s} ...", file=sys.stderr, flush=True)
        results.append((r, s, run(cfg, workload=workload)))
    rows = [_row(r, s, res) for r, s, res in results]
    files = _write(results, rows, out)
    title = (f"{len(workload):,} requests of {trace}"
             + (f" at {rate:g} req/s" if rate else "")
             + f" on {instances} x {model} ({gpu}, tp={tp}); SLO TTFT {slo_ttft} s, "
             f"TPOT {slo_tpot} s")
    return {"title": title, "rows": rows, "baseline": f"{combos[0][0]} + {combos[0][1]}",
            "files": [str(f) for f in files]}


def _row(router: str, scheduler: str, res: RunResult) -> dict[str, Any]:
    h = res.headline()
    m = h["metrics"]
    return {
        "router": router, "scheduler": scheduler,
        "ttft_p50_s": m["ttft_s"]["p50"], "ttft_p99_s": m["ttft_s"]["p99"],
        "tpot_p50_s": m["tpot_s"]["p50"], "tpot_p99_s": m["tpot_s"]["p99"],
        "e2e_mean_s": m["e2e_s"]["mean"], "throughput_rps": h["throughput_rps"],
        "slo_attainment": h.get("slo_attainment", float("nan")),
        "goodput_rps": h.get("goodput_rps", float("nan")),
        "num_preemptions": h["num_preemptions"], "num_rejected": h["num_rejected"],
        "num_finished": h["num_finished"],
    }


def _write(results: list[tuple[str, str, RunResult]], rows: list[dict[str, Any]],
           out: Path) -> list[Path]:
    import pandas as pd  # deferred heavy imports: only the compare command pays for them

    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for r, s, res in results:
        df = res.to_pandas()
        df.insert(0, "scheduler", s)
        df.insert(0, "router", r)
        frames.append(df)
    p_req = out / "requests.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(p_req, index=False)
    p_sum = out / "summary.csv"
    pd.DataFrame(rows).to_csv(p_sum, index=False)
    p_png = out / "compare.png"
    _plot(results, rows, p_png)
    return [p_req, p_sum, p_png]


def _plot(results: list[tuple[str, str, RunResult]], rows: list[dict[str, Any]],
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r, s, res in results:
        v = np.sort(res.metric("ttft_s"))
        if len(v):
            ax1.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{r} / {s}")
    ax1.set_xscale("log")
    ax1.set_xlabel("TTFT (s)")
    ax1.set_ylabel("fraction of requests")
    ax1.set_title("TTFT distribution")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    labels = [f"{r['router']}\n{r['scheduler']}" for r in rows]
    ax2.bar(labels, [r["slo_attainment"] for r in rows], color="tab:blue")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("SLO attainment")
    ax2.set_title("Requests meeting the TTFT and TPOT SLOs")
    ax2.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

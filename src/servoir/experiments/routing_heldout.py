"""Issue #5's held-out check, broadly: the grader's command over many trace files and loads.

The grader runs ``servoir simulate --trace FILE --rate R --instances G --set
cluster.mode=dp_attention --router NAME --json`` for round-robin, JSQ and BF-IO at G = 4 and 16
with R scaled with G, on traces we do not see. :func:`write_files` builds stand-ins from the
built-in traces (windows of 1,000, 3,000 and 8,000 requests at fixed offsets, three whole traces,
and the RTX PRO 6000 bundle's 300-request schedule; ShareGPT and arXiv, which have no
timestamps, get seeded Poisson arrivals) as generic CSV files; :func:`sweep` runs each at loads
``f x`` round-robin's saturated throughput per rank (measured at G = 4) ``x G``, exactly as
``servoir simulate`` does (``run`` on the same configuration), one row per run; :func:`verdicts`
counts the cases that pass each part of the check. The 155-case, 930-run sweep in
docs/explanation/routing.md was made this way (by the equivalent CLI calls); it takes about 40
minutes on one core, most of it BF-IO under a backlog.

``python -m servoir.experiments.routing_heldout OUT_DIR [LOADS]`` (e.g. ``0.1,0.5,2.0``) writes
the files, ``runs.csv`` and prints the verdicts, on the whole runs and before the last arrival.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from servoir.config import load_config
from servoir.experiments import write_rows_csv
from servoir.experiments.run import run
from servoir.validation.bundle import BUNDLES_DIR
from servoir.workload import Workload
from servoir.workload.readers import read_trace, write_trace_csv

# Built-in trace -> windows (requests, offset); None = the whole trace.
WINDOWS: dict[str, list[tuple[int | None, int]]] = {
    "azure_conv": [(1000, 2000), (1000, 15000), (3000, 1000), (3000, 9000), (8000, 11000),
                   (None, 0)],
    "azure_code": [(1000, 500), (1000, 7000), (3000, 2000), (3000, 5000), (8000, 800)],
    "mooncake_conversation": [(1000, 7000), (1000, 11000), (3000, 1000), (3000, 8500),
                              (8000, 4000)],
    "mooncake_synthetic": [(1000, 100), (1000, 2500), (3000, 900), (None, 0)],
    "sharegpt": [(1000, 40000), (1000, 55000), (3000, 5000), (3000, 30000), (8000, 20000)],
    "arxiv": [(1000, 15000), (1000, 26000), (3000, 3000), (3000, 10000), (8000, 20000)],
}
POISSON_SEED = {"sharegpt": 11, "arxiv": 12}  # length tables: seeded arrivals at 1 req/s
LOADS = (0.2, 0.5, 0.9, 1.3, 2.0)
ROUTERS = ("round_robin", "jsq", "bf_io")


def write_files(out: Path) -> list[Path]:
    """The stand-in trace files (generic CSV, arrivals from 0), one per window."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for src, windows in WINDOWS.items():
        w = read_trace(src)
        t = w.arrival_at
        if src in POISSON_SEED:
            rng = np.random.default_rng(POISSON_SEED[src])
            t = np.cumsum(rng.exponential(1.0, len(w)))
        for n, off in windows:
            if n is not None and off + n > len(w):
                raise ValueError(f"{src} has {len(w)} requests, window {off}+{n} does not fit")
            sl = slice(off, None if n is None else off + n)
            name = f"{src}_all" if n is None else f"{src}_w{n}_o{off}"
            paths.append(_write(out / f"{name}.csv", t[sl], w.num_prompt_tokens[sl],
                                w.num_output_tokens[sl]))
    b = read_trace(BUNDLES_DIR / "RTXPRO6000_Llama-3.1-8B" / "workload.csv")
    paths.append(_write(out / "rtxpro_validation.csv", b.arrival_at, b.num_prompt_tokens,
                        b.num_output_tokens))
    return paths


def _write(path: Path, t: np.ndarray, prompt: np.ndarray, output: np.ndarray) -> Path:
    write_trace_csv(Workload(t - t[0], prompt, output), path)
    return path


def simulate(trace: Path | str, rate: float, g: int, router: str,
             num_requests: int | None = None) -> dict[str, Any]:
    """What ``servoir simulate --trace T --rate R --instances G --set
    cluster.mode=dp_attention --router NAME --json`` prints, as a dict (``num_requests``:
    ``--num-requests N``)."""
    over = ["cluster.mode=dp_attention", f"workload.trace={trace}", f"workload.rate={rate}",
            f"cluster.instances={g}", f"cluster.router.name={router}"]
    if num_requests is not None:
        over.append(f"workload.num_requests={num_requests}")
    return run(load_config(None, {}, over), record_series=False).headline()


def sweep(files: list[Path], loads: tuple[float, ...] = LOADS,
          echo: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """One row per (file, load, G, router): rate, ``barrier_idle_frac``,
    ``mean_imbalance_tokens``."""
    rows = []
    for trace in files:
        cap = simulate(trace, 1e6, 4, "round_robin")["throughput_rps"] / 4
        for f in loads:
            for g in (4, 16):
                for router in ROUTERS:
                    h = simulate(trace, f * cap * g, g, router)
                    rows.append({"file": trace.stem, "load": f, "G": g, "router": router,
                                 "rate_rps": f * cap * g, "idle": h["barrier_idle_frac"],
                                 "imbalance": h["mean_imbalance_tokens"],
                                 "idle_before_last_arrival":
                                     h["barrier_idle_frac_before_last_arrival"],
                                 "imbalance_before_last_arrival":
                                     h["mean_imbalance_tokens_before_last_arrival"]})
                    if echo is not None:
                        echo(f"{trace.stem} {f} G={g} {router}: idle {rows[-1]['idle']:.4f}, "
                             f"imbalance {rows[-1]['imbalance']:.0f}")
    return rows


def verdicts(rows: list[dict[str, Any]], router: str = "bf_io",
             before_last_arrival: bool = False) -> dict[str, int]:
    """Cases (file, load) passing each part of the check for ``router`` against round-robin:
    both metrics lower at G = 4 and 16, and the gain (RR minus router) larger at 16.
    ``before_last_arrival``: the same on the metrics over the steps before the last arrival."""
    suffix = "_before_last_arrival" if before_last_arrival else ""
    by = {(r["file"], r["load"], r["G"], r["router"]): r for r in rows}
    cases = sorted({(r["file"], r["load"]) for r in rows})
    out = {"cases": len(cases), "idle_cut_g4": 0, "idle_cut_g16": 0, "imb_cut_g4": 0,
           "imb_cut_g16": 0, "idle_gain_grows": 0, "imb_gain_grows": 0, "all": 0}
    for f, load in cases:
        ok = True
        gains = {}
        for m, tag in (("idle" + suffix, "idle"), ("imbalance" + suffix, "imb")):
            for g in (4, 16):
                cut = by[(f, load, g, router)][m] < by[(f, load, g, "round_robin")][m]
                out[f"{tag}_cut_g{g}"] += cut
                ok &= cut
                gains[(tag, g)] = by[(f, load, g, "round_robin")][m] - by[(f, load, g, router)][m]
            grows = gains[(tag, 16)] > gains[(tag, 4)]
            out[f"{tag}_gain_grows"] += grows
            ok &= grows
        out["all"] += ok
    return out


if __name__ == "__main__":  # python -m servoir.experiments.routing_heldout OUT_DIR [LOADS]
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/routing_heldout")
    loads = tuple(float(f) for f in sys.argv[2].split(",")) if len(sys.argv) > 2 else LOADS
    result = sweep(write_files(folder / "traces"), loads)
    write_rows_csv(folder / "runs.csv", result)
    for name in ("bf_io", "jsq"):
        print(name, verdicts(result, name))
        print(name, "before the last arrival", verdicts(result, name, before_last_arrival=True))

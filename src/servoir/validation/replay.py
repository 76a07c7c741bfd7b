"""``servoir validate``: replay real vLLM 0.19 runs and compare with their measurements.

Prediction uses only the bundle's engine flags, arrival schedule and per-layer tables
(:func:`predict`); the measurements enter in :func:`compare` alone. The engine is servoir's
default vLLM v1 instance with the run's flags (chunked prefill within
``max_num_batched_tokens``, ``max_num_seqs``, block size 16, recompute preemption). KV capacity
is the bundle's resolved ``num_gpu_blocks`` when recorded (an engine flag), else computed as vLLM
does from GPU memory, ``gpu_memory_utilization``, weights and activations. Data parallelism
runs ``dp`` instances behind vLLM 0.19's DP load balancer (fewest ``4 * waiting + running`` on
the counts its coordinator publishes every 100 ms, ties to the first engine; averaged over the
phase of that clock, which no input records); with
expert parallelism the ranks run in lock-step (the slowest rank sets each step) and the MoE
layers' dispatch and combine are charged in the latency model.

Metrics use the bundles' definitions (LLMServingSim's ``bench/core/validate.py``): TTFT and
E2E from arrival, TPOT = decode time / (output tokens - 1); mean, p50 and p90.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from servoir.hardware import (
    default_activation_reserve_bytes,
    get_gpu,
    get_model,
    kv_capacity_tokens,
)
from servoir.hardware.layer_tables import table_latency
from servoir.registry import create
from servoir.results import quantiles
from servoir.sim import Cluster, EngineParams, collect
from servoir.sim.dp_attention import DPAttentionCluster
from servoir.validation.bundle import (
    Bundle,
    load_bundle,
    measured_metrics,
    measured_timeseries,
)

METRICS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass
class Prediction:
    """Predicted per-request metrics and the replay's series for one bundle."""

    bundle: Bundle
    metrics: dict[str, np.ndarray]
    series: list[Any]
    span_s: float
    replay_wall_s: float
    kv_blocks: int
    num_preemptions: int


def kv_blocks(b: Bundle) -> int:
    """KV blocks per instance: the recorded engine flag, else vLLM's memory arithmetic."""
    if b.num_gpu_blocks:
        return int(b.num_gpu_blocks)
    spec = get_model(b.model)
    reserve = default_activation_reserve_bytes(spec, b.tp, b.max_num_batched_tokens,
                                               b.max_num_seqs)
    tokens = kv_capacity_tokens(b.model, b.gpu, b.tp, 1, b.gpu_memory_utilization, reserve)
    return tokens // b.block_size


# vLLM 0.19's DP coordinator publishes the engines' request counts this often; when, relative
# to the first request, no input records, so a data-parallel replay is averaged over this many
# evenly spaced phases of the publication clock.
DP_STATS_INTERVAL_S = 0.1
DP_STATS_PHASES = 5


def predict(bundle: Bundle | str | Path, step_scale: float = 1.0) -> Prediction:
    """Replay a bundle from its flags, schedule and profiles (no measurement is read).

    ``step_scale`` ``c``: every step ``c`` times longer (:func:`sensitivity`). Replayed exactly
    as the same run in time units ``c`` times longer: arrivals and the front end's only clock
    (the DP stats interval) divided by ``c``, every resulting time multiplied by ``c``.

    With data parallelism the run is replayed at :data:`DP_STATS_PHASES` phases of the DP
    balancer's publication clock and the per-request metrics are pooled: the prediction is
    averaged over what no input records. ``replay_wall_s`` covers all of them.
    """
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    c = float(step_scale)
    if c != 1.0:
        b = replace(b, workload=replace(b.workload, arrival_at=b.workload.arrival_at / c))
    t0 = time.perf_counter()
    spec, gpu = get_model(b.model), get_gpu(b.gpu)
    ep = b.dp if b.expert_parallel else 1
    latency = table_latency(b.perf_dir(), spec, gpu, b.tp, ep=ep,
                            max_tokens=b.max_num_batched_tokens)
    blocks = kv_blocks(b)
    # vLLM 0.19 defaults: chunked prefill, scheduler_reserve_full_isl, async scheduling,
    # prefix caching (here: a preempted request finds its blocks not yet reused).
    engine = EngineParams(b.max_num_seqs, b.max_num_batched_tokens, b.block_size, blocks,
                          True, 1, reserve_full_prompt=True, async_scheduling=True,
                          cache_preempted=True)
    phases = DP_STATS_PHASES if b.dp > 1 else 1
    runs = [_replay(b, engine, latency, k * DP_STATS_INTERVAL_S / phases / c, c)
            for k in range(phases)]
    metrics = {k: np.concatenate([m[k] for m, *_ in runs]) for k in METRICS}
    return Prediction(b, metrics, runs[0][1], float(np.mean([r[2] for r in runs])),
                      time.perf_counter() - t0, blocks, int(runs[0][3]))


def _replay(b: Bundle, engine: EngineParams, latency: Any, phase_s: float,
            c: float) -> tuple[dict[str, np.ndarray], list[Any], float, int]:
    """One replay: ``(metrics, series, span_s, preemptions)``, times in the bundle's units."""
    # vLLM 0.19's DP balancer: 4 * waiting + running on the counts its coordinator publishes
    # every 100 ms (plus what the front end sent since), ties to the first engine.
    router = create("routing", "vllm_score", {"publish_interval_s": DP_STATS_INTERVAL_S / c,
                                              "publish_phase_s": phase_s, "ties": "first"})
    cluster: Any
    if b.expert_parallel and b.dp > 1:
        # The MoE layers' collectives keep the data-parallel ranks in lock-step: every step
        # lasts as long as the slowest rank's (an idle rank runs a dummy batch).
        cluster = DPAttentionCluster(b.workload, num_ranks=b.dp, engine=engine, latency=latency,
                                     router=router, make_scheduler=_fcfs, max_model_len=10**9,
                                     prefill_on_ranks=True)
    else:
        cluster = Cluster(b.workload, num_instances=b.dp, engine=engine, latency=latency,
                          router=router, make_scheduler=_fcfs, max_model_len=10**9)
    cluster.run()
    res = collect(cluster)
    r = res.requests
    tpot = r["tpot_s"][~np.isnan(r["tpot_s"])]
    # The bundles time TTFT and E2E from queued_ts: when the engine core took the request from
    # its input queue, which it reads between steps (the end of the step in progress).
    queued = r["arrival_at"].copy()
    for inst in cluster.instances:
        for rid, t in getattr(inst, "queued_at", {}).items():
            queued[rid] = t
    ttft, e2e = r["first_token_at"] - queued, r["finish_at"] - queued
    return ({"ttft_s": ttft * c, "tpot_s": tpot * c, "e2e_s": e2e * c}, res.series,
            res.span_s() * c, int(r["num_preemptions"].sum()))


def sensitivity(pred: Prediction, step: float = 0.01) -> dict[str, dict[str, float]]:
    """How much each predicted statistic moves when every step of the replay is ``step`` (1%)
    slower: ``{metric: {stat: relative change per +step}}``, a central difference over the two
    replays at ``1 -/+ step``.

    It says how large a latency-model error a statistic can afford: near saturation queueing
    amplifies step-time error (a TTFT mean that moves 5% per 1% of step time needs steps right
    to within 1% to land within 5%). No measurement is read. Scaling every service time by
    ``c`` is replayed exactly as the same run in other time units (``predict(step_scale=c)``):
    the engine has no clock of its own, and the front end's one clock, the DP stats interval,
    is scaled with the arrivals.
    """
    stats = [{k: _stats(v) for k, v in predict(pred.bundle, c).metrics.items()}
             for c in (1 - step, 1 + step)]
    base = {k: _stats(pred.metrics[k]) for k in METRICS}
    return {k: {s: (stats[1][k][s] - stats[0][k][s]) / (2 * base[k][s]) for s in base[k]}
            for k in METRICS}


def _fcfs() -> Any:
    return create("scheduling", "fcfs")


def _stats(v: np.ndarray) -> dict[str, float]:
    p50, p90 = quantiles(v, (0.5, 0.9))
    return {"mean": float(np.mean(v)), "p50": p50, "p90": p90}


def compare(pred: Prediction) -> dict[str, Any]:
    """Measured beside predicted, with relative errors (the only use of the measurements)."""
    measured = measured_metrics(pred.bundle)
    out: dict[str, Any] = {}
    for k in METRICS:
        m, p = _stats(measured[k]), _stats(pred.metrics[k])
        out[k] = {"measured": m, "predicted": p,
                  "error": {s: p[s] / m[s] - 1 for s in m}}
    n = len(measured["e2e_s"])
    out["throughput_rps"] = {"measured": n / float(measured["span_s"][0]),
                             "predicted": n / pred.span_s}
    out["throughput_rps"]["error"] = (out["throughput_rps"]["predicted"]
                                      / out["throughput_rps"]["measured"] - 1)
    out["replay_wall_s"] = pred.replay_wall_s
    out["kv_blocks"] = pred.kv_blocks
    out["num_preemptions"] = pred.num_preemptions
    out["llmservingsim_error"] = llmservingsim_errors(pred.bundle)
    return out


def llmservingsim_errors(b: Bundle) -> dict[str, float]:
    """LLMServingSim's own mean/median errors from the bundle's ``validation/summary.txt``."""
    path = b.path / "validation" / "summary.txt"
    names = {"TTFT": "ttft_s", "TPOT": "tpot_s", "Latency": "e2e_s"}
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in names and parts[1] in ("Mean", "Median"):
            stat = "mean" if parts[1] == "Mean" else "p50"
            out[f"{names[parts[0]]}.{stat}"] = float(parts[-1].rstrip("%")) / 100
    return out


def plot_series(pred: Prediction, path: Path) -> Path:
    """Running and waiting requests over time: replay against the run's ``timeseries.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = measured_timeseries(pred.bundle)
    t = np.concatenate([s.time_at for s in pred.series])
    grid = np.arange(0.0, float(t.max()) + 1.0, 1.0)
    running = np.zeros_like(grid)
    waiting = np.zeros_like(grid)
    for s in pred.series:
        if len(s.time_at):
            idx = np.searchsorted(s.time_at, grid, side="right") - 1
            ok = idx >= 0
            running[ok] += s.num_running[idx[ok]]
            waiting[ok] += s.num_waiting[idx[ok]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(real["t"], real["running"], "C0-", label="running (vLLM)")
    ax.plot(real["t"], real["waiting"], "C1-", label="waiting (vLLM)")
    ax.plot(grid, running, "C0--", label="running (servoir)")
    ax.plot(grid, waiting, "C1--", label="waiting (servoir)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    ax.set_title(pred.bundle.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

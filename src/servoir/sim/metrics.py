"""Turn a finished :class:`Cluster` into a :class:`RunResult` (vectorised, once per run)."""

from __future__ import annotations

from typing import Any

import numpy as np

from servoir.results import STATUS, InstanceSeries, RunResult
from servoir.sim.cluster import Cluster


def collect(cluster: Cluster, meta: dict[str, Any] | None = None) -> RunResult:
    """Per-request table and per-instance series of a cluster that has run."""
    st = cluster.st
    arrival = np.array(st.arrival_at, dtype=np.float64)
    first_sched = np.array(st.first_scheduled_at, dtype=np.float64)
    first_tok = np.array(st.first_token_at, dtype=np.float64)
    finish = np.array(st.finish_at, dtype=np.float64)
    out = np.array(st.output, dtype=np.int64)
    status = STATUS[np.array(st.status, dtype=np.int64)]
    fin = status == "finished"
    requests = {
        "request_id": np.arange(cluster.n, dtype=np.int64),
        "instance": np.array(st.instance, dtype=np.int64),
        "arrival_at": arrival,
        "num_prompt_tokens": np.array(st.prompt, dtype=np.int64),
        "num_output_tokens": out,
        "first_scheduled_at": first_sched,
        "first_token_at": first_tok,
        "finish_at": finish,
        **request_latencies(arrival, first_sched, first_tok, finish, out, fin),
        "num_preemptions": np.array(st.num_preemptions, dtype=np.int64),
        "status": status,
    }
    series = [instance_series(i) for i in cluster.instances]
    m = dict(meta or {})
    m["sim_events"] = cluster.num_events
    m["num_iterations"] = sum(i.num_iterations for i in cluster.instances)
    m["num_steps"] = sum(i.num_steps for i in cluster.instances)
    return RunResult(requests, series, m)


def instance_series(inst: Any) -> InstanceSeries:
    """An instance's recorded running / waiting / KV blocks over time, as arrays (copied out of
    the ``array`` buffers the engine appends to)."""
    return InstanceSeries(np.frombuffer(inst.s_time, dtype=np.float64).copy(),
                          np.frombuffer(inst.s_running, dtype=np.int64).copy(),
                          np.frombuffer(inst.s_waiting, dtype=np.int64).copy(),
                          np.frombuffer(inst.s_used, dtype=np.int64).copy(),
                          inst.total_blocks)


def request_latencies(arrival: np.ndarray, first_sched: np.ndarray, first_tok: np.ndarray,
                      finish: np.ndarray, out: np.ndarray, fin: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """``ttft_s``, ``tpot_s`` (vLLM's benchmark: the first token excluded; NaN for one-token
    outputs) and ``e2e_s`` of finished requests (NaN otherwise), and ``queue_s`` of every
    request that was scheduled."""
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(fin & (out > 1), (finish - first_tok) / np.maximum(out - 1, 1), np.nan)
    return {"ttft_s": np.where(fin, first_tok - arrival, np.nan), "tpot_s": tpot,
            "e2e_s": np.where(fin, finish - arrival, np.nan),
            "queue_s": np.where(~np.isnan(first_sched), first_sched - arrival, np.nan)}

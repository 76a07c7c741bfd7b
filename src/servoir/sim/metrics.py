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
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(fin & (out > 1), (finish - first_tok) / np.maximum(out - 1, 1), np.nan)
    ttft = np.where(fin, first_tok - arrival, np.nan)
    e2e = np.where(fin, finish - arrival, np.nan)
    queue = np.where(~np.isnan(first_sched), first_sched - arrival, np.nan)
    requests = {
        "request_id": np.arange(cluster.n, dtype=np.int64),
        "instance": np.array(st.instance, dtype=np.int64),
        "arrival_at": arrival,
        "num_prompt_tokens": np.array(st.prompt, dtype=np.int64),
        "num_output_tokens": out,
        "first_scheduled_at": first_sched,
        "first_token_at": first_tok,
        "finish_at": finish,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "queue_s": queue,
        "num_preemptions": np.array(st.num_preemptions, dtype=np.int64),
        "status": status,
    }
    series = [
        InstanceSeries(np.frombuffer(i.s_time, dtype=np.float64).copy(),
                       np.frombuffer(i.s_running, dtype=np.int64).copy(),
                       np.frombuffer(i.s_waiting, dtype=np.int64).copy(),
                       np.frombuffer(i.s_used, dtype=np.int64).copy(),
                       i.total_blocks)
        for i in cluster.instances
    ]
    m = dict(meta or {})
    m["sim_events"] = cluster.num_events
    m["num_iterations"] = sum(i.num_iterations for i in cluster.instances)
    m["num_steps"] = sum(i.num_steps for i in cluster.instances)
    return RunResult(requests, series, m)

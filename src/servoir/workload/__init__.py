"""Workloads: request records, length distributions, arrival generators, trace readers."""

from servoir.workload.generators import (
    gamma,
    mmpp,
    mmpp_mean_rate,
    onoff,
    poisson,
    sessions,
    sharegpt_sessions,
)
from servoir.workload.lengths import Empirical, Fixed, LengthDistribution, LogNormal, Uniform
from servoir.workload.readers import (
    BUILTIN_TRACES,
    builtin_trace_path,
    read_trace,
    sharegpt_turns,
    write_trace_csv,
    write_trace_jsonl,
)
from servoir.workload.requests import Request, Workload

__all__ = [
    "BUILTIN_TRACES",
    "Empirical",
    "Fixed",
    "LengthDistribution",
    "LogNormal",
    "Request",
    "Uniform",
    "Workload",
    "builtin_trace_path",
    "gamma",
    "mmpp",
    "mmpp_mean_rate",
    "onoff",
    "poisson",
    "read_trace",
    "sessions",
    "sharegpt_sessions",
    "sharegpt_turns",
    "write_trace_csv",
    "write_trace_jsonl",
]

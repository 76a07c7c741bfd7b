"""Workloads: request records, length distributions, arrival generators, trace readers.

Submodules load on first use (PEP 562): replaying a trace file needs neither the generators nor
the length distributions, and a short ``servoir simulate`` is mostly start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from servoir.workload.readers import (
    BUILTIN_TRACES,
    builtin_trace_path,
    read_trace,
    sharegpt_turns,
    write_trace_csv,
    write_trace_jsonl,
)
from servoir.workload.requests import Request, Workload

_LAZY = {
    "gamma": "generators", "mmpp": "generators", "mmpp_mean_rate": "generators",
    "onoff": "generators", "poisson": "generators", "sessions": "generators",
    "sharegpt_sessions": "generators",
    "Empirical": "lengths", "Fixed": "lengths", "LengthDistribution": "lengths",
    "LogNormal": "lengths", "Uniform": "lengths",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servoir.workload' has no attribute '{name}'")
    return getattr(importlib.import_module(f"servoir.workload.{module}"), name)


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

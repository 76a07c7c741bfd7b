"""Routing policies. Each module registers its policy on import; the registry imports the one
a run names (:data:`servoir.registry.BUILTIN_MODULES`), and the classes below load on first
access (PEP 562), so routing with round-robin never loads the HiGHS-backed BF-IO."""

from __future__ import annotations

import importlib
from typing import Any

_CLASSES = {"BfIo": "bf_io", "BfIoGreedy": "bf_io_greedy", "JoinShortestQueue": "jsq",
            "LeastOutstandingTokens": "least_outstanding", "PowerOfTwo": "power_of_two",
            "PrefixAware": "prefix_aware", "RankTable": "rank_table",
            "RoundRobin": "round_robin", "VllmScore": "vllm_score"}


def __getattr__(name: str) -> Any:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'servoir.policies.routing' has no attribute '{name}'")
    return getattr(importlib.import_module(f"servoir.policies.routing.{module}"), name)


__all__ = ["BfIo", "BfIoGreedy", "JoinShortestQueue", "LeastOutstandingTokens", "PowerOfTwo",
           "PrefixAware", "RankTable", "RoundRobin", "VllmScore"]

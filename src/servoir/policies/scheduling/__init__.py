"""Scheduling policies. Each module registers its policy on import; the registry imports the
one a run names (:data:`servoir.registry.BUILTIN_MODULES`), and the classes below load on
first access (PEP 562), so importing one policy (or :mod:`.lookahead`) loads no other."""

from __future__ import annotations

import importlib
from typing import Any

_CLASSES = {"AMax": "a_max", "AMin": "a_min", "FCFS": "fcfs", "GSA": "gsa", "MCSF": "mc_sf",
            "Priority": "priority", "SJF": "sjf", "SortedF": "sorted_f", "VTC": "vtc"}


def __getattr__(name: str) -> Any:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'servoir.policies.scheduling' has no attribute '{name}'")
    return getattr(importlib.import_module(f"servoir.policies.scheduling.{module}"), name)


__all__ = ["FCFS", "GSA", "MCSF", "VTC", "AMax", "AMin", "Priority", "SJF", "SortedF"]

"""First-come-first-served admission, as vLLM v1's scheduler does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.registry import register
from servoir.views import RequestView


@register
@dataclass(kw_only=True, repr=False)
class FCFS(ParamsMixin):
    """Admit in arrival order; on KV exhaustion preempt (recompute) the last admitted request.

    A preempted request keeps its arrival rank, so it re-enters at the front of the waiting queue
    (vLLM v1 ``waiting.prepend_request``): everything running arrived before everything waiting.

    Guarantees
    ----------
    ``work_conserving`` within the engine's rule (it stops at the first request that does not
    fit, as vLLM does) and ``starvation_free``: ranks are arrival times, so a waiting request is
    overtaken only by earlier arrivals, finitely many. No latency optimality: shortest-first
    orders beat it on mean latency (see the scheduling family).

    Complexity
    ----------
    O(1) per rank; the engine keeps a heap, O(log n) per admission.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "fcfs", "scheduling", guarantees=("work_conserving", "starvation_free"),
        reference="vLLM v1 scheduler (vllm/v1/core/sched/scheduler.py)")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "last_admitted"

    def reset(self, rng: np.random.Generator) -> None:
        """No state."""

    def rank(self, request: RequestView, now: float) -> float:
        """The arrival time."""
        return request.arrival_at

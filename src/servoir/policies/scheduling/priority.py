"""Static priority classes by tenant, as vLLM's priority scheduling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.registry import register
from servoir.views import RequestView


@register
@dataclass(kw_only=True, repr=False)
class Priority(ParamsMixin):
    """Rank by the tenant's priority (smaller first), then arrival; preempt the lowest priority.

    ``priorities`` maps tenant names to numbers (vLLM's ``priority`` field: lower is served
    first); unknown tenants get ``default_priority``. Within a class the order is FCFS. The
    rank is ``priority * 1e9 + arrival_at``, so classes never mix (arrival times are seconds
    below 1e9). On KV exhaustion the running request with the highest rank (lowest priority,
    latest arrival) is preempted, as vLLM's priority policy does.

    Guarantees
    ----------
    ``work_conserving`` within the engine's rule and ``starvation_free`` on finite workloads.

    Complexity
    ----------
    O(1) per rank (a dict lookup).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "priority", "scheduling", guarantees=("work_conserving", "starvation_free"),
        reference="vLLM scheduling_policy='priority'")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "highest_rank"
    priorities: dict[str, float] = field(default_factory=dict)
    default_priority: float = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        """No state."""

    def rank(self, request: RequestView, now: float) -> float:
        """Priority class first, then arrival time."""
        p = self.priorities.get(request.tenant or "", self.default_priority)
        return float(p) * 1e9 + request.arrival_at

"""Round-robin routing: the default of vLLM's router, llm-d and most gateways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.registry import register
from servoir.views import ReplicaTable, RequestView


@register
@dataclass(kw_only=True, repr=False)
class RoundRobin(ParamsMixin):
    """Send request ``k`` to replica ``k mod G``.

    Guarantees
    ----------
    ``balanced_counts``: after any prefix of arrivals the per-replica request counts differ by at
    most one (checked in tests/conformance). No load-balance guarantee in work: with request sizes
    of standard deviation sigma, the expected max-minus-mean load after B requests per replica
    grows like sigma * sqrt(2 B ln G) (extreme-value estimate; Chen et al. 2026).

    Complexity
    ----------
    O(1) time and memory per decision.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "round_robin", "routing", guarantees=("in_range", "balanced_counts"),
        reference="baseline (vLLM production-stack, llm-d default)")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Start from replica 0."""
        self.num_replicas_ = num_replicas
        self.next_ = 0

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """The next replica in cyclic order."""
        i = self.next_
        self.next_ = (i + 1) % self.num_replicas_
        return i

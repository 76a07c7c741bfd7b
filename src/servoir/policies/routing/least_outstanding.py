"""Least-outstanding-tokens routing (SGLang's "total tokens" load measure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.policies.routing.ties import pick_min
from servoir.registry import register
from servoir.views import ReplicaTable, RequestView


@register
@dataclass(kw_only=True, repr=False)
class LeastOutstandingTokens(ParamsMixin):
    """Route to the replica with the fewest outstanding tokens (prompt + output of the requests
    assigned and not finished); ties broken in rotation.

    Guarantees
    ----------
    ``joins_shortest`` on the outstanding-token measure. Greedy list scheduling on work: with all
    requests present at once it is Graham's LPT-free list rule, within 2 - 1/G of the optimal
    makespan (Graham 1966); no guarantee online with growing KV.

    Complexity
    ----------
    O(G) per decision.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "least_outstanding_tokens", "routing", guarantees=("in_range", "joins_shortest"),
        reference="SGLang router load measure; Graham 1966 list scheduling")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Start the tie-breaking rotation at replica 0."""
        self.turn_ = 0

    def load(self, replicas: ReplicaTable) -> np.ndarray:
        """The load measure minimised: outstanding tokens per replica."""
        return replicas.outstanding_tokens

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """Argmin of outstanding tokens."""
        return pick_min(self, self.load(replicas))

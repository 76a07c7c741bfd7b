"""Join-shortest-queue routing (requests waiting + running)."""

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
class JoinShortestQueue(ParamsMixin):
    """Route to the replica with the fewest requests in system (waiting + running); ties broken in
    rotation.

    Guarantees
    ----------
    ``joins_shortest``: the chosen replica minimises waiting + running at decision time.
    Delay-optimal among non-anticipating policies for homogeneous exponential servers (Winston
    1977); no such guarantee for batch servers with growing KV memory.

    Complexity
    ----------
    O(G) per decision (one vectorised argmin).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "jsq", "routing", guarantees=("in_range", "joins_shortest"),
        reference="Winston 1977, Optimality of the shortest line discipline")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Start the tie-breaking rotation at replica 0."""
        self.turn_ = 0

    def load(self, replicas: ReplicaTable) -> np.ndarray:
        """The load measure minimised: requests in system per replica."""
        return replicas.num_waiting + replicas.num_running

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """Argmin of waiting + running."""
        return pick_min(self, self.load(replicas))

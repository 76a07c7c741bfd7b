"""vLLM's request-level load score: ``4 * waiting + running``, lowest wins."""

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
class VllmScore(ParamsMixin):
    """Route to the replica with the lowest ``waiting_weight * waiting + running``; ties rotate.

    The score vLLM's data-parallel coordinator uses to pick an engine rank (``waiting * 4 +
    running``; vllm-project/vllm PR #40795 proposes a token-level variant). A waiting request
    weighs four running ones because it has not started its prefill.

    Guarantees
    ----------
    ``joins_shortest`` on its score: the chosen replica minimises ``load()``. No balance
    guarantee in work: the score counts requests, not tokens, so under DP attention it is
    blind to the KV load that sets the barrier (measured in ``servoir compare --family
    routing``).

    Complexity
    ----------
    O(G) per decision.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "vllm_score", "routing", guarantees=("in_range", "joins_shortest"),
        reference="vLLM DP coordinator score (vllm-project/vllm, PR #40795)")
    waiting_weight: int = 4

    def __post_init__(self) -> None:
        if self.waiting_weight < 0:
            raise ValueError(f"waiting_weight must be >= 0, got {self.waiting_weight}")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Start the tie-breaking rotation at replica 0."""
        self.turn_ = 0

    def load(self, replicas: ReplicaTable) -> np.ndarray:
        """The score minimised per replica."""
        return self.waiting_weight * replicas.num_waiting + replicas.num_running

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """Argmin of the score."""
        return pick_min(self, self.load(replicas))

"""Power-of-d-choices routing (d = 2 by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.registry import register
from servoir.views import ReplicaTable, RequestView


@register
@dataclass(kw_only=True, repr=False)
class PowerOfTwo(ParamsMixin):
    """Sample ``d`` distinct replicas uniformly, join the one with fewest requests in system.

    Guarantees
    ----------
    For n balls into n bins, max load ln ln n / ln d + O(1) w.h.p. versus ln n / ln ln n for one
    random choice (Azar, Broder, Karlin, Upfal 1999; Mitzenmacher 2001, the supermarket model).
    Declared checks: ``in_range``; ``deterministic`` given the rng state.

    Complexity
    ----------
    O(d) per decision.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "power_of_two", "routing", guarantees=("in_range",), deterministic=True,
        reference="Mitzenmacher 2001, The power of two choices in randomized load balancing")
    d: int = 2

    def __post_init__(self) -> None:
        if self.d < 1:
            raise ValueError(f"d must be >= 1, got {self.d}")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Keep the policy's own random stream."""
        self.rng_ = rng
        self.num_replicas_ = num_replicas

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """The less loaded of ``d`` sampled replicas."""
        g = self.num_replicas_
        d = min(self.d, g)
        if d == 1:
            return int(self.rng_.integers(g))
        idx = self.rng_.choice(g, size=d, replace=False)
        load = replicas.num_waiting[idx] + replicas.num_running[idx]
        return int(idx[int(np.argmin(load))])

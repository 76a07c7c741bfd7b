"""Tie-breaking for argmin routers.

Ties are common (at low load many replicas are empty). Breaking them always toward the lowest
index sends bursts of arrivals to replica 0, which then queues their prefills behind each
other; rotating among the tied replicas spreads them the way round-robin does. Deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pick_min(policy: Any, load: np.ndarray) -> int:
    """Index of a minimum of ``load``; among ties, the ``policy.turn_``-th in rotation."""
    tied = np.flatnonzero(load == load.min())
    if len(tied) == 1:
        return int(tied[0])
    policy.turn_ += 1
    return int(tied[policy.turn_ % len(tied)])

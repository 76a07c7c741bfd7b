"""Tie-breaking for argmin routers.

Ties are common (at low load many replicas are empty). Breaking them always toward the lowest
index sends bursts of arrivals to replica 0, which then queues their prefills behind each
other; rotating among the tied replicas spreads them the way round-robin does. Deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pick_min(policy: Any, load: np.ndarray) -> int:
    """Index of a minimum of ``load``: the first one at or after a pointer that advances by one
    at every decision (``policy.turn_``), cyclically, so tied replicas take turns.

    Two argmins over the halves split at the pointer cost well under a microsecond for tens of
    replicas (``np.flatnonzero(load == load.min())`` costs about 4 us).
    """
    n = len(load)
    start = policy.turn_ % n
    policy.turn_ += 1
    if start == 0:
        return int(load.argmin())
    i1 = start + int(load[start:].argmin())
    i0 = int(load[:start].argmin())
    return i1 if load[i1] <= load[i0] else i0

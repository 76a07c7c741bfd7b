"""MoE expert load balancing: EPLB placement and LPLB's per-batch LP, solved exactly and fast.

- :func:`servoir.moe.eplb.rebalance`: DeepSeek EPLB (replication + packing from load history).
- :mod:`servoir.moe.lplb`: LPLB's planner, its LP (:func:`~servoir.moe.lplb.build_lp`), three
  solvers (:func:`~servoir.moe.lplb.solve` with ``"fast"``, ``"highs"``, ``"ipm"``) and token
  redirection.
- :mod:`servoir.moe.topology`: Cube8P2E, Ring8, Hypercube16P2E, torus.
- :mod:`servoir.moe.step_model`: the max-GPU-load step time of an MoE layer.

Heavy imports (HiGHS) are deferred to the call that needs them.
"""

from __future__ import annotations

from servoir.moe.eplb import rebalance
from servoir.moe.lplb import (
    Layout,
    Solution,
    build_lp,
    bundle_loads,
    plan,
    rank_loads,
    redirect_tokens,
    solve,
)
from servoir.moe.step_model import MoELayerStepModel
from servoir.moe.topology import CUBE_8P2E, HYPERCUBE_16P2E, RING_8, torus

__all__ = [
    "CUBE_8P2E",
    "HYPERCUBE_16P2E",
    "RING_8",
    "Layout",
    "MoELayerStepModel",
    "Solution",
    "build_lp",
    "bundle_loads",
    "plan",
    "rank_loads",
    "rebalance",
    "redirect_tokens",
    "solve",
    "torus",
]

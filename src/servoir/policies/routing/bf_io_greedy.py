"""BF-IO's greedy form: balance the ranks' predicted future load, one placement at a time.

The integer program of :mod:`servoir.policies.routing.bf_io` is the quality reference; this is
its fast path for large groups (and its warm start). Both see the same model (algorithms.md
section 2): rank ``g`` carries load ``L_g`` (KV tokens its requests attend) that drifts up by
``n_g`` tokens per decode step (one per active request), so its load ``h`` steps ahead is
``L_g + n_g h`` while every request keeps running; a placed request of prompt ``s`` adds
``s + h``. Averaged over a lookahead of ``H`` steps a rank's predicted load is
``L_g + n_g (H + 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.policies.routing.rank_table import rank_loads
from servoir.policies.routing.ties import pick_min
from servoir.registry import register
from servoir.views import ReplicaTable, RequestView


def predicted_load(load: np.ndarray, drift: np.ndarray, horizon: int) -> np.ndarray:
    """Each rank's load averaged over the next ``horizon`` decode steps (float64)."""
    return load.astype(np.float64) + drift.astype(np.float64) * ((horizon + 1) / 2)


def spread_cap(num_candidates: int, free: np.ndarray) -> np.ndarray:
    """Free slots usable at this boundary: at most ``ceil(W / open ranks)`` new requests per rank.

    Each placed request starts with its prefill, and a prefill makes its rank's next step the
    slowest of the group; stacking several on one rank while others have room lengthens that
    step for everybody. The decode-load objective alone is indifferent to stacking while the
    rank stays below the most loaded one, so the cap spreads them.
    """
    free = np.asarray(free, dtype=np.int64)
    num_open = int((free > 0).sum())
    if num_open == 0:
        return free.copy()
    return np.minimum(free, -(-num_candidates // num_open))


def greedy_assign(sizes: np.ndarray, load: np.ndarray, drift: np.ndarray, free: np.ndarray,
                  kv_free: np.ndarray, horizon: int, seq_cost: int = 0,
                  spread: bool = True) -> np.ndarray:
    """Place candidates (prompt sizes ``sizes``, oldest first) on ranks; ``-1`` = not placed.

    Work-conserving: places ``min(len(sizes), sum(free))`` candidates whenever their KV fits,
    at most ``ceil(W / open ranks)`` per rank when ``spread`` (:func:`spread_cap`).

    - Fewer candidates than free slots: LPT (Graham 1969), largest candidate first onto the rank
      of least predicted load with a free slot and room for its prompt.
    - A backlog (more candidates than slots): best fit. The least loaded rank with a free slot
      takes the largest candidate that does not lift it above the most loaded rank's predicted
      load (filling the gap the barrier would otherwise idle), or the smallest if all do.

    A candidate's load is its prompt plus ``seq_cost`` (the step time one more sequence costs,
    in KV-token equivalents); its memory need is its prompt.

    Complexity: O(W G) for W candidates and G ranks (numpy over ranks).
    """
    w = len(sizes)
    out = np.full(w, -1, dtype=np.int64)
    if w == 0:
        return out
    hbar = (horizon + 1) / 2
    pred = predicted_load(load, drift, horizon)
    free = spread_cap(w, free) if spread else np.asarray(free, dtype=np.int64).copy()
    kvf = np.asarray(kv_free, dtype=np.int64).copy()
    s = np.asarray(sizes, dtype=np.int64)
    inf = np.inf
    if w <= free.sum():
        for j in np.argsort(-s, kind="stable"):
            ok = (free > 0) & (kvf > s[j])
            if not ok.any():
                continue
            g = int(np.argmin(np.where(ok, pred, inf)))
            out[j] = g
            free[g] -= 1
            kvf[g] -= s[j] + 1
            pred[g] += s[j] + seq_cost + hbar
        return out
    left = np.ones(w, dtype=bool)
    target = float(pred.max())
    while free.any() and left.any():
        g = int(np.argmin(np.where(free > 0, pred, inf)))
        cand = left & (s < kvf[g])
        if not cand.any():
            free[g] = 0  # nothing fits this rank's memory now
            continue
        fits = cand & (s + seq_cost + hbar <= target - pred[g])
        j = (int(np.argmax(np.where(fits, s, -1))) if fits.any()
             else int(np.argmin(np.where(cand, s, np.iinfo(np.int64).max))))
        out[j] = g
        left[j] = False
        free[g] -= 1
        kvf[g] -= s[j] + 1
        pred[g] += s[j] + seq_cost + hbar
        target = max(target, float(pred[g]))
    return out


def route_least_predicted(policy: Any, replicas: ReplicaTable, horizon: int) -> int:
    """Per-request fallback of the BF-IO forms: the rank of least load predicted ``horizon``
    steps ahead among ranks with a free slot (ties in rotation, ``policy.turn_``)."""
    load, drift, free, _, _ = rank_loads(replicas)
    pred = predicted_load(load, drift, horizon)
    if free.max() > 0:
        pred = np.where(free > 0, pred, np.inf)
    return pick_min(policy, pred)


@register
@dataclass(kw_only=True, repr=False)
class BfIoGreedy(ParamsMixin):
    """BF-IO's greedy form: place requests to balance the ranks' predicted future decode load.

    Per request (:meth:`route`): the rank of least predicted load over the lookahead, among
    ranks with a free slot (ties rotate). In a DP-attention group (:meth:`assign`, called by the
    lock-step engine at each step boundary with the oldest ``window`` waiting requests):
    LPT when slots outnumber candidates, best fit into the least loaded rank under a backlog
    (:func:`greedy_assign`). Requests wait in the group's queue until a slot frees, so the
    choice is made with the backlog in view, as in BF-IO.

    Guarantees
    ----------
    ``lpt_makespan``: with ``spread=False``, empty ranks and no slot or memory limits, the LPT
    placement's maximum load is at most (4/3 - 1/(3G)) times the optimum (Graham 1969, LPT on
    identical machines); checked against brute force in tests/conformance/checks_routing.py.
    With ``spread=True`` (default) at most ``ceil(W / G)`` requests go to a rank per step and
    this bound does not hold against the uncapped optimum (the check found such a case).
    ``in_range``. No online guarantee is proven for the greedy form; the sqrt(B log G)
    imbalance reduction of Chen et al. (2026) is stated for the integer program, and the
    simulation in ``servoir compare --family routing`` measures how close this form comes.

    Complexity
    ----------
    ``route``: O(G). ``assign``: O(W G) for a window of W requests; about 0.1 ms at G = 32,
    W = 64 (``servoir bench routing``). Memory O(G).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "bf_io_greedy", "routing", guarantees=("in_range", "lpt_makespan"),
        reference="Chen, Bu, Song, Lu, Ye, Zhou 2026 (arXiv 2601.17855); Graham 1969 (LPT)")
    late_binding: ClassVar[bool] = True
    horizon: int = 8
    window: int = 64
    spread: bool = True

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Start the tie-breaking rotation at rank 0."""
        self.turn_ = 0

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """The rank of least predicted load among those with a free slot."""
        return route_least_predicted(self, replicas, self.horizon)

    def assign(self, requests: Sequence[RequestView], replicas: ReplicaTable) -> list[int]:
        """Rank for each waiting request (oldest first), ``-1`` to keep it waiting."""
        load, drift, free, kv_free, c = rank_loads(replicas)
        sizes = np.fromiter((r.num_prompt_tokens for r in requests), np.int64, len(requests))
        return greedy_assign(sizes, load, drift, free, kv_free, self.horizon, c,
                             self.spread).tolist()

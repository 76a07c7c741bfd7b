"""Prefix-cache-aware routing with balance thresholds (SGLang's ``cache_aware`` policy)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.policies.routing.ties import pick_min
from servoir.registry import register
from servoir.views import ReplicaTable, RequestView


@register
@dataclass(kw_only=True, repr=False)
class PrefixAware(ParamsMixin):
    """Send a request where its prompt's prefix is cached, unless the replicas are imbalanced.

    The router keeps, per replica, an approximate cache index: the prefix block hashes
    (``RequestView.prefix_hashes``) of the requests it sent there, LRU-bounded by
    ``max_blocks``. For a request, a replica's match is the number of its leading hashes in that
    index. SGLang's rule (sgl-model-gateway ``cache_aware``):

    - load = waiting + running; the replicas are *imbalanced* when ``max - min >
      balance_abs_threshold`` and ``max > balance_rel_threshold * min``: then join the shortest
      queue;
    - otherwise, if the best match covers more than ``cache_threshold`` of the request's blocks,
      the best-matching replica (ties: lower load, then rotation); else the least loaded one.

    Requests without hashes are routed by load alone.

    Guarantees
    ----------
    ``prefix_affinity``: the rule above holds decision by decision (balanced with a match over
    the threshold: the best-matching replica; imbalanced or no match: a least-loaded replica),
    checked in tests/conformance/checks_routing.py. No cache-hit or latency guarantee: the
    production failure modes of this rule (hot-spotting on a popular prefix up to the threshold,
    fleet-wide loss of affinity once one replica is hot) are documented in production.md.

    Complexity
    ----------
    O(G + sum of matched lengths) per decision (dictionary look-ups), O(blocks inserted) to
    record the choice; memory O(G * max_blocks).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "prefix_aware", "routing", guarantees=("in_range", "prefix_affinity"),
        reference="SGLang router cache_aware policy (sgl-project/sglang sgl-model-gateway)")
    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    max_blocks: int = 1 << 20

    def __post_init__(self) -> None:
        if not 0 <= self.cache_threshold <= 1:
            raise ValueError(f"cache_threshold must be in [0, 1], got {self.cache_threshold}")
        if self.balance_abs_threshold < 0 or self.balance_rel_threshold < 1:
            raise ValueError("balance_abs_threshold must be >= 0 and balance_rel_threshold >= 1")
        if self.max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {self.max_blocks}")

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
        """Empty cache indexes; tie rotation from replica 0."""
        self.turn_ = 0
        self.index_: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(num_replicas)]

    def load(self, replicas: ReplicaTable) -> np.ndarray:
        """Requests in system per replica (the balance measure)."""
        return replicas.num_waiting + replicas.num_running

    def imbalanced(self, load: np.ndarray) -> bool:
        """SGLang's test: both the absolute and the relative spread exceed their thresholds."""
        hi, lo = int(load.max()), int(load.min())
        return hi - lo > self.balance_abs_threshold and hi > self.balance_rel_threshold * lo

    def matches(self, hashes: tuple[int, ...]) -> np.ndarray:
        """Leading blocks of ``hashes`` found in each replica's index."""
        out = np.zeros(len(self.index_), dtype=np.int64)
        for g, idx in enumerate(self.index_):
            m = 0
            for h in hashes:
                if h not in idx:
                    break
                m += 1
            out[g] = m
        return out

    def route(self, request: RequestView, replicas: ReplicaTable) -> int:
        """Cache affinity under balance, shortest queue otherwise; records the choice."""
        load = self.load(replicas)
        hashes = request.prefix_hashes or ()
        k = -1
        if hashes and not self.imbalanced(load):
            m = self.matches(hashes)
            best = int(m.max())
            if best > self.cache_threshold * len(hashes):
                tied = np.flatnonzero(m == best)
                k = pick_min(self, load[tied])
                k = int(tied[k])
        if k < 0:
            k = pick_min(self, load)
        self._insert(k, hashes)
        return k

    def _insert(self, k: int, hashes: tuple[int, ...]) -> None:
        idx = self.index_[k]
        for h in hashes:
            if h in idx:
                idx.move_to_end(h)
            else:
                idx[h] = None
        while len(idx) > self.max_blocks:
            idx.popitem(last=False)

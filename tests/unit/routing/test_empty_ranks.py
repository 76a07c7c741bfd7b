"""BF-IO never leaves a rank empty at a boundary where it could fill it.

In a DP-attention group an empty rank idles for the whole step (its fixed per-step cost, about
146k KV-token equivalents for llama-3-8b on A100, is lost, not only its KV share), so this is the
first property an idle-aware router needs. It holds for BF-IO's program by an exchange argument:
moving a placed candidate from a rank with load >= 0 to an empty rank (load 0, same capacity)
does not raise any rank above the old maximum and keeps the total, so the predicted idle does not
increase, and the tie-break (less loaded ranks first) strictly prefers the move.
"""

from __future__ import annotations

import numpy as np

from servoir.policies.routing.bf_io import single_request, solve_ip
from servoir.policies.routing.bf_io_greedy import greedy_assign


def _instance(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    g, w = int(rng.integers(2, 5)), int(rng.integers(1, 7))
    load = rng.integers(1, 20_000, g)
    drift = rng.integers(1, 6, g)
    empty = rng.random(g) < 0.4
    empty[int(rng.integers(g))] = True
    load[empty], drift[empty] = 0, 0
    free = rng.integers(1, 4, g)
    kv = np.full(g, 10**6)
    return rng.integers(10, 8_000, w), load, drift, free, kv, empty


def test_every_form_fills_an_empty_rank_first() -> None:
    rng = np.random.default_rng(5)
    for _ in range(150):
        sizes, load, drift, free, kv, empty = _instance(rng)
        placed = [greedy_assign(sizes, load, drift, free, kv, 8, 600),
                  solve_ip(sizes, load, drift, free, kv, 8, 1.0, seq_cost=600)[0]]
        for out in placed:
            used = set(out[out >= 0].tolist())
            n = int((out >= 0).sum())
            # With n placements and k empty ranks, min(n, k) empty ranks get one.
            assert len(used & set(np.flatnonzero(empty).tolist())) == min(n, int(empty.sum()))
        k = single_request(int(sizes[0]), load, drift, free, kv, 8, 600)
        assert empty[k]

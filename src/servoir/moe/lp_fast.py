"""Exact structured solver of the LPLB LP: a parametric max-flow on the replica graph.

The LP (see :mod:`servoir.moe.lplb`) keeps a fraction ``p[e]`` of bundle ``e``'s load ``W[e]`` on
its home rank and sends the rest to its copy rank; it minimises the largest rank load ``t``. With
the split rows ``p + q = 1`` this is fractional load balancing on the replica multigraph (each
edge's weight is shared between its two endpoints), whose optimum is the densest-subgraph value

    t* = max over non-empty rank sets S of (F(S) + W(E(S))) / |S|,

``E(S)`` being the bundles with both homes in ``S`` (max-flow/min-cut: a load cap ``t`` is
feasible iff every set can absorb the bundles it cannot give away).

The algorithm raises a cap ``t`` from a density lower bound and repairs the split with augmenting
paths (shift load along a path of bundles from an overloaded rank to an underloaded one). When no
path exists, the ranks reachable from the overloaded ones form a closed set ``R`` (every bundle
leaving ``R`` already sits wholly outside it), so ``load(R) = F(R) + W(E(R))`` and ``t`` jumps to
``density(R)``, a Dinkelbach step. Raising ``t`` never invalidates the split, so the flow is reused
(Gallo-Grigoriadis-Tarjan style parametric flow). At the end ``t`` is the density of a set (a
lower bound on ``t*``) and the split keeps every rank at or below ``t`` (an upper bound), hence
``t = t*``. Floating-point slack ``tol`` (1e-13 of the scale) bounds the final overload by
``G * tol``.
"""

from __future__ import annotations

import numpy as np

from servoir.moe.topology import ReplicaGraph

__all__ = ["solve_group", "solve_groups"]

_REL_TOL = 1e-13


def solve_group(
    weights: list[float], fixed: list[float], graph: ReplicaGraph
) -> tuple[float, list[float], int]:
    """Solve one group exactly; return ``(t_star, p, num_augmentations)``.

    Parameters
    ----------
    weights
        ``W[e]`` for the ``G*D`` bundles (bundle ``e = r*D + k``), non-negative.
    fixed
        ``F[r]`` for the ``G`` ranks, non-negative.
    graph
        The replica graph of the topology.

    Returns
    -------
    t_star : float
        The LP optimum, computed as the density of a set (exact up to summation rounding).
    p : list of float
        Fraction of each bundle kept on its home rank; every rank load is ``<= t_star`` up to
        ``G * 1e-13 * scale``.
    num_augmentations : int
        Augmenting paths used (for profiling).

    Notes
    -----
    Complexity: O(E) per augmenting path and per cap raise; in practice a few paths per rank.
    """
    g = graph.num_ranks
    w = weights
    share, load, t = _start(w, fixed, graph)
    tol = _REL_TOL * max(t, 1e-300)
    pushes = 0
    parent = [(0, 0, False)] * g  # (bundle, previous rank, previous rank is the bundle's home)
    while True:
        over = [r for r in range(g) if load[r] > t + tol]
        if not over:
            break
        found, seen = _search(over, share, w, load, t - tol, graph.adjacency, parent)
        if found < 0:
            dens = _density(seen, fixed, w, graph)
            if dens <= t:  # the overload is rounding noise (<= |R| * tol)
                break
            t, tol = dens, _REL_TOL * dens
            continue
        _augment(found, over, share, w, load, t, parent)
        pushes += 1
    p = [share[e] / x if x > 0.0 else 0.5 for e, x in enumerate(w)]
    return t, p, pushes


def _start(w: list[float], fixed: list[float], graph: ReplicaGraph
           ) -> tuple[list[float], list[float], float]:
    """Even split, its rank loads, and the density lower bound max(mean, immovable load)."""
    home, copy = graph.home, graph.copy
    share = [0.5 * x for x in w]  # load kept at home
    load = list(fixed)
    loop_load = list(fixed)
    for e, x in enumerate(w):
        if home[e] == copy[e]:
            load[home[e]] += x
            loop_load[home[e]] += x
        else:
            load[home[e]] += share[e]
            load[copy[e]] += x - share[e]
    t = max((sum(fixed) + sum(w)) / graph.num_ranks, max(loop_load))
    return share, load, t


def _search(over: list[int], share: list[float], w: list[float], load: list[float], lo: float,
            adj: tuple[tuple[tuple[int, int, bool], ...], ...],
            parent: list[tuple[int, int, bool]]) -> tuple[int, list[bool]]:
    """BFS from the overloaded ranks along bundles with load to give; first rank below ``lo``."""
    seen = [False] * len(load)
    for r in over:
        seen[r] = True
    queue = list(over)
    i = 0
    while i < len(queue):
        a = queue[i]
        i += 1
        for e, b, a_home in adj[a]:
            if seen[b] or (share[e] if a_home else w[e] - share[e]) <= 0.0:
                continue
            seen[b] = True
            parent[b] = (e, a, a_home)
            if load[b] < lo:
                return b, seen
            queue.append(b)
    return -1, seen


def _density(seen: list[bool], fixed: list[float], w: list[float], graph: ReplicaGraph) -> float:
    """(F(R) + W(E(R))) / |R| for the closed set ``R`` of ranks marked in ``seen``."""
    home, copy = graph.home, graph.copy
    inside = sum(f for f, s in zip(fixed, seen, strict=True) if s)
    for e, x in enumerate(w):
        if seen[home[e]] and seen[copy[e]]:
            inside += x
    return inside / sum(seen)


def _augment(found: int, over: list[int], share: list[float], w: list[float],
             load: list[float], t: float, parent: list[tuple[int, int, bool]]) -> None:
    """Push the bottleneck amount from the path's root (an overloaded rank) to ``found``."""
    roots = set(over)
    b, delta = found, t - load[found]
    while b not in roots:
        e, a, a_home = parent[b]
        give = share[e] if a_home else w[e] - share[e]
        delta = min(delta, give)
        b = a
    root = b
    delta = min(delta, load[root] - t)
    b = found
    while b != root:
        e, a, a_home = parent[b]
        if a_home:  # move from home a to copy b; clamp so a drained bundle is exactly 0
            share[e] = share[e] - delta if share[e] > delta else 0.0
        else:
            share[e] = share[e] + delta if w[e] - share[e] > delta else w[e]
        b = a
    load[root] -= delta
    load[found] += delta


def solve_groups(
    weights: np.ndarray, fixed: np.ndarray, graph: ReplicaGraph
) -> tuple[np.ndarray, np.ndarray]:
    """Solve a batch of groups; ``weights`` ``[B, G, D]``, ``fixed`` ``[B, G]``.

    Returns ``(t_star [B], p [B, G, D])`` as float64 arrays.
    """
    b = weights.shape[0]
    w2 = weights.reshape(b, -1).tolist()
    f2 = fixed.tolist()
    ts = np.empty(b)
    ps = np.empty((b, weights.shape[1] * weights.shape[2]))
    for i in range(b):
        t, p, _ = solve_group(w2[i], f2[i], graph)
        ts[i] = t
        ps[i] = p
    return ts, ps.reshape(weights.shape)

"""Replica topologies of LPLB: which rank holds a copy of which rank's replicated bundle.

A topology is an integer matrix ``r2o`` of shape ``[G, D]`` (``G`` ranks in one LP group, ``D``
replica slots per rank): ``r2o[r, k]`` is the rank whose slot-``k`` bundle is copied onto rank
``r``. Every column must be a permutation of ``0..G-1``, so that every bundle has exactly two homes
(its original rank and the one rank holding its copy); a fixed point (``r2o[r, k] == r``) is a
bundle whose two homes coincide, which the LP keeps and which simply cannot move.

The named topologies are the ones LPLB ships and tests (``tests/utils.py`` of deepseek-ai/LPLB).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from servoir.errors import InputError

__all__ = [
    "CUBE_8P2E",
    "HYPERCUBE_16P2E",
    "RING_8",
    "ReplicaGraph",
    "check_topology",
    "replica_graph",
    "torus",
]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    a.setflags(write=False)
    return a


#: 8 ranks, 2 slots: the cube graph with diagonals (LPLB ``CUBE_8P2E``).
CUBE_8P2E = _frozen(np.array([[3, 0, 1, 2, 7, 4, 5, 6], [6, 7, 4, 5, 0, 1, 2, 3]]).T)
#: 8 ranks, 1 slot: a ring (LPLB ``RING_8P``).
RING_8 = _frozen(np.array([[1, 2, 3, 4, 5, 6, 7, 0]]).T)
#: 16 ranks, 2 slots: two cubes linked across nodes, no diagonals (LPLB ``HYPERCUBE_16P2E``).
HYPERCUBE_16P2E = _frozen(
    np.array(
        [
            [3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14],
            [12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        ]
    ).T
)


def torus(m: int, n: int) -> np.ndarray:
    """Return the ``m x n`` torus topology: one copy on the next node, one on the next GPU.

    ``r2o[i*n + j] = [((i+1) % m)*n + j, i*n + (j+1) % n]`` (LPLB ``torus_2d``).

    Examples
    --------
    >>> torus(2, 2).tolist()
    [[2, 1], [3, 0], [0, 3], [1, 2]]
    """
    if m < 1 or n < 1:
        raise InputError(f"torus sides must be >= 1, got {m} x {n}")
    rows = [[((i + 1) % m) * n + j, i * n + (j + 1) % n] for i in range(m) for j in range(n)]
    return _frozen(np.array(rows))


def check_topology(r2o: np.ndarray) -> np.ndarray:
    """Validate a topology matrix and return it as a read-only ``int64`` array ``[G, D]``.

    Raises
    ------
    InputError
        If ``r2o`` is not 2-D with ``G, D >= 1`` or a column is not a permutation of ``0..G-1``.
    """
    a = np.asarray(r2o)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"topology must be a [ranks, slots] matrix, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"topology must hold integer ranks, got dtype {a.dtype}")
    g = a.shape[0]
    expect = np.arange(g)
    for k in range(a.shape[1]):
        if not np.array_equal(np.sort(a[:, k]), expect):
            raise InputError(
                f"topology column {k} must be a permutation of 0..{g - 1} (each bundle needs "
                f"exactly one copy), got {a[:, k].tolist()}"
            )
    return _frozen(a)


@dataclass(frozen=True, slots=True)
class ReplicaGraph:
    """The replica multigraph of a topology: one edge per bundle, between its two homes.

    Bundle ``e = r*D + k`` (slot ``k`` of rank ``r``) joins ``home[e] = r`` and
    ``copy[e]``, the rank with ``r2o[copy[e], k] == r``. ``adjacency[a]`` lists
    ``(e, b, a_is_home)`` for every non-loop edge at rank ``a``; loops are in ``loops``.
    """

    r2o: np.ndarray
    num_ranks: int
    num_slots: int
    home: tuple[int, ...]
    copy: tuple[int, ...]
    adjacency: tuple[tuple[tuple[int, int, bool], ...], ...]
    loops: tuple[int, ...]
    home_arr: np.ndarray
    copy_arr: np.ndarray


@lru_cache(maxsize=64)
def _graph_cached(key: bytes, g: int, d: int) -> ReplicaGraph:
    r2o = check_topology(np.frombuffer(key, dtype=np.int64).reshape(g, d))
    o2r = np.empty_like(r2o)
    for k in range(d):
        o2r[r2o[:, k], k] = np.arange(g)
    home = np.repeat(np.arange(g), d)
    copy = o2r.reshape(-1)
    adj: list[list[tuple[int, int, bool]]] = [[] for _ in range(g)]
    loops = []
    for e in range(g * d):
        a, b = int(home[e]), int(copy[e])
        if a == b:
            loops.append(e)
            continue
        adj[a].append((e, b, True))
        adj[b].append((e, a, False))
    return ReplicaGraph(
        r2o=r2o,
        num_ranks=g,
        num_slots=d,
        home=tuple(int(x) for x in home),
        copy=tuple(int(x) for x in copy),
        adjacency=tuple(tuple(x) for x in adj),
        loops=tuple(loops),
        home_arr=_frozen(home),
        copy_arr=_frozen(copy),
    )


def replica_graph(r2o: np.ndarray) -> ReplicaGraph:
    """Return the validated, cached :class:`ReplicaGraph` of a topology.

    Validation (:func:`check_topology`) runs once per distinct matrix; later calls cost one
    hash of its bytes. Complexity: O(G*D) the first time.
    """
    a = np.asarray(r2o)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        check_topology(a)  # raises with the precise message
    a64 = np.ascontiguousarray(a, dtype=np.int64)
    return _graph_cached(a64.tobytes(), a64.shape[0], a64.shape[1])

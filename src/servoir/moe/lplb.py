"""LPLB: the per-batch linear program that splits replicated experts' tokens between two homes.

DeepSeek's LPLB (deepseek-ai/LPLB) copies the top bundles of every rank onto a neighbour rank
given by a topology matrix ``r2o`` (:mod:`servoir.moe.topology`) and, for every batch, solves one
small LP per group of ``G`` ranks to choose the share ``p`` of each bundle kept at home so that
the most loaded rank is as light as possible.

The LP, in LPLB's standard form (all variables ``>= 0``; ``NC = G + G*D`` rows,
``NV = 2*G*D + G + 2`` columns, 24 x 42 for Cube8P2E)::

    min  t + M a
    s.t. sum_k W[r,k] p[r,k] + sum_k W[o,k] q[o,k] + s[r] - t + A_r a = -F[r]   (o = r2o[r,k])
         p[r,k] + q[r,k] + A'_rk a = 1

with ``M = 1000`` and the artificial column chosen so that ``A @ 1 = b``. Columns are ordered
``p`` (``r*D + k``), ``q``, ``s``, ``t``, ``a``. Loads ``W`` and ``F`` are normalised by the
largest expert load of the batch, as LPLB does.

Three solvers: ``"fast"`` (exact parametric max-flow, :mod:`servoir.moe.lp_fast`), ``"highs"``
(HiGHS dual simplex, tolerances 1e-10, the reference) and ``"ipm"`` (LPLB's 5-step affine
scaling, :mod:`servoir.moe.ipm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from servoir.errors import InputError
from servoir.highs import quiet_highs
from servoir.moe import eplb, lp_fast
from servoir.moe.ipm import affine_scaling
from servoir.moe.topology import check_topology, replica_graph

__all__ = [
    "BIG_M",
    "Layout",
    "LinearProgram",
    "Solution",
    "build_lp",
    "bundle_loads",
    "plan",
    "rank_loads",
    "redirect_tokens",
    "solve",
    "solve_highs",
]

#: LPLB's Big-M cost of the artificial column.
BIG_M = 1000.0

Method = Literal["fast", "highs", "ipm"]


@dataclass(frozen=True, slots=True)
class LinearProgram:
    """A batch of LPLB LPs in standard form: ``min c.x, A x = b, x >= 0``.

    ``a`` [B, NC, NV], ``b`` [B, NC], ``c`` [NV].
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


def _check_loads(weights: np.ndarray, fixed: np.ndarray, r2o: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    topo = replica_graph(r2o).r2o
    w = np.asarray(weights, dtype=np.float64)
    f = np.asarray(fixed, dtype=np.float64)
    if w.ndim == 2:
        w = w[None]
    if f.ndim == 1:
        f = f[None]
    g, d = topo.shape
    if w.ndim != 3 or w.shape[1:] != (g, d):
        raise InputError(f"bundle loads must be [groups, {g}, {d}] for this topology, "
                         f"got {np.shape(weights)}")
    if f.shape != (w.shape[0], g):
        raise InputError(f"fixed loads must be [groups, {g}], got {np.shape(fixed)}")
    if not (np.isfinite(w.sum()) and np.isfinite(f.sum()) and w.min(initial=0.0) >= 0
            and f.min(initial=0.0) >= 0):
        raise InputError("bundle and fixed loads must be finite and non-negative")
    return w, f, topo


def build_lp(weights: np.ndarray, fixed: np.ndarray, r2o: np.ndarray,
             big_m: float = BIG_M) -> LinearProgram:
    """Build LPLB's LP exactly (as ``kernel_solve`` does) for a batch of groups.

    Parameters
    ----------
    weights : ndarray, shape [B, G, D] or [G, D]
        ``W[r, k]``: load of the bundle in slot ``k`` of rank ``r``.
    fixed : ndarray, shape [B, G] or [G]
        ``F[r]``: load of rank ``r``'s experts that are not replicated.
    r2o : ndarray, shape [G, D]
        Topology.
    big_m : float
        Cost of the artificial column (1000 in LPLB).

    Returns
    -------
    LinearProgram
        With ``A @ 1 == b`` exactly up to rounding. Complexity: O(B NC NV).
    """
    w, f, topo = _check_loads(weights, fixed, r2o)
    nb, (g, d) = w.shape[0], topo.shape
    gd = g * d
    nc, nv = g + gd, 2 * gd + g + 2
    a = np.zeros((nb, nc, nv))
    ranks = np.repeat(np.arange(g), d)
    slots = np.tile(np.arange(d), g)
    a[:, ranks, np.arange(gd)] = w.reshape(nb, gd)  # p[r,k] loads rank r
    origin = topo[ranks, slots]  # q[o,k] loads rank r where o = r2o[r,k]
    a[:, ranks, gd + origin * d + slots] = w[:, origin, slots]
    a[:, np.arange(g), 2 * gd + np.arange(g)] = 1.0  # slack
    a[:, :g, 2 * gd + g] = -1.0  # t
    a[:, g + np.arange(gd), np.arange(gd)] = 1.0
    a[:, g + np.arange(gd), gd + np.arange(gd)] = 1.0
    b = np.concatenate([-f, np.ones((nb, gd))], axis=1)
    a[:, :, -1] = b - a[:, :, :-1].sum(-1)
    c = np.zeros(nv)
    c[-2], c[-1] = 1.0, big_m
    return LinearProgram(a=a, b=b, c=c)


def rank_loads(weights: np.ndarray, fixed: np.ndarray, p: np.ndarray, r2o: np.ndarray
               ) -> np.ndarray:
    """Load of every rank for split ``p`` (share kept at home): ``[B, G]``.

    ``load[r] = F[r] + sum_k W[r,k] p[r,k] + sum_k W[o,k] (1 - p[o,k])`` with ``o = r2o[r,k]``.
    Exactly conserves the total: ``load.sum(-1) == F.sum(-1) + W.sum((-2, -1))``.
    """
    topo = replica_graph(r2o).r2o
    w = np.asarray(weights, dtype=np.float64)
    kept = (w * p).sum(-1)
    d = topo.shape[1]
    sent = w * (1.0 - p)
    moved = sum(sent[..., topo[:, k], k] for k in range(d))
    return np.asarray(fixed, dtype=np.float64) + kept + moved


@dataclass(frozen=True, slots=True)
class Solution:
    """Solution of a batch of LPLB LPs.

    Attributes
    ----------
    p : ndarray [B, G, D]
        Share of each bundle kept on its home rank (the fallback 0.5 where not accepted).
    objective : ndarray [B]
        The solver's LP objective ``t + M a`` (for ``"fast"``: the exact optimum ``t*``).
    max_load : ndarray [B]
        Largest rank load under ``p``.
    accepted : ndarray [B] of bool
        LPLB's acceptance rule (always true for ``"fast"`` and ``"highs"``).
    """

    p: np.ndarray
    objective: np.ndarray
    max_load: np.ndarray
    accepted: np.ndarray


@lru_cache(maxsize=1)
def _highs() -> Any:
    """One reusable quiet HiGHS instance (simplex, tolerances 1e-10: the reference)."""
    return quiet_highs(solver="simplex", primal_feasibility_tolerance=1e-10,
                       dual_feasibility_tolerance=1e-10, ipm_optimality_tolerance=1e-10)


def solve_highs(lp: LinearProgram, index: int = 0) -> tuple[float, np.ndarray]:
    """Solve LP ``index`` of a batch with HiGHS (simplex, feasibility/optimality tol 1e-10).

    Returns ``(objective, x)``. Raises ``RuntimeError`` if HiGHS does not report optimal.
    Complexity: HiGHS's; about a millisecond for 24 x 42.
    """
    import highspy

    a, b = lp.a[index], lp.b[index]
    nc, nv = a.shape
    h = _highs()
    h.clearModel()
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = nv, nc
    model.col_cost_ = lp.c.astype(np.float64)
    model.col_lower_ = np.zeros(nv)
    model.col_upper_ = np.full(nv, np.inf)
    model.row_lower_ = b.astype(np.float64)
    model.row_upper_ = b.astype(np.float64)
    cols, rows = np.nonzero(a.T)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = np.searchsorted(cols, np.arange(nv + 1)).astype(np.int32)
    model.a_matrix_.index_ = rows.astype(np.int32)
    model.a_matrix_.value_ = a.T[cols, rows]
    h.passModel(model)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS: {h.modelStatusToString(h.getModelStatus())}")
    return float(h.getInfo().objective_function_value), np.array(h.getSolution().col_value)


def solve(weights: np.ndarray, fixed: np.ndarray, r2o: np.ndarray, method: Method = "fast",
          **ipm_options: object) -> Solution:
    """Solve the LPLB LP of every group in a batch.

    Parameters
    ----------
    weights : ndarray [B, G, D] or [G, D]
        Bundle loads (normalised or not: the LP is scale-invariant for ``"fast"``; the Big-M and
        IPM tolerances assume LPLB's normalisation by the largest expert load).
    fixed : ndarray [B, G] or [G]
        Non-replicated load per rank.
    r2o : ndarray [G, D]
        Topology.
    method : {"fast", "highs", "ipm"}
        Exact parametric max-flow, HiGHS reference, or LPLB's 5-step interior point.
    **ipm_options
        Passed to :func:`servoir.moe.ipm.affine_scaling`.

    Returns
    -------
    Solution

    Notes
    -----
    Guarantee (``"fast"``): ``objective`` is the minimum over feasible splits of the largest rank
    load (the LP without the artificial column) and ``max_load <= objective * (1 + G * 1e-13)``.
    This equals the Big-M LP's optimum whenever ``M > max_r (F[r] + total bundle load touching
    r)``, which LPLB's normalisation makes true for any realistic group (an artificial ``a > 0``
    gains at most that much per unit). Complexity: see :mod:`servoir.moe.lp_fast`.
    """
    w, f, topo = _check_loads(weights, fixed, r2o)
    nb = w.shape[0]
    if method == "fast":
        t, p = lp_fast.solve_groups(w, f, replica_graph(topo))
        loads = rank_loads(w, f, p, topo)
        return Solution(p=p, objective=t, max_load=loads.max(-1), accepted=np.ones(nb, bool))
    lp = build_lp(w, f, topo)
    gd = topo.size
    if method == "highs":
        obj = np.empty(nb)
        p = np.empty((nb, gd))
        for i in range(nb):
            obj[i], x = solve_highs(lp, i)
            p[i] = x[:gd]
        p = np.clip(p, 0.0, 1.0).reshape(w.shape)
        loads = rank_loads(w, f, p, topo)
        return Solution(p=p, objective=obj, max_load=loads.max(-1), accepted=np.ones(nb, bool))
    if method == "ipm":
        res = affine_scaling(lp.a, lp.b, lp.c, **ipm_options)  # type: ignore[arg-type]
        x = res.x.astype(np.float64)
        p = np.where(res.accepted[:, None], x[:, :gd], 0.5).reshape(w.shape)
        loads = rank_loads(w, f, np.clip(p, 0.0, 1.0), topo)
        return Solution(p=p, objective=x @ lp.c, max_load=loads.max(-1), accepted=res.accepted)
    raise InputError(f"unknown LP method '{method}'; valid: fast, highs, ipm")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where every physical expert lives under LPLB's replication plan.

    Rank ``r`` (global EP rank) holds ``num_local_physical`` slots:
    ``phy2log[r*num_local_physical : ...]`` lists first its ``num_local_logical`` own experts (the
    first ``bundle_size * num_slots`` of them, ordered ``j*D + k``, form the bundles: slot
    ``k`` takes positions ``k, k + D, ...``), then copies of the ``D`` bundles it hosts for other
    ranks in the same ``j*D + k`` order.
    """

    r2o: np.ndarray
    num_groups: int
    group_size: int
    num_slots: int
    bundle_size: int
    num_local_logical: int
    phy2log: np.ndarray

    @property
    def num_local_physical(self) -> int:
        """Physical expert slots per rank."""
        return self.num_local_logical + self.bundle_size * self.num_slots

    @property
    def ep_size(self) -> int:
        """Number of EP ranks."""
        return self.num_groups * self.group_size


def plan(r2o: np.ndarray, num_logical_experts: int, ep_size: int,
         num_redundants_per_rank: int, history: np.ndarray | None = None,
         gpus_per_node: int = 8) -> Layout:
    """LPLB's planner: EPLB reorder (no replication), sort by history, copy the top bundles.

    Parameters
    ----------
    r2o : ndarray [G, D]
        Topology; ``ep_size`` must be a multiple of ``G``.
    num_logical_experts : int
        Logical experts (a multiple of ``ep_size``).
    ep_size : int
        EP ranks.
    num_redundants_per_rank : int
        Extra physical slots per rank, a multiple of ``D`` (bundle size ``c`` = this / ``D``).
    history : ndarray [num_logical_experts] or None
        Load history; ``None`` keeps experts in index order (LPLB's "no reorder").
    gpus_per_node : int
        For EPLB's node count ``max(1, ep_size // gpus_per_node)``.

    Returns
    -------
    Layout
        Guarantee: every logical expert appears once as an original; every bundled expert has
        exactly one copy. Complexity: EPLB's plus O(E log E).
    """
    topo = check_topology(r2o)
    g, d = topo.shape
    if ep_size < g or ep_size % g:
        raise InputError(f"ep_size ({ep_size}) must be a multiple of the topology size ({g})")
    if num_logical_experts % ep_size:
        raise InputError(f"num_logical_experts ({num_logical_experts}) must be a multiple of "
                         f"ep_size ({ep_size})")
    if num_redundants_per_rank < d or num_redundants_per_rank % d:
        raise InputError(f"num_redundants_per_rank ({num_redundants_per_rank}) must be a "
                         f"positive multiple of the topology's slots ({d})")
    n_group, n_local = ep_size // g, num_logical_experts // ep_size
    c = num_redundants_per_rank // d
    if c * d > n_local:
        raise InputError(f"{c * d} bundled experts per rank exceed the {n_local} it owns")
    if history is None:
        nored = np.arange(num_logical_experts, dtype=np.int64)
    else:
        h = np.asarray(history, dtype=np.float64)
        if h.shape != (num_logical_experts,):
            raise InputError(f"history must have shape ({num_logical_experts},), got {h.shape}")
        nodes = max(1, ep_size // gpus_per_node)
        nored = eplb.rebalance(h[None], num_logical_experts, n_group, nodes, ep_size)[0][0]
    nored = nored.reshape(n_group, g, n_local)
    if history is not None:
        order = np.argsort(-h[nored], axis=-1, kind="stable")
        nored = np.take_along_axis(nored, order, -1)
    tored = nored[:, :, : c * d].reshape(n_group, g, c, d)
    dup = np.empty_like(tored)
    for k in range(d):
        dup[..., k] = tored[:, topo[:, k]][..., k]
    phy2log = np.concatenate([nored, dup.reshape(n_group, g, c * d)], -1).reshape(-1)
    phy2log.setflags(write=False)
    return Layout(r2o=topo, num_groups=n_group, group_size=g, num_slots=d, bundle_size=c,
                  num_local_logical=n_local, phy2log=phy2log)


def bundle_loads(layout: Layout, workload: np.ndarray, normalize: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-group LP data from a batch's token counts per logical expert.

    Returns ``W`` [groups, G, D] (bundle loads) and ``F`` [groups, G] (fixed loads), divided by
    the largest expert count when ``normalize`` (as LPLB does; an all-zero batch stays zero).
    Complexity: O(E).
    """
    w = np.asarray(workload, dtype=np.float64)
    if w.ndim != 1 or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise InputError("workload must be a 1-D array of finite non-negative counts")
    if normalize and w.size and w.max() > 0:
        w = w / w.max()
    ng, g, d, c = layout.num_groups, layout.group_size, layout.num_slots, layout.bundle_size
    own = layout.phy2log.reshape(ng, g, layout.num_local_physical)[:, :, : layout.num_local_logical]
    vals = w[own]
    bundles = vals[:, :, : c * d].reshape(ng, g, c, d).sum(2)
    return bundles, vals[:, :, c * d:].sum(-1)


def redirect_tokens(expert_idx: np.ndarray, p: np.ndarray, layout: Layout) -> np.ndarray:
    """Map each token's logical expert to a physical expert, following the split ``p``.

    For a bundled expert ``e`` with ``n`` tokens in this batch, the ``i``-th of them (in order)
    goes to the original when ``(499 i + 41) mod n < p n`` and to the copy otherwise (LPLB's
    fixed permutation; when ``499`` divides ``n``, ``i`` itself is used so the map stays a
    permutation). Other experts go to their only replica; ``-1`` stays ``-1``.

    Parameters
    ----------
    expert_idx : ndarray of int
        Logical expert per token slot, any shape, values in ``[-1, num_logical)``.
    p : ndarray [groups, G, D]
        Share kept at home per bundle.
    layout : Layout

    Returns
    -------
    ndarray of int64, same shape
        Physical expert per token slot. Guarantees: every token goes to a replica of its own
        expert; expert ``e`` sends exactly ``ceil(p n)`` tokens to its original.
        Complexity: O(T log T) for ``T`` tokens.
    """
    idx = np.asarray(expert_idx)
    num_log = layout.ep_size * layout.num_local_logical
    if idx.size and (idx.min() < -1 or idx.max() >= num_log):
        raise InputError(f"expert indices must lie in [-1, {num_log})")
    ng, g, d, c = layout.num_groups, layout.group_size, layout.num_slots, layout.bundle_size
    pp = np.asarray(p, dtype=np.float64)
    if pp.shape != (ng, g, d):
        raise InputError(f"p must have shape {(ng, g, d)}, got {pp.shape}")
    nlp, nll = layout.num_local_physical, layout.num_local_logical
    phys = np.arange(layout.phy2log.size).reshape(ng * g, nlp)
    orig = np.empty(num_log, dtype=np.int64)
    orig[layout.phy2log.reshape(ng * g, nlp)[:, :nll]] = phys[:, :nll]
    copy = np.full(num_log, -1, dtype=np.int64)
    share = np.ones(num_log)
    graph = replica_graph(layout.r2o)
    copy_rank = graph.copy_arr.reshape(g, d)  # rank holding the copy of bundle (r, k)
    jj, kk = np.meshgrid(np.arange(c), np.arange(d), indexing="ij")
    pos = (jj * d + kk).reshape(-1)  # local position of member j of slot k
    for grp in range(ng):
        for r in range(g):
            rank = grp * g + r
            members = layout.phy2log[rank * nlp + pos]
            ks = np.tile(np.arange(d), c)
            crank = grp * g + copy_rank[r, ks]
            copy[members] = crank * nlp + nll + pos
            share[members] = pp[grp, r, ks]
    flat = idx.reshape(-1).astype(np.int64)
    out = np.full(flat.shape, -1, dtype=np.int64)
    valid = np.flatnonzero(flat >= 0)
    e = flat[valid]
    order = np.argsort(e, kind="stable")
    counts = np.bincount(e, minlength=num_log)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ordinal = np.empty(e.size, dtype=np.int64)
    ordinal[order] = np.arange(e.size) - starts[e[order]]
    n = counts[e]
    mult = np.where(n % 499 == 0, 1, 499)
    add = np.where(n % 499 == 0, 0, 41)
    perm = (ordinal * mult + add) % n
    to_orig = (copy[e] < 0) | (perm < share[e] * n)
    out[valid] = np.where(to_orig, orig[e], copy[e])
    return out.reshape(idx.shape)

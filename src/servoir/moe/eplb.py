"""EPLB: DeepSeek's expert-parallel load balancer (replication and packing from load history).

A numpy re-implementation of deepseek-ai/EPLB ``eplb.py``: greedy replication (water-filling on
load per replica), balanced packing (LPT with a cardinality constraint) and the hierarchical
(expert groups to nodes, replicas within nodes, replicas to GPUs) and global policies. Ties are
broken deterministically (stable sorts, lowest index first), which reproduces EPLB's README
example exactly.

References
----------
deepseek-ai/EPLB, ``eplb.py`` and ``README.md``; DeepSeek-V3 Technical Report, arXiv 2412.19437.
"""

from __future__ import annotations

import numpy as np

from servoir.errors import InputError

__all__ = ["balanced_packing", "rebalance", "replicate_experts"]


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack ``n`` weighted items into ``num_packs`` packs of exactly ``n / num_packs`` items.

    Items are taken heaviest first (stable order) and each goes to the lightest pack that still
    has room (lowest index on ties): LPT with a cardinality constraint.

    Parameters
    ----------
    weight : ndarray, shape [X, n]
        Item weights, one packing problem per row.
    num_packs : int
        Number of packs; must divide ``n``.

    Returns
    -------
    pack_index, rank_in_pack : ndarray of int64, shape [X, n]
        The pack of each item and its position inside the pack.

    Notes
    -----
    Guarantee: every pack gets exactly ``n / num_packs`` items. Complexity: O(X n (log n + m)).
    """
    num_rows, n = weight.shape
    if num_packs < 1 or n % num_packs:
        raise InputError(f"{n} items cannot be split evenly into {num_packs} packs")
    per_pack = n // num_packs
    if per_pack == 1:
        return (np.broadcast_to(np.arange(n, dtype=np.int64), weight.shape).copy(),
                np.zeros(weight.shape, dtype=np.int64))
    pack_index = np.full(weight.shape, -1, dtype=np.int64)
    rank_in_pack = np.full(weight.shape, -1, dtype=np.int64)
    order = np.argsort(-weight, axis=-1, kind="stable")
    for i in range(num_rows):
        pack_weights = [0.0] * num_packs
        pack_items = [0] * num_packs
        row = weight[i].tolist()
        for item in order[i].tolist():
            best = -1
            for pk in range(num_packs):
                if pack_items[pk] < per_pack and (best < 0 or pack_weights[pk] < pack_weights[best]):
                    best = pk
            pack_index[i, item] = best
            rank_in_pack[i, item] = pack_items[best]
            pack_weights[best] += row[item]
            pack_items[best] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replicate ``num_log`` experts into ``num_phy`` replicas, minimising the max replica load.

    Each extra replica goes to the expert with the largest ``load / replica_count`` (lowest index
    on ties): greedy water-filling, optimal for the max per-replica load.

    Returns
    -------
    phy2log, rank, logcnt : ndarray of int64
        ``[X, num_phy]`` logical expert of each replica, ``[X, num_phy]`` its replica rank, and
        ``[X, num_log]`` replica counts. Complexity: O(X (num_phy - num_log) num_log).
    """
    n, num_log = weight.shape
    if num_phy < num_log:
        raise InputError(f"num_phy ({num_phy}) must be >= the number of experts ({num_log})")
    phy2log = np.tile(np.arange(num_phy, dtype=np.int64), (n, 1))
    rank = np.zeros((n, num_phy), dtype=np.int64)
    logcnt = np.ones((n, num_log), dtype=np.int64)
    rows = np.arange(n)
    for i in range(num_log, num_phy):
        best = np.argmax(weight / logcnt, axis=-1)
        phy2log[:, i] = best
        rank[:, i] = logcnt[rows, best]
        logcnt[rows, best] += 1
    return phy2log, rank, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


def _hierarchical(weight: np.ndarray, num_phy: int, num_groups: int, num_nodes: int,
                  num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num_layers, num_log = weight.shape
    group_size = num_log // num_groups
    groups_per_node = num_groups // num_nodes
    phy_per_gpu = num_phy // num_gpus
    # 1. expert groups -> nodes
    tokens_per_group = weight.reshape(num_layers, num_groups, group_size).sum(-1)
    g_pack, g_rank = balanced_packing(tokens_per_group, num_nodes)
    log2mlog = (((g_pack * groups_per_node + g_rank) * group_size)[:, :, None]
                + np.arange(group_size)).reshape(num_layers, -1)
    mlog2log = _inverse(log2mlog)
    # 2. replicate within each node
    tokens_per_mlog = np.take_along_axis(weight, mlog2log, -1).reshape(-1, num_log // num_nodes)
    phy2mlog, phyrank, mlogcnt = replicate_experts(tokens_per_mlog, num_phy // num_nodes)
    # 3. replicas -> GPUs of the node
    tokens_per_phy = np.take_along_axis(tokens_per_mlog / mlogcnt, phy2mlog, -1)
    pack, rank_in_pack = balanced_packing(tokens_per_phy, num_gpus // num_nodes)
    pphy2phy = _inverse(pack * phy_per_gpu + rank_in_pack)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, -1)
    offsets = np.arange(0, num_log, num_log // num_nodes)[None, :, None]
    pphy2mlog = (pphy2mlog.reshape(num_layers, num_nodes, -1) + offsets).reshape(num_layers, -1)
    pphy2log = np.take_along_axis(mlog2log, pphy2mlog, -1)
    pphyrank = np.take_along_axis(phyrank, pphy2phy, -1).reshape(num_layers, -1)
    logcnt = np.take_along_axis(mlogcnt.reshape(num_layers, -1), log2mlog, -1)
    return pphy2log, pphyrank, logcnt


def rebalance(weight: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int,
              num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place ``num_replicas`` physical experts per layer on ``num_gpus`` GPUs (EPLB).

    Uses the hierarchical policy when ``num_groups % num_nodes == 0`` (groups to nodes, then
    replication and packing inside each node) and the global policy otherwise (one group, one
    node). Physical expert ``j`` lives on GPU ``j // (num_replicas // num_gpus)``.

    Parameters
    ----------
    weight : array_like, shape [layers, experts]
        Load history per logical expert (non-negative).
    num_replicas : int
        Physical experts per layer, a multiple of ``num_gpus`` and ``>= experts``.
    num_groups : int
        Expert groups (must divide ``experts``).
    num_nodes : int
        Server nodes (must divide ``num_gpus``).
    num_gpus : int
        GPUs.

    Returns
    -------
    phy2log : ndarray of int64, shape [layers, num_replicas]
        Logical expert of every physical slot.
    log2phy : ndarray of int64, shape [layers, experts, max replicas per expert]
        Physical slots of every logical expert, padded with -1.
    logcnt : ndarray of int64, shape [layers, experts]
        Replicas per logical expert.

    Notes
    -----
    Guarantees: every logical expert has at least one replica, ``logcnt.sum(-1) ==
    num_replicas``, every GPU holds ``num_replicas // num_gpus`` slots, and the output is a
    deterministic function of the input. Complexity: O(L R E) for the replication loop plus
    O(L R G) for the packing.

    Examples
    --------
    >>> w = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
    ...               [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]])
    >>> rebalance(w, 16, 4, 2, 8)[0][0].tolist()
    [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] < 1:
        raise InputError(f"weight must be [layers, experts], got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("weight must be finite and non-negative")
    num_layers, num_log = w.shape
    for name, val in (("num_replicas", num_replicas), ("num_groups", num_groups),
                      ("num_nodes", num_nodes), ("num_gpus", num_gpus)):
        if int(val) != val or val < 1:
            raise InputError(f"{name} must be a positive integer, got {val}")
    if num_log % num_groups:
        raise InputError(f"experts ({num_log}) must be a multiple of num_groups ({num_groups})")
    if num_gpus % num_nodes:
        raise InputError(f"num_gpus ({num_gpus}) must be a multiple of num_nodes ({num_nodes})")
    if num_replicas % num_gpus:
        raise InputError(f"num_replicas ({num_replicas}) must be a multiple of num_gpus "
                         f"({num_gpus})")
    if num_replicas < num_log:
        raise InputError(f"num_replicas ({num_replicas}) must be >= experts ({num_log})")
    if num_groups % num_nodes == 0:
        phy2log, phyrank, logcnt = _hierarchical(w, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, phyrank, logcnt = _hierarchical(w, num_replicas, 1, 1, num_gpus)
    max_cnt = int(logcnt.max())
    log2phy = np.full((num_layers, num_log * max_cnt), -1, dtype=np.int64)
    np.put_along_axis(log2phy, phy2log * max_cnt + phyrank,
                      np.broadcast_to(np.arange(num_replicas, dtype=np.int64), phy2log.shape), 1)
    return (phy2log.astype(np.int64), log2phy.reshape(num_layers, num_log, max_cnt),
            logcnt.astype(np.int64))

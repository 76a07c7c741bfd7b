"""``RankTable``: what a data-parallel (DP-attention) router sees of the ranks of one group.

A :class:`~servoir.views.ReplicaTable` with four more live, read-only columns that the
lock-step engine (:mod:`servoir.sim.dp_attention`) keeps at every step boundary. Routers that
need them read them with ``getattr`` and fall back to the plain columns, so the same router also
runs behind the independent cluster and the gateway, where only a ``ReplicaTable`` exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servoir.views import ReplicaTable, readonly


@dataclass(frozen=True, slots=True)
class RankTable(ReplicaTable):
    """Per-rank load of one DP-attention group (columns are read-only live views).

    Attributes
    ----------
    kv_tokens : context tokens (prompt + generated so far) of the requests assigned to the rank
        and not finished: the KV tokens they attend at the next decode step.
    num_active : requests assigned to the rank and not finished; each adds one token of load per
        decode step (the drift of BF-IO's model).
    num_free_slots : ``max_num_seqs`` minus the rank's running and waiting requests.
    kv_free_tokens : free KV capacity in tokens, minus the prompts of requests waiting there.
    seq_cost_tokens : what one more sequence adds to the rank's step time, in KV-token
        equivalents (the per-sequence GEMM and sampling cost over the per-KV-token attention
        cost; the engine fills it from its latency model, the same value for every rank).
    finish_hazard : requests finished per running request per decode step, over the group so
        far (0 before the first finish; the same value for every rank). A population statistic
        any coordinator observes; no request's length is in it.
    busy_cost_tokens : what a rank's iteration costs for running at all (weights, launches),
        in KV-token equivalents: what an empty rank idles at every barrier.
    """

    kv_tokens: np.ndarray
    num_active: np.ndarray
    num_free_slots: np.ndarray
    kv_free_tokens: np.ndarray
    seq_cost_tokens: np.ndarray
    finish_hazard: np.ndarray
    busy_cost_tokens: np.ndarray

    @staticmethod
    def allocate(n: int) -> tuple[RankTable, dict[str, np.ndarray]]:  # type: ignore[override]
        """A table over fresh zeroed arrays; returns (read-only table, writable arrays)."""
        cols = {
            "num_waiting": np.zeros(n, dtype=np.int64),
            "num_running": np.zeros(n, dtype=np.int64),
            "outstanding_tokens": np.zeros(n, dtype=np.int64),
            "kv_used_frac": np.zeros(n, dtype=np.float64),
            "kv_tokens": np.zeros(n, dtype=np.int64),
            "num_active": np.zeros(n, dtype=np.int64),
            "num_free_slots": np.zeros(n, dtype=np.int64),
            "kv_free_tokens": np.zeros(n, dtype=np.int64),
            "seq_cost_tokens": np.zeros(n, dtype=np.int64),
            "finish_hazard": np.zeros(n, dtype=np.float64),
            "busy_cost_tokens": np.zeros(n, dtype=np.int64),
        }
        return RankTable(**{k: readonly(v) for k, v in cols.items()}), cols


def _group_value(replicas: ReplicaTable, column: str) -> float:
    """A :class:`RankTable` column that holds one value for the whole group; 0 on a plain
    table (behind independent instances there is no group)."""
    if isinstance(replicas, RankTable) and replicas.size:
        return float(getattr(replicas, column)[0])
    return 0.0


def finish_hazard(replicas: ReplicaTable) -> float:
    """The group's observed finish hazard (:class:`RankTable`), 0 on a plain table."""
    return _group_value(replicas, "finish_hazard")


def rank_loads(
        replicas: ReplicaTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``(work, drift, free_slots, kv_free, seq_cost)`` per rank, from any replica table.

    ``work`` is the step-time load in KV-token equivalents: KV tokens plus ``seq_cost`` per
    active sequence (a request placed on a rank adds ``prompt + seq_cost``). On a
    :class:`RankTable` these come from its DP columns. On a plain ``ReplicaTable`` (independent
    instances, the gateway) the work is the outstanding tokens, the drift the requests in system,
    ``seq_cost`` zero, and slots and KV are treated as unlimited.
    """
    if isinstance(replicas, RankTable):
        c = int(replicas.seq_cost_tokens[0]) if replicas.size else 0
        return (replicas.kv_tokens + c * replicas.num_active, replicas.num_active,
                replicas.num_free_slots, replicas.kv_free_tokens, c)
    g = replicas.size
    big = np.full(g, np.iinfo(np.int64).max // 4, dtype=np.int64)
    return (replicas.outstanding_tokens, replicas.num_waiting + replicas.num_running, big, big, 0)


def busy_cost_tokens(replicas: ReplicaTable) -> float:
    """An empty rank's idle per barrier (:class:`RankTable`), 0 on a plain table."""
    return _group_value(replicas, "busy_cost_tokens")

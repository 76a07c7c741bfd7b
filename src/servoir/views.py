"""Read-only views: what policies see of the world.

Views are columnar and frozen. ``ReplicaTable`` columns are read-only numpy views onto the
simulator's (or the gateway's) live arrays, so building one costs nothing per decision and a
policy cannot write simulator state (numpy raises ``ValueError: assignment destination is
read-only``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (the owner keeps writing through ``a``)."""
    v = a.view()
    v.setflags(write=False)
    return v


@dataclass(frozen=True, slots=True)
class RequestView:
    """What a policy may know about one request. The true output length is never here.

    ``predicted_output_tokens`` is set only when a length predictor is configured.
    """

    request_id: int
    arrival_at: float
    num_prompt_tokens: int
    predicted_output_tokens: float | None = None
    tenant: str | None = None
    prefix_hashes: tuple[int, ...] | None = None
    program_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaTable:
    """Per-replica load, one entry per instance (columns are read-only live views).

    Attributes
    ----------
    num_waiting : requests queued at the instance, not yet admitted to its batch.
    num_running : requests in the running batch.
    outstanding_tokens : prompt + output tokens of requests assigned and not finished (SGLang's
        "total tokens" load; the output part is the true length only inside the simulator's
        accounting and is never shown per request).
    kv_used_frac : fraction of KV blocks in use at the last event.
    """

    num_waiting: np.ndarray
    num_running: np.ndarray
    outstanding_tokens: np.ndarray
    kv_used_frac: np.ndarray

    @property
    def size(self) -> int:
        """Number of replicas."""
        return len(self.num_waiting)

    @staticmethod
    def allocate(n: int) -> tuple[ReplicaTable, dict[str, np.ndarray]]:
        """A table over fresh zeroed arrays; returns (read-only table, writable arrays)."""
        cols = {
            "num_waiting": np.zeros(n, dtype=np.int64),
            "num_running": np.zeros(n, dtype=np.int64),
            "outstanding_tokens": np.zeros(n, dtype=np.int64),
            "kv_used_frac": np.zeros(n, dtype=np.float64),
        }
        return ReplicaTable(**{k: readonly(v) for k, v in cols.items()}), cols

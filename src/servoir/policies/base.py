"""Policy families: one Protocol each, ``PolicyInfo`` with declared guarantees, a params mixin.

A policy is a small dataclass of hyperparameters plus ``reset()`` that builds its run-time state
(trailing underscore), as in scikit-learn. It talks to the world only through read-only views in
and a decision out. Policies import only servoir's base layer (``views``, ``rng``, ``registry``,
``errors``), never the simulator, so the simulator, the planner and the gateway share them.

Guarantee names and the conformance check behind each (tests/conformance):

- ``deterministic``: same view and rng state give the same decision.
- ``in_range``: a router returns an index in ``[0, size)``.
- ``work_conserving``: a scheduler never leaves capacity idle while a request waits and fits.
- ``starvation_free``: every request finishes under a finite workload.
- ``balanced_counts``: round-robin assignment counts differ by at most one.
- ``joins_shortest``: the chosen replica minimises the policy's load measure.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from servoir.views import ReplicaTable, RequestView

Family = Literal["routing", "scheduling", "caching", "moe"]


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """Declared, machine-checked metadata of a policy."""

    name: str
    family: Family
    guarantees: tuple[str, ...] = ()
    deterministic: bool = True
    reference: str = ""


class ParamsMixin:
    """``params()`` returns the constructor hyperparameters; ``repr`` shows them."""

    def params(self) -> dict[str, Any]:
        """Constructor parameters (not run-time state), e.g. for provenance and sweeps."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}  # type: ignore[arg-type]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


@runtime_checkable
class Router(Protocol):
    """Routing family: choose the instance for each arriving request.

    Called once per arrival, O(1)-O(G) per decision. ``replicas`` columns are live read-only
    views; a router must not keep references to them across calls expecting them frozen.
    """

    info: ClassVar[PolicyInfo]

    def reset(self, num_replicas: int, rng: np.random.Generator) -> None: ...

    def route(self, request: RequestView, replicas: ReplicaTable) -> int: ...


@runtime_checkable
class Scheduler(Protocol):
    """Scheduling family: the admission order inside one instance.

    ``rank`` is called once when a request enters the waiting queue (on arrival and after each
    preemption); lower ranks are admitted first, ties by entry order. The engine mechanics stay
    vLLM v1's: the running batch first, then admissions in rank order while the sequence cap, the
    token budget and free KV blocks allow, stopping at the first request that does not fit.
    ``victim`` names who is preempted when blocks run out: ``"last_admitted"`` (vLLM v1 FCFS pops
    the tail of its running list) or ``"highest_rank"`` (vLLM's priority scheduling).
    """

    info: ClassVar[PolicyInfo]
    victim: ClassVar[Literal["last_admitted", "highest_rank"]]

    def reset(self, rng: np.random.Generator) -> None: ...

    def rank(self, request: RequestView, now: float) -> float: ...


@runtime_checkable
class Evictor(Protocol):
    """Caching family: which cached KV blocks to evict (prefix caching)."""

    info: ClassVar[PolicyInfo]

    def reset(self, capacity_blocks: int, rng: np.random.Generator) -> None: ...

    def on_insert(self, block_ids: np.ndarray, now: float) -> None: ...

    def on_hit(self, block_ids: np.ndarray, now: float) -> None: ...

    def evict(self, num_blocks: int) -> np.ndarray: ...


@runtime_checkable
class ExpertPlacement(Protocol):
    """MoE family: place (and replicate) experts on GPUs from their load history.

    Not a per-request policy: a function over numpy arrays, as DeepSeek's EPLB
    ``rebalance_experts``. ``weight`` is ``[layers, experts]`` load; the result is
    ``(phy2log [L, replicas], log2phy [L, experts, max replicas] padded with -1,
    logcnt [L, experts])``, all int64.
    """

    def __call__(self, weight: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int,
                 num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

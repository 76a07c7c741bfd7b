"""The request record and the columnar ``Workload`` every generator and reader returns.

A workload is struct-of-arrays (numpy columns, one row per request, sorted by arrival), so a
million requests cost a few arrays, not a million objects. ``Request`` is the row view for users
and tests.

Multi-turn sessions: a row with ``session_id >= 0`` and ``turn > 0`` does not arrive at
``arrival_at``; it arrives ``think_time_s`` after the previous turn of its session finishes (the
simulator schedules it). Its ``arrival_at`` is then only a lower bound used for ordering.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from servoir.errors import InputError


@dataclass(frozen=True, slots=True)
class Request:
    """One request: what a serving engine sees, plus the hidden true output length."""

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prefix_hashes: tuple[int, ...] | None = None
    tenant: str | None = None
    program_id: str | None = None


def _i64(a: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


@dataclass(frozen=True)
class Workload:
    """Columnar requests sorted by ``arrival_at`` (seconds from the start of the run).

    Columns carry units in their names. Optional columns are ``None`` when the source has no such
    information. ``prefix_hashes[i]`` is a tuple of block hashes (identical leading hashes mean a
    shareable prefix) of ``prefix_block_tokens`` tokens each.
    """

    arrival_at: np.ndarray
    num_prompt_tokens: np.ndarray
    num_output_tokens: np.ndarray
    prefix_hashes: tuple[tuple[int, ...], ...] | None = None
    prefix_block_tokens: int = 16
    tenant: np.ndarray | None = None  # object array of str
    program_id: np.ndarray | None = None  # object array of str
    session_id: np.ndarray | None = None  # int64, -1 = not part of a session
    turn: np.ndarray | None = None  # int64, 0-based turn index within the session
    think_time_s: np.ndarray | None = None  # float64, pause before this turn
    source: str = "generated"
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrival_at", np.ascontiguousarray(self.arrival_at, dtype=np.float64))
        object.__setattr__(self, "num_prompt_tokens", _i64(self.num_prompt_tokens))
        object.__setattr__(self, "num_output_tokens", _i64(self.num_output_tokens))
        n = len(self.arrival_at)
        for name in ("num_prompt_tokens", "num_output_tokens", "tenant", "program_id",
                     "session_id", "turn", "think_time_s", "prefix_hashes"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise InputError(f"column '{name}' has {len(col)} rows, expected {n}", file=self.source)
        if n:
            if not np.all(np.isfinite(self.arrival_at)) or self.arrival_at.min() < 0:
                raise InputError("arrival times must be finite and >= 0", file=self.source)
            if np.any(np.diff(self.arrival_at) < 0):
                raise InputError("requests must be sorted by arrival time", file=self.source)
            if self.num_prompt_tokens.min() < 1:
                raise InputError("prompt_tokens must be >= 1", file=self.source)
            if self.num_output_tokens.min() < 1:
                raise InputError("output_tokens must be >= 1", file=self.source)

    def __len__(self) -> int:
        return len(self.arrival_at)

    def __iter__(self) -> Iterator[Request]:
        for i in range(len(self)):
            yield self.request(i)

    def request(self, i: int) -> Request:
        """Row ``i`` as a :class:`Request`."""
        return Request(
            float(self.arrival_at[i]),
            int(self.num_prompt_tokens[i]),
            int(self.num_output_tokens[i]),
            self.prefix_hashes[i] if self.prefix_hashes is not None else None,
            str(self.tenant[i]) if self.tenant is not None else None,
            str(self.program_id[i]) if self.program_id is not None else None,
        )

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.arrival_at[-1] - self.arrival_at[0]) if len(self) > 1 else 0.0

    @property
    def mean_rate(self) -> float:
        """Mean arrival rate (requests per second) over the span of the arrivals."""
        d = self.duration_s
        return (len(self) - 1) / d if d > 0 else float("inf")

    def take(self, idx: np.ndarray | slice) -> Workload:
        """Rows ``idx`` (in order) as a new workload."""
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)

        def pick(col):  # type: ignore[no-untyped-def]
            return None if col is None else col[idx]

        return replace(
            self,
            arrival_at=self.arrival_at[idx],
            num_prompt_tokens=self.num_prompt_tokens[idx],
            num_output_tokens=self.num_output_tokens[idx],
            prefix_hashes=None if self.prefix_hashes is None else tuple(self.prefix_hashes[i] for i in idx),
            tenant=pick(self.tenant),
            program_id=pick(self.program_id),
            session_id=pick(self.session_id),
            turn=pick(self.turn),
            think_time_s=pick(self.think_time_s),
        )

    def head(self, n: int) -> Workload:
        """The first ``n`` requests."""
        return self.take(slice(0, n))

    def with_rate(self, rate: float) -> Workload:
        """Replay at mean rate ``rate`` req/s by scaling inter-arrival times (order preserved).

        Time scaling keeps the trace's burstiness (coefficient of variation of the gaps) and
        changes only its mean rate.
        """
        if not rate > 0:
            raise InputError(f"rate must be > 0, got {rate}", field="workload.rate")
        if len(self) < 2 or self.duration_s == 0:
            return self
        t0 = self.arrival_at[0]
        factor = self.mean_rate / rate
        return replace(self, arrival_at=(self.arrival_at - t0) * factor, meta={**self.meta, "rate_scale": factor})

    @staticmethod
    def from_records(records: Sequence[Request], source: str = "records") -> Workload:
        """Build a workload from :class:`Request` rows (sorted here by arrival, stable)."""
        order = np.argsort(np.array([r.arrival_s for r in records], dtype=np.float64), kind="stable")
        rs = [records[i] for i in order]
        has_prefix = any(r.prefix_hashes is not None for r in rs)
        has_tenant = any(r.tenant is not None for r in rs)
        has_prog = any(r.program_id is not None for r in rs)
        return Workload(
            arrival_at=np.array([r.arrival_s for r in rs], dtype=np.float64),
            num_prompt_tokens=_i64([r.prompt_tokens for r in rs]),
            num_output_tokens=_i64([r.output_tokens for r in rs]),
            prefix_hashes=tuple(r.prefix_hashes or () for r in rs) if has_prefix else None,
            tenant=np.array([r.tenant or "" for r in rs], dtype=object) if has_tenant else None,
            program_id=np.array([r.program_id or "" for r in rs], dtype=object) if has_prog else None,
            source=source,
        )

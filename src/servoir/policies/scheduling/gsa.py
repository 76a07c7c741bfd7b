"""Geometric slicing: a non-clairvoyant KV scheduler (after Feng, Yang, Zhang 2026)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from servoir.policies.base import PolicyInfo
from servoir.policies.scheduling.lookahead import BatchView, LookaheadScheduler
from servoir.registry import register


@register
@dataclass(kw_only=True, repr=False)
class GSA(LookaheadScheduler):
    """Schedule on geometric length guesses, no predictions: ``base * growth^k``.

    A request's guess is the smallest ``base * growth^k`` above the output it has been seen to
    produce, so it starts at ``base`` and moves up one geometric class each time it outlives
    its guess (the slices of the geometric slicing algorithm). Waiting requests are admitted in
    ascending guess, then arrival (least attained service first, by class), while the future
    memory peak computed with the guesses fits; on overflow the request in the highest class is
    preempted (latest admitted among ties) and re-enters with its grown guess. Predictions are
    never read.

    This adapts GSA to an engine that decides only at events: the published algorithm restarts
    jobs at the end of each geometric phase and staggers phases to smooth memory; here a job
    that outlives its slice keeps running and is restarted only if memory overflows.

    Guarantees
    ----------
    - ``prediction_free``: decisions never depend on the predictor; checked by running one
      workload under an oracle and under heavy noise and requiring identical results.
    - Feng, Yang, Zhang prove GSA at most 61.92-competitive (32 with large memory) with no
      length information; that bound is for their phase-restart algorithm, not asserted here.
    - ``work_conserving`` and ``starvation_free`` (finite workloads).

    Complexity
    ----------
    As MC-SF per decision.

    References
    ----------
    Y. Feng, Z. Yang, Y. Zhang, "Competitive Non-Clairvoyant KV-Cache Scheduling for LLM
    Inference", arXiv 2601.22996 (2026).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "gsa", "scheduling",
        guarantees=("work_conserving", "starvation_free", "prediction_free"),
        reference="Feng, Yang, Zhang 2026, arXiv 2601.22996 (adapted)")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "highest_rank"
    trusts: ClassVar[str] = "none"
    base: float = 32.0
    growth: float = 2.0

    def __post_init__(self) -> None:
        if not self.base >= 1:
            raise ValueError(f"base must be >= 1, got {self.base}")
        if not self.growth > 1:
            raise ValueError(f"growth must be > 1, got {self.growth}")

    def estimates(self, predicted: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """The geometric guess: smallest ``base * growth^k > seen`` (predictions ignored)."""
        s = np.asarray(seen, dtype=np.float64)
        ratio = np.maximum(s, self.base) / self.base
        k = np.where(s < self.base, 0.0, np.floor(np.log(ratio) / np.log(self.growth)) + 1.0)
        guess = self.base * self.growth**k
        # Guard float rounding at exact powers: the guess must exceed `seen`.
        return np.where(guess > s, guess, guess * self.growth)

    def keys(self, view: BatchView, est: np.ndarray) -> np.ndarray:
        """Ascending guess (geometric class)."""
        return est

"""A_max: schedule on the upper ends of interval predictions (Chen, Ye, Zhou 2025)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from servoir.policies.base import PolicyInfo
from servoir.policies.scheduling.lookahead import LookaheadScheduler
from servoir.registry import register


@register
@dataclass(kw_only=True, repr=False)
class AMax(LookaheadScheduler):
    """MC-SF on the upper ends ``u`` of interval predictions: conservative, never overflows.

    Every request is taken to be as long as its upper end ``u``: waiting requests are admitted
    in ascending ``u`` (ties: arrival, then id) while the future memory peak computed with ``u``
    fits (skip and continue). Since the truth never exceeds ``u`` the batch never overflows, at
    the price of under-filled memory when intervals are wide. Overflow (possible only when the
    predictor is not an interval, e.g. noisy or none) preempts the largest ``u`` first.

    Guarantees
    ----------
    - ``kv_safe_interval``: with interval predictions (``l <= o <= u``) in the unit-time model the
      batch never overflows and nothing is preempted, for every alpha. Checked on random
      instances.
    - ``amax_ratio``: Chen, Ye, Zhou prove a competitive ratio between
      ``(1 + alpha^(-1/2)) / (2 alpha)`` and ``(1 + 1/alpha) / (2 alpha)`` against hindsight
      shortest-first, for requests of one prompt size arriving together. Checked: on such
      instances A_max's total latency over hindsight shortest-first (MC-SF with the true
      lengths, the paper's benchmark) stays under the upper bound.
    - ``work_conserving`` and ``starvation_free`` (finite workloads).

    Complexity
    ----------
    As MC-SF: O(n log n + W (log n + a n)) per decision.

    References
    ----------
    Z. Chen, Y. Ye, Z. Zhou, "Adaptively Robust LLM Inference Optimization under Prediction
    Uncertainty", arXiv 2508.14544 (2025).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "a_max", "scheduling",
        guarantees=("work_conserving", "starvation_free", "kv_safe_interval", "amax_ratio"),
        reference="Chen, Ye, Zhou 2025, arXiv 2508.14544")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "highest_rank"
    trusts: ClassVar[str] = "upper"
    default_output_tokens: float = 256.0

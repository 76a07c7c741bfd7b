"""MC-SF: memory-constrained shortest-first (Jaillet et al. 2025)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from servoir.policies.base import PolicyInfo
from servoir.policies.scheduling.lookahead import LookaheadScheduler
from servoir.registry import register


@register
@dataclass(kw_only=True, repr=False)
class MCSF(LookaheadScheduler):
    """Admit in ascending predicted output length while the future memory peak fits.

    At each decision the running batch is kept; waiting requests are taken in ascending refined
    prediction ``max(prediction, seen + 1)`` (ties: arrival, then id) and each is admitted when
    the tentative batch's predicted memory stays within capacity at every future completion
    instant (:class:`~servoir.policies.scheduling.lookahead.FuturePeak`). ``strict=False`` is the
    "skip and continue" variant (a candidate that fails is skipped and shorter-ranked ones behind
    it are still tried); ``strict=True`` stops at the first failure, as in the paper's listing.
    Reads the point prediction (the midpoint of an interval); with no predictor configured every
    request is estimated at ``default_output_tokens``. When an under-prediction overflows memory,
    the request with the largest refined prediction is preempted first (it would be admitted
    last), ties to the latest admitted.

    Guarantees
    ----------
    - ``kv_safe_exact``: with exact lengths in the unit-time model (Jaillet et al.: one token per
      step, request holds ``s + j`` at its ``j``-th step) memory never overflows, so nothing is
      ever preempted. Checked on random instances in ``tests/conformance/checks_scheduling.py``.
    - ``work_conserving`` (an empty batch always admits the first-ranked request) and
      ``starvation_free`` on finite workloads.
    - Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou (arXiv 2502.07115): no deterministic online
      algorithm is O(1)-competitive under adversarial arrivals (Omega(sqrt n)); MC-SF is
      O(1)-competitive with identical prompts and exact lengths, and measured at about 1.005
      (all arrive at 0) and 1.047 (online arrivals) times the hindsight optimum on synthetic
      data. Our reproduction: ``docs/explanation/scheduling.md`` and
      ``tests/unit/scheduling/test_published_shapes.py``.

    Complexity
    ----------
    O(n log n + W (log n + a n)) per decision for n running, W waiting and a admitted requests
    (an O(log n) test per candidate, an O(n) profile update per admission); O(n + W) memory.

    References
    ----------
    P. Jaillet et al., "Online Scheduling for LLM Inference with KV Cache Constraints",
    arXiv 2502.07115 (2025).
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "mc_sf", "scheduling", guarantees=("work_conserving", "starvation_free", "kv_safe_exact"),
        reference="Jaillet et al. 2025, arXiv 2502.07115")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "highest_rank"
    trusts: ClassVar[str] = "point"
    strict: bool = False
    default_output_tokens: float = 256.0

    def __post_init__(self) -> None:
        if not self.default_output_tokens >= 1:
            raise ValueError(f"default_output_tokens must be >= 1, got {self.default_output_tokens}")

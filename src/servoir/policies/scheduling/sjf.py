"""Shortest predicted job first, with the engine's vLLM admission mechanics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.registry import register
from servoir.views import RequestView


@register
@dataclass(kw_only=True, repr=False)
class SJF(ParamsMixin):
    """Rank by predicted output length; admit as vLLM does (stop at the first misfit).

    The baseline "SJF with predictions" that engines with a priority queue can run today: the
    rank is the predicted output length (the point prediction; the midpoint of an interval;
    ``default_output_tokens`` with no predictor), ties by queue entry. No memory lookahead:
    admission stops at the first request whose first chunk does not fit now, and on KV
    exhaustion the highest-ranked (longest predicted) running request is preempted.

    Guarantees
    ----------
    ``work_conserving`` within the engine's rule and ``starvation_free`` on finite workloads
    (a long request can be overtaken indefinitely only by an infinite stream of shorter ones).

    Complexity
    ----------
    O(1) per rank; the engine keeps a heap, O(log n) per admission.
    """

    info: ClassVar[PolicyInfo] = PolicyInfo(
        "sjf", "scheduling", guarantees=("work_conserving", "starvation_free"),
        reference="shortest-job-first with predicted lengths (e.g. Fu et al., arXiv 2408.15792)")
    victim: ClassVar[Literal["last_admitted", "highest_rank"]] = "highest_rank"
    trusts: ClassVar[str] = "point"
    default_output_tokens: float = 256.0

    def reset(self, rng: np.random.Generator) -> None:
        """No state."""

    def rank(self, request: RequestView, now: float) -> float:
        """The predicted output length."""
        p = request.predicted_output_tokens
        return float(self.default_output_tokens if p is None else p)

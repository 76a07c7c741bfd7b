"""BF-IO's lookahead: the steps ahead its program predicts, their weights, and the expected
cost of ranks that run dry (the opt-in survival model of
:class:`~servoir.policies.routing.bf_io.BfIo`).

The plain lookahead is the horizon of algorithms.md section 2.3 (every active request assumed
to keep running for H steps). The survival lookahead replaces "still running" by its
probability under memoryless output lengths at the finish hazard the group has observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lookahead:
    """The steps ahead the program predicts (``steps``), the weight of each (``weights``) and
    the chance a rank's requests have all finished by then (``finished``, per request).

    ``lookahead(H)`` is the plain horizon: steps 1..H, weight 1 each (every active request
    assumed to keep running). ``lookahead(H, q, F)`` with an observed finish hazard ``q > 0``
    predicts each request still running ``h`` steps ahead with probability ``(1 - q)^h``
    (memoryless output lengths of mean ``1 / q``; no per-request length is used), and extends
    the horizon by doubling (2H, 4H, ...) up to ``4 / q`` steps, each later point standing for
    the steps since the previous one (its ``span``): the weight of step ``h`` is its span times
    ``(1 - q)^h``. The far points see how the ranks will drain, which the next H steps cannot:
    a request's expected remaining work is the same for every active request, so far ahead a
    rank's load follows its request count, not only its KV.

    ``busy_cost`` ``F`` (KV-token equivalents) is what a rank's iteration costs for being busy at
    all (weights, launches); a rank whose requests have all finished idles that much at every
    barrier. The expected cost of empty ranks, ``sum_h span_h F sum_g (1 - (1 - q)^h)^n_g``
    for ``n_g`` requests on rank ``g``, joins the objective (:meth:`empty_cost`): separable and
    convex in each rank's count, so it favours spreading requests when ranks may run dry.
    """

    steps: np.ndarray
    weights: np.ndarray
    span: np.ndarray | None = None
    finished: np.ndarray | None = None  # 1 - (1 - q)^h per step, None: no empty-rank cost
    busy_cost: float = 0.0

    @property
    def size(self) -> int:
        """Number of predicted points."""
        return len(self.steps)

    def empty_cost(self, counts: np.ndarray) -> np.ndarray:
        """Expected busy cost lost to empty ranks, for rank request counts ``counts`` (last axis:
        ranks; any leading axes are placements). 0 without a hazard or a busy cost."""
        counts = np.asarray(counts)
        if self.finished is None or self.busy_cost <= 0:
            return np.zeros(counts.shape[:-1])
        out = np.zeros(counts.shape[:-1])
        for f, sp in zip(self.finished, self.span, strict=True):  # type: ignore[arg-type]
            out += sp * (f ** counts).sum(axis=-1)
        return self.busy_cost * out

    def empty_gain(self, n: np.ndarray, cap: int) -> np.ndarray:
        """``[G, cap]``: how much each rank's empty cost falls with its ``m``-th new request
        (m = 1..cap), decreasing in m (the cost is convex in the count)."""
        n = np.asarray(n, dtype=np.float64)
        if self.finished is None or self.busy_cost <= 0 or cap <= 0:
            return np.zeros((len(n), max(cap, 0)))
        m = np.arange(cap, dtype=np.float64)
        out = np.zeros((len(n), cap))
        for f, sp in zip(self.finished, self.span, strict=True):  # type: ignore[arg-type]
            out += sp * f ** (n[:, None] + m[None, :]) * (1.0 - f)
        return self.busy_cost * out


def lookahead(horizon: int, hazard: float = 0.0, busy_cost: float = 0.0) -> Lookahead:
    """The program's :class:`Lookahead` for a base ``horizon``, a finish ``hazard`` and the busy
    cost of a rank's iteration (KV-token equivalents; counted only with a hazard)."""
    hs = [float(h) for h in range(1, horizon + 1)]
    span = [1.0] * horizon
    if hazard > 0:
        h = 2.0 * horizon
        while h <= 4.0 / hazard and len(hs) < horizon + 16:
            hs.append(h)
            span.append(h / 2)
            h *= 2
    steps, sp = np.array(hs), np.array(span)
    alive = (1.0 - min(hazard, 1.0)) ** steps
    if hazard <= 0:
        return Lookahead(steps, sp * alive)
    return Lookahead(steps, sp * alive, sp, 1.0 - alive, float(busy_cost))


def as_lookahead(horizon: int | Lookahead) -> Lookahead:
    """``horizon`` as a :class:`Lookahead` (an int is the plain horizon 1..H)."""
    return horizon if isinstance(horizon, Lookahead) else lookahead(horizon)


def base_horizon(la: Lookahead) -> int:
    """The unit-step part of a lookahead (the tie-break's averaging window)."""
    return int(np.sum(la.steps == np.arange(1, la.size + 1))) or 1

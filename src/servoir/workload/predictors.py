"""Output-length predictors: what a scheduling policy may know about a request's output length.

A predictor turns a workload (whose true output lengths it may read, as a trained model would
have seen them) into per-request predictions ``[lower, point, upper]``. A policy never sees the
truth: the simulator shows each policy the one number it trusts (``Scheduler.trusts``: the point,
the lower or the upper end) in ``RequestView.predicted_output_tokens``.

Kinds (``prediction.kind`` / ``--predictor``):

==========================  ====================================================================
``oracle``                  the truth (lower = point = upper)
``noisy:SIGMA``             truth times a lognormal factor ``exp(SIGMA * N(0, 1))`` (a point
                            prediction: lower = point = upper)
``interval:ALPHA``          ``[l, u]`` with ``l = ALPHA * u`` and the truth uniform inside; the
                            point is the midpoint
``interval:ALPHA:adversarial``  the truth where it hurts the policy most: at ``u`` for policies
                            that trust ``l`` or the midpoint (they under-estimate and overflow),
                            at ``l`` for policies that trust ``u`` (they over-reserve)
``learned``                 quantiles of output length by prompt-length bucket, fitted on the
                            first ``train_frac`` (20%) of the trace: lower = q10, point = median,
                            upper = q90 of the request's bucket
==========================  ====================================================================

Predictions are floats (token counts need not be integers for ranking); interval ends are whole
tokens with ``1 <= l <= truth <= u`` (uniform and adversarial placement alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from servoir.errors import InputError
from servoir.rng import stream

KINDS = ("oracle", "noisy", "interval", "learned")
TRUSTS = ("none", "point", "lower", "upper")


@dataclass(frozen=True)
class Predictions:
    """Per-request predicted output lengths (float arrays, one entry per request)."""

    lower: np.ndarray
    point: np.ndarray
    upper: np.ndarray

    def trusted(self, trusts: str) -> np.ndarray | None:
        """The column a policy that trusts ``trusts`` sees (``None`` for ``"none"``)."""
        if trusts == "none":
            return None
        if trusts not in TRUSTS:
            raise InputError(f"unknown prediction use '{trusts}'; valid: {', '.join(TRUSTS)}")
        return {"point": self.point, "lower": self.lower, "upper": self.upper}[trusts]


def parse_predictor(text: str) -> tuple[str, dict[str, Any]]:
    """Parse the ``--predictor`` shorthand into ``(kind, params)``.

    Examples
    --------
    >>> parse_predictor("interval:0.5")
    ('interval', {'alpha': 0.5})
    >>> parse_predictor("interval:0.25:adversarial")
    ('interval', {'alpha': 0.25, 'placement': 'adversarial'})
    >>> parse_predictor("noisy:0.3")
    ('noisy', {'sigma': 0.3})
    """
    parts = [p.strip() for p in text.strip().split(":")]
    kind = parts[0]
    usage = "oracle | noisy:SIGMA | interval:ALPHA[:uniform|:adversarial] | learned"
    try:
        if kind in ("oracle", "learned") and len(parts) == 1:
            return kind, {}
        if kind == "noisy" and len(parts) == 2:
            return kind, {"sigma": float(parts[1])}
        if kind == "interval" and len(parts) in (2, 3):
            params: dict[str, Any] = {"alpha": float(parts[1])}
            if len(parts) == 3:
                params["placement"] = parts[2]
            return kind, params
    except ValueError:
        pass
    raise InputError(f"cannot parse predictor '{text}'; expected {usage}", field="prediction")


def predict(kind: str, params: dict[str, Any], truth: np.ndarray, prompt: np.ndarray, *,
            seed: int, trusts: str = "point") -> Predictions:
    """Predictions of ``kind`` for requests with true outputs ``truth`` and prompts ``prompt``.

    ``trusts`` (what the policy reads) only matters for adversarial intervals. Randomness comes
    from the named stream ``prediction`` of ``seed``, so every policy compared on one seed sees
    predictions drawn from the same numbers.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prompt = np.asarray(prompt, dtype=np.float64)
    rng = stream(seed, "prediction")
    p = dict(params)
    if kind == "oracle":
        _no_params(kind, p)
        return Predictions(truth.copy(), truth.copy(), truth.copy())
    if kind == "noisy":
        sigma = _take_float(p, "sigma", kind, lo=0.0)
        _no_params(kind, p)
        point = truth * np.exp(sigma * rng.standard_normal(len(truth)))
        return Predictions(point, point, point)
    if kind == "interval":
        alpha = _take_float(p, "alpha", kind, lo=0.0, lo_open=True, hi=1.0)
        placement = p.pop("placement", "uniform")
        _no_params(kind, p)
        return interval(truth, alpha, placement, rng, trusts)
    if kind == "learned":
        frac = _take_float(p, "train_frac", kind, default=0.2, lo=0.0, lo_open=True, hi=1.0)
        buckets = int(_take_float(p, "buckets", kind, default=8, lo=1))
        _no_params(kind, p)
        return learned(truth, prompt, frac, buckets)
    raise InputError(f"unknown predictor kind '{kind}'; valid: {', '.join(KINDS)}",
                     field="prediction.kind")


def interval(truth: np.ndarray, alpha: float, placement: str, rng: np.random.Generator,
             trusts: str = "point") -> Predictions:
    """``[l, u]`` with ``l ~= alpha * u`` around ``truth``, placed uniformly or adversarially."""
    if placement == "uniform":
        # truth = l + U (u - l) = u (alpha + U (1 - alpha)), U ~ Uniform[0, 1).
        pos = alpha + rng.random(len(truth)) * (1.0 - alpha)
        u_real = truth / pos
    elif placement == "adversarial":
        # Trusting l (or the midpoint): the truth sits at u. Trusting u: the truth sits at l.
        u_real = truth / alpha if trusts == "upper" else truth.copy()
    else:
        raise InputError(f"unknown interval placement '{placement}'; valid: uniform, adversarial",
                         field="prediction.params.placement")
    upper = np.maximum(np.round(u_real), truth)
    lower = np.clip(np.round(alpha * u_real), 1.0, truth)
    if placement == "adversarial" and trusts == "upper":
        lower = truth.copy()
    return Predictions(lower, 0.5 * (lower + upper), upper)


def learned(truth: np.ndarray, prompt: np.ndarray, train_frac: float,
            buckets: int) -> Predictions:
    """Quantiles (10%, 50%, 90%) of output length per prompt-length bucket.

    Fitted on the first ``train_frac`` of the requests (in arrival order) and applied to all of
    them: the fitted part is in-sample, the rest (80% by default) is the held-out use. Bucket
    edges are quantiles of the training prompts; an empty bucket uses the global quantiles.
    """
    n = len(truth)
    n_train = max(1, int(np.floor(train_frac * n)))
    tp, to = prompt[:n_train], truth[:n_train]
    qs = np.linspace(0.0, 1.0, buckets + 1)[1:-1]
    edges = np.unique(np.quantile(tp, qs)) if len(qs) else np.array([])
    glob = np.quantile(to, [0.1, 0.5, 0.9])
    table = np.empty((len(edges) + 1, 3))
    train_bucket = np.searchsorted(edges, tp, side="right")
    for b in range(len(edges) + 1):
        sel = to[train_bucket == b]
        table[b] = np.quantile(sel, [0.1, 0.5, 0.9]) if len(sel) else glob
    q = table[np.searchsorted(edges, prompt, side="right")]
    return Predictions(np.maximum(q[:, 0], 1.0), np.maximum(q[:, 1], 1.0),
                       np.maximum(q[:, 2], 1.0))


def _take_float(p: dict[str, Any], key: str, kind: str, *, default: float | None = None,
                lo: float | None = None, lo_open: bool = False, hi: float | None = None) -> float:
    field = f"prediction.params.{key}"
    if key not in p:
        if default is None:
            raise InputError(f"predictor '{kind}' needs params.{key}", field=field)
        return default
    try:
        v = float(p.pop(key))
    except (TypeError, ValueError) as e:
        raise InputError(f"predictor '{kind}': {key} must be a number", field=field) from e
    if not np.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo))) or (
            hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise InputError(f"predictor '{kind}': {key}={v} outside {rng}", field=field)
    return v


def _no_params(kind: str, p: dict[str, Any]) -> None:
    if p:
        raise InputError(f"predictor '{kind}' takes no params {sorted(p)}",
                         field="prediction.params")

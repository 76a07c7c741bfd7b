"""Output analysis for simulation results: confidence intervals, quantiles, time averages.

Conventions shared by every function here:

- Samples are 1-D array-likes of floats; anything else raises :class:`ValueError`. NaNs are not
  removed: they propagate into the result, so a bad record is never silently hidden.
- Intervals are two-sided Student-t intervals :math:`\\bar x \\pm t_{1-\\alpha/2,\\,n-1}\\,s/\\sqrt n`.
- Small samples never raise. With ``n == 0`` the mean and both bounds are NaN; with ``n == 1``
  the mean is the single value and both bounds are NaN (one observation says nothing about
  spread). A sample with zero spread gives ``lo == hi == mean``.

References
----------
.. [1] A. M. Law, *Simulation Modeling and Analysis*, 5th ed. McGraw-Hill, 2015, ch. 9
   (replication/deletion and batch means).
.. [2] R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages", *The American
   Statistician* 50(4):361-365, 1996 (definition 7 is numpy's ``"linear"``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "batch_means_ci",
    "integral",
    "mean_ci",
    "quantile",
    "replication_ci",
    "summarize",
    "t_critical",
    "time_average",
]

_NAN = float("nan")


# --------------------------------------------------------------------------- helpers


def _sample(x: ArrayLike, name: str = "x") -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {a.shape}")
    return a


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def t_critical(df: float, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value :math:`t_{(1+c)/2,\\,df}`.

    Parameters
    ----------
    df : float
        Degrees of freedom, > 0.
    confidence : float
        Two-sided confidence level in ``(0, 1)``.

    Examples
    --------
    >>> round(t_critical(10, 0.95), 4)
    2.2281
    """
    conf = _check_confidence(confidence)
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    # scipy is a heavy import (hundreds of ms); defer it off servoir's start-up path (STYLE B1).
    from scipy.special import stdtrit

    return float(stdtrit(float(df), 0.5 + conf / 2.0))


# --------------------------------------------------------------------------- intervals


def mean_ci(x: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Sample mean with a Student-t confidence interval, assuming i.i.d. observations.

    .. math:: \\bar x \\pm t_{(1+c)/2,\\,n-1} \\frac{s}{\\sqrt n}, \\quad
              s^2 = \\frac{1}{n-1} \\sum_i (x_i - \\bar x)^2 .

    Exact for normal data, asymptotically valid otherwise (CLT). For autocorrelated output of
    a single run use :func:`batch_means_ci` instead: this interval would be far too narrow.

    Parameters
    ----------
    x : array_like
        1-D sample.
    confidence : float
        Two-sided confidence level in ``(0, 1)``.

    Returns
    -------
    tuple of float
        ``(mean, lo, hi)``. ``n == 0``: ``(nan, nan, nan)``; ``n == 1``: ``(x[0], nan, nan)``.

    Examples
    --------
    >>> m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    >>> m, round(lo, 4), round(hi, 4)
    (2.0, -0.4841, 4.4841)
    """
    a = _sample(x)
    conf = _check_confidence(confidence)
    n = a.size
    if n == 0:
        return _NAN, _NAN, _NAN
    m = float(a.mean())
    if n == 1:
        return m, _NAN, _NAN
    half = t_critical(n - 1, conf) * float(a.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def replication_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Confidence interval from independent replications (replication/deletion, [1]_ §9.5).

    ``values[i]`` is one statistic (e.g. the mean sojourn after warm-up) of replication ``i``,
    each run from an independent seed stream. The replication values are i.i.d., so this is
    :func:`mean_ci` on them, with the same return convention and small-sample behaviour.
    """
    return mean_ci(_sample(values, "values"), confidence)


def batch_means_ci(
    x: ArrayLike,
    num_batches: int = 20,
    warmup_frac: float = 0.1,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Confidence interval for the steady-state mean of one long, autocorrelated run.

    Non-overlapping batch means ([1]_ §9.5.3): drop the first ``floor(warmup_frac * n)``
    observations as warm-up, split the remaining ``m`` into ``num_batches`` consecutive batches
    of ``b = m // num_batches`` observations (the ``m % num_batches`` leftovers right after the
    warm-up are dropped too, so the most recent data is kept), and apply :func:`mean_ci` to the
    batch means. Valid when the batches are long compared with the correlation time, so that
    the batch means are close to i.i.d. normal.

    The point estimate is the mean of the retained observations (equal to the mean of the
    batch means).

    Parameters
    ----------
    x : array_like
        1-D output sequence in time order (e.g. successive waiting times).
    num_batches : int
        Number of batches, >= 2 (10 to 30 is customary).
    warmup_frac : float
        Fraction of observations deleted from the start, in ``[0, 1)``.
    confidence : float
        Two-sided confidence level in ``(0, 1)``.

    Returns
    -------
    tuple of float
        ``(mean, lo, hi)``. An empty ``x`` gives ``(nan, nan, nan)``.

    Raises
    ------
    ValueError
        If ``num_batches < 2``, ``warmup_frac`` is outside ``[0, 1)``, or fewer than
        ``num_batches`` observations remain after the warm-up.
    """
    a = _sample(x)
    conf = _check_confidence(confidence)
    if isinstance(num_batches, bool) or int(num_batches) != num_batches or num_batches < 2:
        raise ValueError(f"num_batches must be an integer >= 2, got {num_batches!r}")
    k = int(num_batches)
    if not 0.0 <= float(warmup_frac) < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac!r}")
    if a.size == 0:
        return _NAN, _NAN, _NAN
    kept = a[int(math.floor(warmup_frac * a.size)) :]
    b = kept.size // k
    if b == 0:
        raise ValueError(
            f"batch_means_ci needs at least num_batches={k} observations after the warm-up, "
            f"got {kept.size} (of {a.size})"
        )
    kept = kept[kept.size - b * k :]
    means = kept.reshape(k, b).mean(axis=1)
    _, lo, hi = mean_ci(means, conf)
    return float(kept.mean()), lo, hi


# --------------------------------------------------------------------------- quantiles, summary


def quantile(x: ArrayLike, q: ArrayLike) -> float | np.ndarray:
    """Sample quantile(s), identical to ``numpy.quantile(x, q, method="linear")``.

    Linear interpolation between order statistics at position ``(n - 1) * q`` (Hyndman-Fan
    definition 7, [2]_). An empty sample gives NaN (of the shape of ``q``).

    Parameters
    ----------
    x : array_like
        1-D sample.
    q : float or array_like
        Probabilities in ``[0, 1]``.

    Returns
    -------
    float or numpy.ndarray
        A float for scalar ``q``, an array of ``q``'s shape otherwise.

    Examples
    --------
    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    a = _sample(x)
    qa = np.asarray(q, dtype=float)
    if not np.all((qa >= 0.0) & (qa <= 1.0)):
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    out = np.full(qa.shape, np.nan) if a.size == 0 else np.quantile(a, qa, method="linear")
    return float(out) if np.ndim(out) == 0 else np.asarray(out)


def summarize(x: ArrayLike, confidence: float = 0.95) -> dict[str, float | int]:
    """Summary of a sample used in result tables: mean, percentiles and an i.i.d. t-interval.

    Returns
    -------
    dict
        Keys ``mean, p50, p90, p99, ci_low, ci_high`` (floats) and ``n`` (int). ``ci_low`` and
        ``ci_high`` come from :func:`mean_ci` (so they assume independent observations).
        ``n == 0``: every float is NaN; ``n == 1``: the mean and percentiles are the value and
        the bounds are NaN.

    Examples
    --------
    >>> s = summarize([1.0, 2.0, 3.0])
    >>> s["mean"], s["p50"], s["n"]
    (2.0, 2.0, 3)
    """
    a = _sample(x)
    mean, lo, hi = mean_ci(a, confidence)
    p50, p90, p99 = (float(v) for v in np.atleast_1d(quantile(a, [0.5, 0.9, 0.99])))
    return {
        "mean": mean,
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "ci_low": lo,
        "ci_high": hi,
        "n": int(a.size),
    }


# --------------------------------------------------------------------------- step functions


def _step_durations(
    times: ArrayLike, values: ArrayLike, t_end: float, t_start: float | None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    t = _sample(times, "times")
    v = _sample(values, "values")
    if t.size != v.size:
        raise ValueError(f"times and values differ in length: {t.size} != {v.size}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite")
    if t.size > 1 and np.any(np.diff(t) < 0.0):
        raise ValueError("times must be non-decreasing")
    t_end = float(t_end)
    if t.size == 0:
        start = t_end if t_start is None else float(t_start)
        return t, v, start, t_end
    start = float(t[0]) if t_start is None else float(t_start)
    if start < t[0]:
        raise ValueError(
            f"t_start={start!r} is before the first change at times[0]={t[0]!r}; "
            "the level there is unknown"
        )
    if not math.isfinite(t_end) or t_end < start:
        raise ValueError(f"t_end must be finite and >= the start {start!r}, got {t_end!r}")
    edges = np.clip(np.append(t, t_end), start, t_end)
    return np.diff(edges), v, start, t_end


def integral(
    times: ArrayLike, values: ArrayLike, t_end: float, *, t_start: float | None = None
) -> float:
    """Integral of a right-continuous step function over ``[t_start, t_end]``.

    The level is ``values[i]`` on ``[times[i], times[i+1])`` and ``values[-1]`` from
    ``times[-1]`` on, as recorded by a level monitor (queue length, blocks in use):

    .. math:: \\int_{t_0}^{T} v(t)\\,dt = \\sum_i v_i\\,
              (\\min(t_{i+1}, T) - \\max(t_i, t_0))^+ .

    Parameters
    ----------
    times : array_like
        1-D, non-decreasing change times (repeated times are allowed; the later value wins).
    values : array_like
        1-D level set at each time, same length as ``times``.
    t_end : float
        End of the window. Changes after ``t_end`` are ignored.
    t_start : float, optional
        Start of the window, ``>= times[0]`` (default ``times[0]``). Use it to delete a warm-up.

    Returns
    -------
    float
        The integral; 0.0 for empty input.

    Examples
    --------
    >>> integral([0.0, 1.0, 3.0], [2.0, 0.0, 1.0], t_end=4.0)
    3.0
    """
    d, v, _, _ = _step_durations(times, values, t_end, t_start)
    return float(np.dot(d, v)) if d.size else 0.0


def time_average(
    times: ArrayLike, values: ArrayLike, t_end: float, *, t_start: float | None = None
) -> float:
    """Time-weighted mean of a right-continuous step function over ``[t_start, t_end]``.

    :func:`integral` divided by ``t_end - t_start``. This is the estimator of a time-average
    quantity (e.g. :math:`L` in Little's law), not the mean of ``values``.

    Returns
    -------
    float
        The time average; NaN for empty input or a zero-length window.

    Examples
    --------
    >>> time_average([0.0, 1.0, 3.0], [2.0, 0.0, 1.0], t_end=4.0)
    0.75
    """
    d, v, start, end = _step_durations(times, values, t_end, t_start)
    span = end - start
    if d.size == 0 or span <= 0.0:
        return _NAN
    return float(np.dot(d, v)) / span

"""Round-robin's expected barrier imbalance in a DP-attention group (extreme-value estimate).

Model (algorithms.md section 2.4). Under round-robin (or FCFS into free slots) each of the G
ranks of a saturated group holds B active requests whose loads are independent draws of the
*slot load* X: the KV tokens a request attends at a random decode step of its life. A rank's
load is a sum of B such draws, approximately normal with standard deviation ``sigma sqrt(B)``,
so the expected max minus mean over G ranks is

    E[I] = sigma * sqrt(B) * m_G,    m_G = E[max of G standard normals] ~ sqrt(2 ln G)

(``m_G`` is computed exactly by quadrature; ``sqrt(2 ln G)`` is its large-G form, which
overestimates it for small G). A policy that picks from a backlog keeps the gap O(max slot
load), independent of B and G, hence the Theta(sqrt(B log G)) ratio of Chen et al. (2026).

The slot-load distribution is length-biased: a request of output ``o`` occupies a slot for ``o``
steps, attending ``s + a`` tokens at its ``a``-th step (``a = 1..o``), so a random busy slot
holds a request with probability proportional to ``o``.
"""

from __future__ import annotations

import math

import numpy as np

from servoir.errors import InputError


def expected_max_normal(g: int) -> float:
    """E[max of ``g`` i.i.d. standard normals] (exact up to quadrature error, about 1e-10).

    Examples
    --------
    >>> round(expected_max_normal(2), 6)  # 1 / sqrt(pi)
    0.56419
    """
    if g < 1:
        raise InputError(f"number of ranks must be >= 1, got {g}")
    if g == 1:
        return 0.0
    from scipy import integrate, special, stats  # deferred: scipy is heavy to import

    def integrand(x: float) -> float:
        return float(x * g * stats.norm.pdf(x) * special.ndtr(x) ** (g - 1))

    val, _ = integrate.quad(integrand, -12.0, 12.0, limit=200)
    return float(val)


def slot_load_moments(prompt: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the slot load X (length-biased, see the module notes).

    Examples
    --------
    >>> m, s = slot_load_moments(np.array([100]), np.array([3]))  # loads 101, 102, 103
    >>> round(m, 6), round(s, 6)
    (102.0, 0.816497)
    """
    s = np.asarray(prompt, dtype=np.float64)
    o = np.asarray(output, dtype=np.float64)
    if s.shape != o.shape or s.size == 0:
        raise InputError("prompt and output lengths need the same, non-zero length")
    if (o < 1).any() or (s < 0).any():
        raise InputError("output lengths must be >= 1 and prompt lengths >= 0")
    # Over a = 1..o: sum (s + a) = o s + o(o+1)/2; sum (s + a)^2 = o s^2 + s o(o+1) + o(o+1)(2o+1)/6
    w = o.sum()
    m1 = (o * s + o * (o + 1) / 2).sum() / w
    m2 = (o * s * s + s * o * (o + 1) + o * (o + 1) * (2 * o + 1) / 6).sum() / w
    return float(m1), float(math.sqrt(max(0.0, m2 - m1 * m1)))


def rr_expected_imbalance(batch: int, ranks: int, sigma: float, *,
                          asymptotic: bool = False) -> float:
    """Predicted mean imbalance (max minus mean load, tokens) of round-robin.

    ``sigma * sqrt(batch) * m_G`` with ``m_G`` exact, or ``sqrt(2 ln G)`` when ``asymptotic``.

    Examples
    --------
    >>> round(rr_expected_imbalance(64, 8, 1000.0, asymptotic=True), 1)
    16314.7
    """
    if batch < 1 or ranks < 1 or sigma < 0:
        raise InputError(f"need batch >= 1, ranks >= 1, sigma >= 0; got {batch}, {ranks}, "
                         f"{sigma}")
    m = math.sqrt(2 * math.log(ranks)) if asymptotic else expected_max_normal(ranks)
    return sigma * math.sqrt(batch) * m


def predict_rr_imbalance(prompt: np.ndarray, output: np.ndarray, batch: int,
                         ranks: int) -> float:
    """:func:`rr_expected_imbalance` with sigma from a request-length sample."""
    _, sigma = slot_load_moments(prompt, output)
    return rr_expected_imbalance(batch, ranks, sigma)


def harmonic(n: int) -> float:
    """``H_n = 1 + 1/2 + ... + 1/n``.

    Examples
    --------
    >>> harmonic(1), harmonic(4)
    (1.0, 2.083333333333333)
    """
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    return float(sum(1.0 / i for i in range(1, n + 1)))


def sawtooth_imbalance(mean_output: float, ranks: int) -> float:
    """Barrier imbalance a sticky, non-clairvoyant router cannot avoid in a saturated group:
    ``E[o] (H_G - 1)`` tokens (our heuristic argument, not a theorem; module notes below).

    In a saturated group every rank runs B requests, so every rank's load rises by B tokens per
    step, and the group mean is stationary (finishes take out as much as the steps add). A rank's
    load relative to the mean therefore rises by about B per step between its own finishes and
    can be corrected only at them (stickiness: the router acts only on a free slot). With B
    requests whose outputs average E[o] steps, a rank's finishes come about E[o] / B steps
    apart; for Poisson-like finishes the time since a rank's last finish is exponential with that
    mean, independently over ranks. Even if every refill put its rank back at one common level,
    the imbalance (max minus mean over G ranks) would be B x (E[o] / B) x (E[max of G
    exponentials] - 1) = ``E[o] (H_G - 1)``: independent of B, growing like ln G. Round-robin's
    ``sigma sqrt(B) m_G`` grows with both, so the ratio grows like sqrt(B) but, in G, like
    ``m_G / (H_G - 1)``, which falls. A router that knows when requests finish (a length
    predictor; the paper's lookahead) can set each refilled rank lower in proportion to the time
    until its next finish, which this bound does not cover.

    Examples
    --------
    >>> round(sawtooth_imbalance(200.0, 2), 6)
    100.0
    """
    if mean_output < 0 or ranks < 1:
        raise InputError(f"need mean_output >= 0 and ranks >= 1; got {mean_output}, {ranks}")
    return mean_output * (harmonic(ranks) - 1.0)

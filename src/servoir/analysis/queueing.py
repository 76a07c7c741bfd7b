"""Closed-form results of classical queueing theory, used as golden references.

Every function here is a steady-state mean for a stable queue with Poisson arrivals (rate
``lam``) served first-come first-served unless stated otherwise. Parameters are validated:
non-finite, negative or zero rates raise :class:`ValueError`, and so does an unstable load
(``rho >= 1``), since no steady state exists then. The message says which parameter was wrong.

Notation: ``lam`` is the arrival rate, ``mu`` the service rate of one server (mean service time
``1/mu``), ``c`` the number of servers, ``rho`` the per-server utilisation. "Wait" is the time in
queue before service starts (W_q); "sojourn" is wait plus service (W, the response time).

References
----------
.. [1] L. Kleinrock, *Queueing Systems, Volume 1: Theory*. Wiley, 1975.
.. [2] M. Harchol-Balter, *Performance Modeling and Design of Computer Systems*. Cambridge
   University Press, 2013.
.. [3] J. D. C. Little, "A proof for the queuing formula L = lambda W", *Operations Research*
   9(3):383-387, 1961.
.. [4] L. Kleinrock, *Queueing Systems, Volume 2: Computer Applications*. Wiley, 1976.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "little_l",
    "md1_sojourn",
    "md1_wait",
    "mg1_sojourn_pk",
    "mg1_wait_pk",
    "mm1_ps_sojourn_given_size",
    "mm1_sojourn",
    "mm1_wait",
    "mmc_erlang_c",
    "mmc_sojourn",
    "mmc_wait",
]


# --------------------------------------------------------------------------- validation helpers


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _nonnegative(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _stable(rho: float, what: str) -> float:
    if rho >= 1.0:
        raise ValueError(
            f"unstable queue: utilisation rho = {rho:.6g} >= 1 ({what}); no steady state exists"
        )
    return rho


# --------------------------------------------------------------------------- M/M/1


def mm1_wait(lam: float, mu: float) -> float:
    r"""Mean waiting time in queue of the M/M/1 FIFO queue.

    .. math:: W_q = \frac{\rho}{\mu - \lambda}, \qquad \rho = \lambda / \mu .

    Assumptions: Poisson arrivals at rate ``lam``, i.i.d. exponential service at rate ``mu``, one
    server, FIFO, infinite buffer, ``rho < 1``. See [1]_ section 3.2, [2]_ chapter 13.

    Parameters
    ----------
    lam : float
        Arrival rate, > 0.
    mu : float
        Service rate, > 0.

    Returns
    -------
    float
        Mean time from arrival to start of service.

    Raises
    ------
    ValueError
        If a rate is not finite and positive, or if ``lam >= mu``.

    Examples
    --------
    >>> mm1_wait(0.5, 1.0)
    1.0
    """
    lam, mu = _positive("lam", lam), _positive("mu", mu)
    rho = _stable(lam / mu, f"lam={lam:g}, mu={mu:g}")
    return rho / (mu - lam)


def mm1_sojourn(lam: float, mu: float) -> float:
    r"""Mean sojourn (response) time of the M/M/1 queue.

    .. math:: W = \frac{1}{\mu - \lambda}.

    Same assumptions as :func:`mm1_wait`; the result holds for any work-conserving
    size-blind discipline (FIFO, LCFS, PS), see [2]_ chapter 22.

    Examples
    --------
    >>> mm1_sojourn(0.5, 1.0)
    2.0
    """
    lam, mu = _positive("lam", lam), _positive("mu", mu)
    _stable(lam / mu, f"lam={lam:g}, mu={mu:g}")
    return 1.0 / (mu - lam)


# --------------------------------------------------------------------------- M/M/c


def mmc_erlang_c(lam: float, mu: float, c: int) -> float:
    r"""Erlang C: the probability that an arrival to an M/M/c queue has to wait.

    With offered load :math:`a = \lambda/\mu` and :math:`\rho = a/c`,

    .. math:: C(c, a) = \frac{B(c, a)}{1 - \rho\,(1 - B(c, a))},

    where :math:`B` is the Erlang B blocking probability, computed by the stable recursion
    :math:`B(0, a) = 1`, :math:`B(k, a) = a B(k-1, a) / (k + a B(k-1, a))`. Every step stays in
    ``[0, 1]``, so there is no overflow of :math:`a^c / c!` even for hundreds of servers.

    Assumptions: Poisson arrivals, i.i.d. exponential service at rate ``mu`` per server, ``c``
    identical servers, one FIFO queue, infinite buffer, ``rho < 1``. See [1]_ section 3.5,
    [2]_ chapter 14.

    Parameters
    ----------
    lam : float
        Arrival rate, > 0.
    mu : float
        Service rate of one server, > 0.
    c : int
        Number of servers, >= 1.

    Returns
    -------
    float
        :math:`P(W_q > 0)`, in ``[0, 1)``. For ``c = 1`` it equals ``rho``.

    Raises
    ------
    ValueError
        On invalid parameters or ``lam >= c * mu``.

    Examples
    --------
    >>> round(mmc_erlang_c(1.0, 1.0, 2), 12)
    0.333333333333
    """
    lam, mu = _positive("lam", lam), _positive("mu", mu)
    c = _servers(c)
    a = lam / mu
    rho = _stable(a / c, f"lam={lam:g}, mu={mu:g}, c={c}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1.0 - rho * (1.0 - b))


def mmc_wait(lam: float, mu: float, c: int) -> float:
    r"""Mean waiting time in queue of the M/M/c FIFO queue.

    .. math:: W_q = \frac{C(c, \lambda/\mu)}{c\mu - \lambda},

    with :math:`C` the Erlang C probability of :func:`mmc_erlang_c` (same assumptions).
    For ``c = 1`` this is :func:`mm1_wait`.

    Examples
    --------
    >>> round(mmc_wait(1.0, 1.0, 2), 12)
    0.333333333333
    """
    pw = mmc_erlang_c(lam, mu, c)
    return pw / (int(c) * float(mu) - float(lam))


def mmc_sojourn(lam: float, mu: float, c: int) -> float:
    r"""Mean sojourn time of the M/M/c FIFO queue: :math:`W = W_q + 1/\mu`.

    See :func:`mmc_wait` for the assumptions.
    """
    return mmc_wait(lam, mu, c) + 1.0 / float(mu)


def _servers(c: int) -> int:
    if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1:
        raise ValueError(f"c (number of servers) must be an integer >= 1, got {c!r}")
    return int(c)


# --------------------------------------------------------------------------- M/G/1 (P-K)


def mg1_wait_pk(lam: float, mean_s: float, second_moment_s: float) -> float:
    r"""Mean waiting time of the M/G/1 FIFO queue (Pollaczek-Khinchine mean-value formula).

    .. math:: W_q = \frac{\lambda\,\mathbb{E}[S^2]}{2\,(1 - \rho)}, \qquad
              \rho = \lambda\,\mathbb{E}[S].

    Assumptions: Poisson arrivals at rate ``lam``; i.i.d. service times :math:`S`, independent
    of arrivals, with finite second moment; one server; FIFO (any non-preemptive size-blind
    order gives the same mean); ``rho < 1``. See [1]_ section 5.6, [2]_ chapter 23.

    Parameters
    ----------
    lam : float
        Arrival rate, > 0.
    mean_s : float
        :math:`\mathbb{E}[S]`, > 0.
    second_moment_s : float
        :math:`\mathbb{E}[S^2]` (not the variance), must be ``>= mean_s**2``.

    Returns
    -------
    float
        Mean time from arrival to start of service.

    Raises
    ------
    ValueError
        On invalid parameters (including ``second_moment_s < mean_s**2``, which no
        distribution has) or ``rho >= 1``.

    Examples
    --------
    Exponential service with mean 1 has :math:`\mathbb{E}[S^2] = 2`, giving the M/M/1 value:

    >>> mg1_wait_pk(0.5, 1.0, 2.0)
    1.0
    """
    lam = _positive("lam", lam)
    mean_s = _positive("mean_s", mean_s)
    m2 = _positive("second_moment_s", second_moment_s)
    # Allow a relative float slack so that e.g. a deterministic m2 = mean**2 computed another
    # way is not rejected.
    if m2 < mean_s * mean_s * (1.0 - 1e-12):
        raise ValueError(
            f"second_moment_s must be >= mean_s**2 (variance >= 0), got "
            f"second_moment_s={second_moment_s!r} < mean_s**2={mean_s * mean_s!r}"
        )
    rho = _stable(lam * mean_s, f"lam={lam:g}, mean_s={mean_s:g}")
    return lam * m2 / (2.0 * (1.0 - rho))


def mg1_sojourn_pk(lam: float, mean_s: float, second_moment_s: float) -> float:
    r"""Mean sojourn time of the M/G/1 FIFO queue: :math:`W = W_q + \mathbb{E}[S]`.

    :math:`W_q` from :func:`mg1_wait_pk` (same assumptions).

    Examples
    --------
    >>> mg1_sojourn_pk(0.5, 1.0, 2.0)
    2.0
    """
    return mg1_wait_pk(lam, mean_s, second_moment_s) + float(mean_s)


def md1_wait(lam: float, mu: float) -> float:
    r"""Mean waiting time of the M/D/1 queue (deterministic service time ``1/mu``).

    P-K with :math:`\mathbb{E}[S^2] = 1/\mu^2`:

    .. math:: W_q = \frac{\rho}{2\mu(1 - \rho)},

    exactly half the M/M/1 wait at the same ``lam`` and ``mu``. Assumptions as in
    :func:`mg1_wait_pk`. See [1]_ section 5.7.

    Examples
    --------
    >>> md1_wait(0.5, 1.0)
    0.5
    """
    mu = _positive("mu", mu)
    mean_s = 1.0 / mu
    return mg1_wait_pk(lam, mean_s, mean_s * mean_s)


def md1_sojourn(lam: float, mu: float) -> float:
    r"""Mean sojourn time of the M/D/1 queue: :math:`W = W_q + 1/\mu` (see :func:`md1_wait`)."""
    return md1_wait(lam, mu) + 1.0 / float(mu)


# --------------------------------------------------------------------------- M/G/1-PS


def mm1_ps_sojourn_given_size(x: ArrayLike, rho: float) -> float | np.ndarray:
    r"""Mean sojourn time of a job of size ``x`` in the M/G/1 processor-sharing queue.

    .. math:: \mathbb{E}[T \mid S = x] = \frac{x}{1 - \rho}.

    ``x`` is the job's service requirement in time units at full server speed. The result is
    insensitive to the service distribution beyond its mean (it holds for M/G/1-PS, hence for
    M/M/1-PS). Assumptions: Poisson arrivals, i.i.d. sizes, one egalitarian processor-sharing
    server, ``rho < 1``. See [4]_ section 4.4, [2]_ chapter 22.

    Parameters
    ----------
    x : float or array_like
        Job size(s), >= 0.
    rho : float
        Utilisation, in ``[0, 1)``.

    Returns
    -------
    float or numpy.ndarray
        A float for scalar ``x``, an array of the same shape otherwise.

    Examples
    --------
    >>> mm1_ps_sojourn_given_size(1.0, 0.5)
    2.0
    """
    r = float(rho)
    if not math.isfinite(r) or r < 0.0:
        raise ValueError(f"rho must be a finite number in [0, 1), got {rho!r}")
    _stable(r, f"rho={r:g}")
    xa = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(xa)) or np.any(xa < 0.0):
        raise ValueError(f"x (job size) must be finite and >= 0, got {x!r}")
    out = xa / (1.0 - r)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- Little's law


def little_l(lam: float, w: float) -> float:
    r"""Little's law: the mean number in a system, :math:`L = \lambda W`.

    Holds for any stationary system (any arrival process, service distribution, discipline or
    number of servers) in which the long-run arrival rate ``lam`` and the mean time in system
    ``w`` exist [3]_. Apply it to the queue alone (``w = W_q`` gives :math:`L_q`) or to the whole
    system (``w = W`` gives :math:`L`).

    Examples
    --------
    >>> little_l(0.5, 2.0)
    1.0
    """
    return _nonnegative("lam", lam) * _nonnegative("w", w)

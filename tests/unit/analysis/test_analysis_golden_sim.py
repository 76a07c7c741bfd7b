"""Golden tests: small seeded FIFO simulations against the closed forms of analysis.queueing.

Single-server FIFO queues are simulated with the Lindley recursion
``W[n+1] = max(0, W[n] + S[n] - A[n+1])``, vectorised as ``W = X - cummin(X)`` with ``X`` the
random walk of ``S[n] - A[n+1]`` started at 0 (an empty system). M/M/2 uses the
Kiefer-Wolfowitz workload recursion in plain Python. Each test runs independent replications,
drops a warm-up, and asserts that the closed form lies inside a 99.9% replication CI *and* that
the CI half-width is below a tolerance, so a test cannot pass vacuously (STYLE B6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from servoir.analysis import queueing as q
from servoir.analysis import stats as st

ServiceSampler = Callable[[np.random.Generator, int], np.ndarray]


def lindley_waits(interarrivals: np.ndarray, services: np.ndarray) -> np.ndarray:
    """Waiting times of customers 0..n-1 in a FIFO single-server queue that starts empty.

    ``interarrivals[i]`` is the gap before customer ``i`` (``interarrivals[0]`` is unused).
    """
    steps = services[:-1] - interarrivals[1:]
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    return walk - np.minimum.accumulate(walk)


def test_lindley_matches_loop() -> None:
    rng = np.random.default_rng(0)
    a, s = rng.exponential(2.0, 500), rng.exponential(1.0, 500)
    w = np.zeros(500)
    for i in range(1, 500):
        w[i] = max(0.0, w[i - 1] + s[i - 1] - a[i])
    np.testing.assert_allclose(lindley_waits(a, s), w, atol=1e-9)


def _replicate_mg1(
    lam: float, service: ServiceSampler, reps: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-replication mean wait and mean sojourn, first 10% of customers dropped."""
    root = np.random.SeedSequence(seed)
    waits, sojourns = np.empty(reps), np.empty(reps)
    warm = n // 10
    for r, child in enumerate(root.spawn(reps)):
        rng = np.random.default_rng(child)
        a = rng.exponential(1.0 / lam, n)
        s = service(rng, n)
        w = lindley_waits(a, s)
        waits[r] = w[warm:].mean()
        sojourns[r] = (w[warm:] + s[warm:]).mean()
    return waits, sojourns


def _assert_golden(values: np.ndarray, expected: float, tol: float) -> None:
    m, lo, hi = st.replication_ci(values, confidence=0.999)
    half = (hi - lo) / 2
    assert half < tol, f"CI half-width {half:.4g} >= tolerance {tol:.4g}: test too weak"
    assert lo <= expected <= hi, f"closed form {expected:.6g} outside 99.9% CI [{lo:.6g}, {hi:.6g}]"


def _exp(mu: float) -> ServiceSampler:
    return lambda rng, n: rng.exponential(1.0 / mu, n)


def _det(mu: float) -> ServiceSampler:
    return lambda rng, n: np.full(n, 1.0 / mu)


def _unif(mu: float) -> ServiceSampler:  # Uniform(0, 2/mu): mean 1/mu, E[S^2] = 4/(3 mu^2)
    return lambda rng, n: rng.uniform(0.0, 2.0 / mu, n)


def test_mm1_fifo() -> None:
    lam, mu = 0.5, 1.0
    waits, sojourns = _replicate_mg1(lam, _exp(mu), reps=30, n=100_000, seed=101)
    _assert_golden(waits, q.mm1_wait(lam, mu), tol=0.05 * q.mm1_wait(lam, mu))
    _assert_golden(sojourns, q.mm1_sojourn(lam, mu), tol=0.03 * q.mm1_sojourn(lam, mu))


def test_md1_fifo() -> None:
    lam, mu = 0.5, 1.0
    waits, sojourns = _replicate_mg1(lam, _det(mu), reps=20, n=50_000, seed=202)
    _assert_golden(waits, q.md1_wait(lam, mu), tol=0.03 * q.md1_wait(lam, mu))
    _assert_golden(sojourns, q.md1_sojourn(lam, mu), tol=0.02 * q.md1_sojourn(lam, mu))


def test_mg1_uniform_pk() -> None:
    lam, mu = 0.6, 1.0
    expected = q.mg1_wait_pk(lam, 1.0 / mu, 4.0 / (3.0 * mu * mu))
    waits, _ = _replicate_mg1(lam, _unif(mu), reps=20, n=50_000, seed=303)
    _assert_golden(waits, expected, tol=0.05 * expected)


def _mmc_mean_wait(lam: float, mu: float, c: int, n: int, rng: np.random.Generator) -> float:
    """Mean FIFO wait in M/M/c after a 10% warm-up (Kiefer-Wolfowitz: next-free times)."""
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n)).tolist()
    services = rng.exponential(1.0 / mu, n).tolist()
    free = [0.0] * c
    total, warm = 0.0, n // 10
    for i, (t, s) in enumerate(zip(arrivals, services, strict=True)):
        k = min(range(c), key=free.__getitem__)
        start = max(t, free[k])
        free[k] = start + s
        if i >= warm:
            total += start - t
    return total / (n - warm)


def test_mmc_erlang_c_two_servers() -> None:
    lam, mu, c = 1.0, 1.0, 2
    root = np.random.SeedSequence(404)
    waits = np.array(
        [_mmc_mean_wait(lam, mu, c, 20_000, np.random.default_rng(ch)) for ch in root.spawn(20)]
    )
    expected = q.mmc_wait(lam, mu, c)  # 1/3
    _assert_golden(waits, expected, tol=0.08 * expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, lam, service, expected",
    [
        ("M/M/1 rho=0.8", 0.8, _exp(1.0), q.mm1_wait(0.8, 1.0)),
        ("M/D/1 rho=0.8", 0.8, _det(1.0), q.md1_wait(0.8, 1.0)),
        ("M/G/1 unif rho=0.8", 0.8, _unif(1.0), q.mg1_wait_pk(0.8, 1.0, 4 / 3)),
    ],
)
def test_high_load_slow(name: str, lam: float, service: ServiceSampler, expected: float) -> None:
    waits, _ = _replicate_mg1(lam, service, reps=40, n=1_000_000, seed=505)
    _assert_golden(waits, expected, tol=0.02 * expected)

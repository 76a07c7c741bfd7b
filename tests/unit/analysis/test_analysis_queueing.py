"""Closed forms of servoir.analysis.queueing against known values and identities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.analysis import queueing as q


def _erlang_c_direct(lam: float, mu: float, c: int) -> float:
    """Textbook Erlang C with factorials (fine for small c)."""
    a = lam / mu
    rho = a / c
    tail = a**c / math.factorial(c) / (1.0 - rho)
    head = sum(a**k / math.factorial(k) for k in range(c))
    return tail / (head + tail)


def _erlang_c_log(lam: float, mu: float, c: int) -> float:
    """Erlang C in log space via logsumexp, an independent check for large c."""
    a = lam / mu
    rho = a / c
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
    log_tail = c * math.log(a) - math.lgamma(c + 1) - math.log1p(-rho)
    allv = np.array([*logs, log_tail])
    m = allv.max()
    return math.exp(log_tail - (m + math.log(np.exp(allv - m).sum())))


class TestMM1:
    def test_known_values(self) -> None:
        assert q.mm1_sojourn(0.5, 1.0) == pytest.approx(2.0)
        assert q.mm1_wait(0.5, 1.0) == pytest.approx(1.0)
        assert q.mm1_sojourn(9.0, 10.0) == pytest.approx(1.0)
        assert q.mm1_wait(9.0, 10.0) == pytest.approx(0.9)

    def test_sojourn_is_wait_plus_service(self) -> None:
        for lam, mu in [(0.1, 1.0), (3.0, 4.0), (0.99, 1.0)]:
            assert q.mm1_sojourn(lam, mu) == pytest.approx(q.mm1_wait(lam, mu) + 1 / mu)

    @pytest.mark.parametrize("lam, mu", [(1.0, 1.0), (2.0, 1.0)])
    def test_unstable_raises(self, lam: float, mu: float) -> None:
        with pytest.raises(ValueError, match="unstable"):
            q.mm1_wait(lam, mu)
        with pytest.raises(ValueError, match="unstable"):
            q.mm1_sojourn(lam, mu)

    @pytest.mark.parametrize(
        "lam, mu, name",
        [
            (0.0, 1.0, "lam"),
            (-1.0, 1.0, "lam"),
            (0.5, 0.0, "mu"),
            (math.nan, 1.0, "lam"),
            (0.5, math.inf, "mu"),
        ],
    )
    def test_invalid_raises(self, lam: float, mu: float, name: str) -> None:
        with pytest.raises(ValueError, match=name):
            q.mm1_wait(lam, mu)


class TestErlangC:
    @pytest.mark.parametrize("lam, mu", [(0.3, 1.0), (0.5, 2.0), (0.95, 1.0)])
    def test_c1_reduces_to_rho(self, lam: float, mu: float) -> None:
        assert q.mmc_erlang_c(lam, mu, 1) == pytest.approx(lam / mu, rel=1e-12)
        assert q.mmc_wait(lam, mu, 1) == pytest.approx(q.mm1_wait(lam, mu), rel=1e-12)
        assert q.mmc_sojourn(lam, mu, 1) == pytest.approx(q.mm1_sojourn(lam, mu), rel=1e-12)

    def test_known_value_two_servers(self) -> None:
        # a = 1, c = 2: C = (1/2)/(1/2) / (1 + 1 + 1) = 1/3; W_q = C / (2 - 1) = 1/3.
        assert q.mmc_erlang_c(1.0, 1.0, 2) == pytest.approx(1 / 3, rel=1e-12)
        assert q.mmc_wait(1.0, 1.0, 2) == pytest.approx(1 / 3, rel=1e-12)

    @pytest.mark.parametrize("c", [2, 3, 5, 10, 20])
    @pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
    def test_matches_factorial_formula(self, c: int, rho: float) -> None:
        lam, mu = rho * c * 2.0, 2.0
        assert q.mmc_erlang_c(lam, mu, c) == pytest.approx(_erlang_c_direct(lam, mu, c), rel=1e-10)

    @pytest.mark.parametrize("c", [100, 300, 1000])
    @pytest.mark.parametrize("rho", [0.5, 0.9, 0.999])
    def test_large_c_stable(self, c: int, rho: float) -> None:
        # a**c / c! overflows a float for these c; the recursion must not.
        p = q.mmc_erlang_c(rho * c, 1.0, c)
        assert 0.0 <= p < 1.0
        assert p == pytest.approx(_erlang_c_log(rho * c, 1.0, c), rel=1e-9)

    def test_pooling_reduces_wait(self) -> None:
        # Same per-server load: more servers, less waiting (economies of scale).
        waits = [q.mmc_wait(0.8 * c, 1.0, c) for c in (1, 2, 4, 8, 16)]
        assert all(b < a for a, b in zip(waits, waits[1:], strict=False))

    def test_unstable_and_invalid(self) -> None:
        with pytest.raises(ValueError, match="unstable"):
            q.mmc_erlang_c(2.0, 1.0, 2)
        with pytest.raises(ValueError, match="unstable"):
            q.mmc_wait(3.0, 1.0, 2)
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="servers"):
                q.mmc_erlang_c(0.5, 1.0, bad)  # type: ignore[arg-type]
        assert q.mmc_erlang_c(0.5, 1.0, np.int64(2)) == pytest.approx(_erlang_c_direct(0.5, 1.0, 2))


class TestPollaczekKhinchine:
    @pytest.mark.parametrize("lam, mu", [(0.5, 1.0), (0.2, 0.3), (4.0, 5.0)])
    def test_exponential_service_equals_mm1(self, lam: float, mu: float) -> None:
        mean, m2 = 1 / mu, 2 / mu**2
        assert q.mg1_wait_pk(lam, mean, m2) == pytest.approx(q.mm1_wait(lam, mu), rel=1e-12)
        assert q.mg1_sojourn_pk(lam, mean, m2) == pytest.approx(q.mm1_sojourn(lam, mu), rel=1e-12)

    @pytest.mark.parametrize("lam, mu", [(0.5, 1.0), (0.2, 0.3), (4.0, 5.0)])
    def test_md1_is_half_mm1(self, lam: float, mu: float) -> None:
        assert q.md1_wait(lam, mu) == pytest.approx(0.5 * q.mm1_wait(lam, mu), rel=1e-12)
        assert q.md1_sojourn(lam, mu) == pytest.approx(q.md1_wait(lam, mu) + 1 / mu, rel=1e-12)

    def test_known_value(self) -> None:
        # Uniform(0, 2) service: E[S] = 1, E[S^2] = 4/3; lam = 0.5: W_q = 0.5*(4/3)/(2*0.5).
        assert q.mg1_wait_pk(0.5, 1.0, 4 / 3) == pytest.approx(2 / 3)

    def test_wait_increases_with_variability(self) -> None:
        waits = [q.mg1_wait_pk(0.5, 1.0, m2) for m2 in (1.0, 1.5, 2.0, 10.0)]
        assert waits == sorted(waits)

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="unstable"):
            q.mg1_wait_pk(1.0, 1.0, 2.0)
        with pytest.raises(ValueError, match="second_moment_s"):
            q.mg1_wait_pk(0.5, 1.0, 0.5)
        with pytest.raises(ValueError, match="mean_s"):
            q.mg1_wait_pk(0.5, -1.0, 2.0)
        with pytest.raises(ValueError, match="unstable"):
            q.md1_wait(2.0, 1.0)


class TestPSAndLittle:
    def test_ps_known_values(self) -> None:
        assert q.mm1_ps_sojourn_given_size(1.0, 0.5) == pytest.approx(2.0)
        assert q.mm1_ps_sojourn_given_size(3.0, 0.0) == pytest.approx(3.0)
        out = q.mm1_ps_sojourn_given_size(np.array([0.0, 1.0, 2.0]), 0.75)
        np.testing.assert_allclose(out, [0.0, 4.0, 8.0])

    def test_ps_mean_over_exponential_sizes_is_mm1(self) -> None:
        # E[x]/(1-rho) with E[x] = 1/mu gives 1/(mu - lam).
        lam, mu = 0.6, 1.0
        assert q.mm1_ps_sojourn_given_size(1 / mu, lam / mu) == pytest.approx(
            q.mm1_sojourn(lam, mu)
        )

    def test_ps_invalid(self) -> None:
        with pytest.raises(ValueError, match="unstable"):
            q.mm1_ps_sojourn_given_size(1.0, 1.0)
        with pytest.raises(ValueError, match="rho"):
            q.mm1_ps_sojourn_given_size(1.0, -0.1)
        with pytest.raises(ValueError, match="x"):
            q.mm1_ps_sojourn_given_size([1.0, -1.0], 0.5)

    def test_little(self) -> None:
        assert q.little_l(0.5, 2.0) == pytest.approx(1.0)
        assert q.little_l(0.0, 2.0) == 0.0
        # L = lam W for M/M/1 equals rho / (1 - rho).
        lam, mu = 0.8, 1.0
        assert q.little_l(lam, q.mm1_sojourn(lam, mu)) == pytest.approx(0.8 / 0.2)
        with pytest.raises(ValueError, match="w"):
            q.little_l(1.0, -1.0)

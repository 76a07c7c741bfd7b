"""Arrival generators: statistics against their definitions, determinism, session layout.

Tolerances are 5 standard errors of the estimator for the sample size used (CLT), so a correct
generator fails with probability below 1e-6 and the seeds are fixed anyway.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.rng import stream
from servoir.workload import (
    Fixed,
    Uniform,
    gamma,
    mmpp,
    mmpp_mean_rate,
    onoff,
    poisson,
    sessions,
    sharegpt_sessions,
)

N = 50_000
Z = 5.0


def _gaps(w) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.diff(np.r_[0.0, w.arrival_at])


def test_poisson_rate_and_exponential_gaps() -> None:
    rate = 7.0
    w = poisson(rate, N, Fixed(10, 5), stream(1, "arrivals"))
    gaps = _gaps(w)
    # Mean gap 1/rate with standard error (1/rate)/sqrt(N) for exponential gaps.
    assert abs(gaps.mean() * rate - 1) < Z / math.sqrt(N)
    # Exponential: P(gap > mean) = e^-1; binomial standard error.
    p = math.exp(-1)
    assert abs(np.mean(gaps > 1 / rate) - p) < Z * math.sqrt(p * (1 - p) / N)
    assert len(w) == N and np.all(np.diff(w.arrival_at) >= 0) and w.arrival_at[0] > 0


def _gamma_cv_se(cv: float, n: int) -> float:
    """Delta-method standard error of the sample CV for Gamma(k = 1/cv^2, theta = 1)."""
    k = 1 / cv**2
    mu, var, mu3, mu4 = k, k, 2 * k, 3 * k * k + 6 * k
    v = var**2 / mu**4 + (mu4 - var**2) / (4 * var * mu**2) - mu3 / mu**3
    return math.sqrt(v / n)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_gamma_rate_and_cv(cv: float) -> None:
    rate = 3.0
    gaps = _gaps(gamma(rate, cv, N, Fixed(1, 1), stream(2, "arrivals")))
    assert abs(gaps.mean() * rate - 1) < Z * cv / math.sqrt(N)
    assert abs(gaps.std() / gaps.mean() - cv) < Z * _gamma_cv_se(cv, N)


def test_gamma_cv_zero_is_deterministic() -> None:
    w = gamma(4.0, 0.0, 5, Fixed(1, 1), stream(0, "arrivals"))
    np.testing.assert_allclose(w.arrival_at, [0.25, 0.5, 0.75, 1.0, 1.25])


def test_mmpp_mean_rate_matches_stationary_rate() -> None:
    # On/off: lambda = (20, 2), sojourn means (1 s, 3 s) -> switch rates s1 = 1, s2 = 1/3.
    rates, sojourn = (20.0, 2.0), (1.0, 3.0)
    lam = mmpp_mean_rate(rates, sojourn)
    pi1, pi2 = 0.25, 0.75
    assert lam == pytest.approx(pi1 * 20 + pi2 * 2)
    w = mmpp(rates, sojourn, N, Fixed(1, 1), stream(3, "arrivals"))
    # Counts of an MMPP-2 are over-dispersed: index of dispersion
    # 1 + 2 pi1 pi2 (l1 - l2)^2 / ((s1 + s2) lam); se(rate)/rate = sqrt(idc / N).
    idc = 1 + 2 * pi1 * pi2 * (20 - 2) ** 2 / ((1 + 1 / 3) * lam)
    measured = len(w) / w.arrival_at[-1]
    assert abs(measured / lam - 1) < Z * math.sqrt(idc / N)
    assert w.meta["mean_rate"] == pytest.approx(lam)


def test_mmpp_three_states_with_switch_matrix() -> None:
    q = [[0, 1, 1], [0.5, 0, 0.5], [2, 2, 0]]
    lam = mmpp_mean_rate([5.0, 0.0, 40.0], switch_rates=q)
    w = mmpp([5.0, 0.0, 40.0], None, N, Fixed(1, 1), stream(4, "arrivals"), switch_rates=q)
    # Loose: the index of dispersion of a 3-state MMPP is below 10 for these rates.
    assert abs(len(w) / w.arrival_at[-1] / lam - 1) < Z * math.sqrt(10 / N)


def test_onoff_is_bursty_and_has_off_gaps() -> None:
    w = onoff(50.0, 1.0, 1.0, 20_000, Fixed(1, 1), stream(5, "arrivals"))
    gaps = _gaps(w)
    assert gaps.std() / gaps.mean() > 2  # far burstier than Poisson (cv 1)
    assert w.meta["mean_rate"] == pytest.approx(25.0)


@pytest.mark.parametrize("make", [
    lambda g: poisson(5.0, 500, Uniform(1, 100, 1, 50), g),
    lambda g: gamma(5.0, 2.0, 500, Uniform(1, 100, 1, 50), g),
    lambda g: onoff(5.0, 2.0, 1.0, 500, Uniform(1, 100, 1, 50), g),
    lambda g: sessions(50, [1, 2, 5], 3.0, 1.0, Uniform(1, 100, 1, 50), g),
])
def test_deterministic_given_seed(make) -> None:  # type: ignore[no-untyped-def]
    a, b, c = make(stream(9, "w")), make(stream(9, "w")), make(stream(10, "w"))
    np.testing.assert_array_equal(a.arrival_at, b.arrival_at)
    np.testing.assert_array_equal(a.num_prompt_tokens, b.num_prompt_tokens)
    np.testing.assert_array_equal(a.num_output_tokens, b.num_output_tokens)
    assert not np.array_equal(a.arrival_at, c.arrival_at)


def test_lengths_do_not_depend_on_the_rate() -> None:
    # Common random numbers: changing the arrival process leaves the length draws alone.
    a = poisson(1.0, 200, Uniform(1, 1000, 1, 1000), stream(0, "w"))
    b = poisson(9.0, 200, Uniform(1, 1000, 1, 1000), stream(0, "w"))
    np.testing.assert_array_equal(a.num_prompt_tokens, b.num_prompt_tokens)
    np.testing.assert_allclose(a.arrival_at, b.arrival_at * 9.0)


def test_sessions_layout_and_history() -> None:
    w = sessions(200, lambda n, g: g.geometric(1 / 3, n), 2.0, 4.0, Uniform(5, 50, 1, 30),
                 stream(6, "w"), accumulate_history=True, block_tokens=16)
    sid, turn = w.session_id, w.turn
    assert sid is not None and turn is not None and w.think_time_s is not None
    assert np.all(np.diff(w.arrival_at) >= 0)
    # Rows of a session are contiguous and in turn order; turn 0 has no think time.
    assert np.all(np.diff(sid) >= 0)
    follow = np.r_[False, sid[1:] == sid[:-1]]
    np.testing.assert_array_equal(turn[follow], turn[np.r_[follow[1:], False]] + 1)
    assert np.all(w.think_time_s[turn == 0] == 0) and np.all(w.think_time_s[turn > 0] > 0)
    np.testing.assert_array_equal(w.arrival_at[follow], w.arrival_at[np.r_[follow[1:], False]])
    # History grows: each follow-up prompt exceeds the previous prompt plus its output.
    prev = np.r_[follow[1:], False]
    assert np.all(w.num_prompt_tokens[follow] > (w.num_prompt_tokens + w.num_output_tokens)[prev])
    # Each turn's prefix blocks are a prefix of the next turn's.
    assert w.prefix_hashes is not None
    for i in np.flatnonzero(follow)[:100]:
        a, b = w.prefix_hashes[i - 1], w.prefix_hashes[i]
        assert b[: len(a)] == a and len(a) == w.num_prompt_tokens[i - 1] // 16


def test_sessions_fixed_turns_count_and_think_mean() -> None:
    w = sessions(4000, 3, 5.0, 10.0, Fixed(10, 10), stream(7, "w"))
    assert len(w) == 12_000 and w.session_id is not None and w.think_time_s is not None
    assert w.session_id.max() == 3999
    think = w.think_time_s[w.turn > 0]  # type: ignore[operator]
    assert abs(think.mean() / 5.0 - 1) < Z / math.sqrt(len(think))


def test_sharegpt_sessions_match_table() -> None:
    w = sharegpt_sessions(300, 5.0, 2.0, stream(8, "w"))
    assert w.session_id is not None and w.turn is not None and w.prefix_hashes is not None
    assert w.session_id.max() == 299 and len(w) >= 300
    assert np.all(np.diff(w.arrival_at) >= 0)
    assert all(len(h) == p // 16 for h, p in zip(w.prefix_hashes, w.num_prompt_tokens,
                                                  strict=True))


@pytest.mark.parametrize("call", [
    lambda: poisson(0.0, 10, Fixed(1, 1), stream(0, "a")),
    lambda: gamma(1.0, -1.0, 10, Fixed(1, 1), stream(0, "a")),
    lambda: mmpp([0.0, 0.0], [1.0, 1.0], 10, Fixed(1, 1), stream(0, "a")),
    lambda: mmpp([1.0, 0.0], None, 10, Fixed(1, 1), stream(0, "a")),
    lambda: mmpp([1.0, 0.0], [1.0, -1.0], 10, Fixed(1, 1), stream(0, "a")),
    lambda: sessions(5, 0, 1.0, 1.0, Fixed(1, 1), stream(0, "a")),
])
def test_bad_parameters_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError):
        call()


def test_mmpp_long_busy_sojourn_draws_only_what_is_needed() -> None:
    # One "on" visit would hold ~1e8 arrivals; only the first 1,000 are drawn.
    w = mmpp([1e4, 0.0], [1e4, 1.0], 1_000, Fixed(1, 1), stream(11, "arrivals"),
             initial_state=0)
    assert len(w) == 1_000
    gaps = _gaps(w)
    assert abs(gaps.mean() * 1e4 - 1) < Z / math.sqrt(len(gaps))

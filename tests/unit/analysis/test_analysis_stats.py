"""Output-analysis helpers of servoir.analysis.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.analysis import stats as st


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Stationary AR(1) with zero mean and unit innovation variance."""
    eps = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = eps[0] / math.sqrt(1 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + eps[i]
    return x


class TestMeanCI:
    def test_known_value(self) -> None:
        m, lo, hi = st.mean_ci([1.0, 2.0, 3.0], 0.95)
        half = 4.302652729749462 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
        assert m == 2.0
        assert lo == pytest.approx(2.0 - half, rel=1e-12)
        assert hi == pytest.approx(2.0 + half, rel=1e-12)

    def test_t_critical_matches_scipy(self) -> None:
        from scipy import stats

        for df in (1, 5, 30, 1000):
            for c in (0.9, 0.95, 0.999):
                assert st.t_critical(df, c) == pytest.approx(stats.t.ppf(0.5 + c / 2, df))

    def test_small_samples(self) -> None:
        assert all(math.isnan(v) for v in st.mean_ci([]))
        m, lo, hi = st.mean_ci([4.0])
        assert m == 4.0 and math.isnan(lo) and math.isnan(hi)
        assert st.mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="confidence"):
            st.mean_ci([1.0, 2.0], 1.0)
        with pytest.raises(ValueError, match="1-D"):
            st.mean_ci(np.ones((2, 2)))

    def test_wider_at_higher_confidence(self) -> None:
        x = np.random.default_rng(0).normal(size=50)
        _, lo90, hi90 = st.mean_ci(x, 0.9)
        _, lo99, hi99 = st.mean_ci(x, 0.99)
        assert lo99 < lo90 < hi90 < hi99

    def test_coverage(self) -> None:
        # 500 seeded trials of n = 200 from N(3, 2^2): the 95% interval covers 3 in ~95%.
        # Binomial sd of the coverage is ~0.0097, so [0.92, 0.98] is about +-3 sd.
        rng = np.random.default_rng(12345)
        data = rng.normal(3.0, 2.0, size=(500, 200))
        hits = 0
        for row in data:
            _, lo, hi = st.mean_ci(row, 0.95)
            hits += lo <= 3.0 <= hi
        assert 0.92 <= hits / 500 <= 0.98

    def test_replication_ci_is_mean_ci(self) -> None:
        v = np.random.default_rng(1).exponential(size=30)
        assert st.replication_ci(v, 0.99) == st.mean_ci(v, 0.99)


class TestBatchMeans:
    def test_ar1_wider_than_naive_and_covers(self) -> None:
        phi = 0.9
        x = _ar1(np.random.default_rng(7), 100_000, phi)
        m, lo, hi = st.batch_means_ci(x, num_batches=20, warmup_frac=0.1, confidence=0.99)
        _, nlo, nhi = st.mean_ci(x[len(x) // 10 :], 0.99)
        # Variance inflation for AR(1) is (1+phi)/(1-phi) = 19, so about 4.4x wider.
        ratio = (hi - lo) / (nhi - nlo)
        assert 2.5 < ratio < 8.0
        assert lo <= 0.0 <= hi
        assert lo < m < hi

    def test_iid_close_to_naive(self) -> None:
        x = np.random.default_rng(3).normal(size=40_000)
        _, lo, hi = st.batch_means_ci(x, num_batches=20, warmup_frac=0.0)
        _, nlo, nhi = st.mean_ci(x)
        assert 0.5 < (hi - lo) / (nhi - nlo) < 1.8

    def test_exact_batches(self) -> None:
        # 10 warm-up values (warmup_frac=0.1 of 100, dropped), then 90 = 4*22 + 2: two leftovers
        # right after the warm-up are dropped, then 4 batches of 22.
        x = np.concatenate(
            [np.full(10, 1e6), np.full(2, -1e6), np.repeat([1.0, 2.0, 3.0, 4.0], 22)]
        )
        m, lo, hi = st.batch_means_ci(x, num_batches=4, warmup_frac=0.1)
        assert m == pytest.approx(2.5)
        exp_m, exp_lo, exp_hi = st.mean_ci([1.0, 2.0, 3.0, 4.0])
        assert (lo, hi) == (pytest.approx(exp_lo), pytest.approx(exp_hi))
        assert m == pytest.approx(exp_m)

    def test_invalid(self) -> None:
        assert all(math.isnan(v) for v in st.batch_means_ci([]))
        with pytest.raises(ValueError, match="num_batches"):
            st.batch_means_ci(np.ones(100), num_batches=1)
        with pytest.raises(ValueError, match="warmup_frac"):
            st.batch_means_ci(np.ones(100), warmup_frac=1.0)
        with pytest.raises(ValueError, match="at least"):
            st.batch_means_ci(np.ones(10), num_batches=20)


class TestQuantileSummarize:
    @pytest.mark.parametrize("n", [1, 2, 7, 100])
    def test_quantile_matches_numpy(self, n: int) -> None:
        x = np.random.default_rng(n).lognormal(size=n)
        qs = np.array([0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
        np.testing.assert_array_equal(st.quantile(x, qs), np.quantile(x, qs, method="linear"))
        assert st.quantile(x, 0.5) == np.median(x)
        assert isinstance(st.quantile(x, 0.5), float)

    def test_quantile_edge_cases(self) -> None:
        assert st.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
        assert math.isnan(st.quantile([], 0.5))
        assert np.isnan(st.quantile([], [0.1, 0.9])).all()
        with pytest.raises(ValueError, match="q must be"):
            st.quantile([1.0], 1.5)

    def test_summarize(self) -> None:
        x = np.arange(1.0, 101.0)
        s = st.summarize(x)
        assert set(s) == {"mean", "p50", "p90", "p99", "ci_low", "ci_high", "n"}
        assert s["n"] == 100 and isinstance(s["n"], int)
        assert s["mean"] == 50.5 and s["p50"] == 50.5
        assert s["p90"] == pytest.approx(np.quantile(x, 0.9))
        assert s["p99"] == pytest.approx(np.quantile(x, 0.99))
        m, lo, hi = st.mean_ci(x)
        assert (s["ci_low"], s["ci_high"]) == (lo, hi)

    def test_summarize_small(self) -> None:
        s0 = st.summarize([])
        assert s0["n"] == 0
        assert all(math.isnan(v) for k, v in s0.items() if k != "n")
        s1 = st.summarize([5.0])
        assert (s1["n"], s1["mean"], s1["p50"], s1["p99"]) == (1, 5.0, 5.0, 5.0)
        assert math.isnan(s1["ci_low"]) and math.isnan(s1["ci_high"])


class TestStepFunctions:
    # Level 2 on [0,1), 0 on [1,3), 1 on [3,4], 5 on [4.5, ...).
    T = [0.0, 1.0, 3.0, 4.5]
    V = [2.0, 0.0, 1.0, 5.0]

    def test_hand_built(self) -> None:
        assert st.integral(self.T, self.V, 4.0) == 3.0
        assert st.time_average(self.T, self.V, 4.0) == 0.75
        # Past the last change: 2 + 0 + 1.5 + 5*1.5 = 11 over 6.
        assert st.integral(self.T, self.V, 6.0) == 11.0
        assert st.time_average(self.T, self.V, 6.0) == pytest.approx(11 / 6)

    def test_window(self) -> None:
        # [0.5, 3.5]: 2*0.5 + 0*2 + 1*0.5 = 1.5 over 3.
        assert st.integral(self.T, self.V, 3.5, t_start=0.5) == 1.5
        assert st.time_average(self.T, self.V, 3.5, t_start=0.5) == 0.5
        # Window inside one step.
        assert st.time_average(self.T, self.V, 2.5, t_start=1.5) == 0.0

    def test_not_mean_of_values(self) -> None:
        t, v = [0.0, 9.0], [1.0, 100.0]
        assert st.time_average(t, v, 10.0) == pytest.approx((9 + 100) / 10)
        assert np.mean(v) != st.time_average(t, v, 10.0)

    def test_repeated_times_later_value_wins(self) -> None:
        assert st.integral([0.0, 1.0, 1.0], [1.0, 7.0, 3.0], 2.0) == 4.0

    def test_degenerate(self) -> None:
        assert st.integral([], [], 5.0) == 0.0
        assert math.isnan(st.time_average([], [], 5.0))
        assert math.isnan(st.time_average([1.0], [3.0], 1.0))
        assert st.integral([1.0], [3.0], 1.0) == 0.0

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="non-decreasing"):
            st.integral([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], 3.0)
        with pytest.raises(ValueError, match="length"):
            st.integral([0.0, 1.0], [1.0], 3.0)
        with pytest.raises(ValueError, match="t_end"):
            st.integral([0.0, 1.0], [1.0, 2.0], -1.0)
        with pytest.raises(ValueError, match="t_start"):
            st.time_average([1.0, 2.0], [1.0, 2.0], 3.0, t_start=0.0)

    def test_random_against_dense_grid(self) -> None:
        rng = np.random.default_rng(11)
        t = np.cumsum(rng.integers(1, 5, size=50)).astype(float)
        v = rng.integers(0, 10, size=50).astype(float)
        t_end = t[-1] + 3.0
        # Integer change times: the unit-grid Riemann sum is exact.
        grid = np.arange(t[0], t_end)
        level = v[np.searchsorted(t, grid, side="right") - 1]
        assert st.integral(t, v, t_end) == pytest.approx(level.sum())


def test_import_does_not_load_scipy() -> None:
    # scipy is imported lazily inside t_critical, off the start-up path.
    import os
    import subprocess
    import sys

    code = "import sys, servoir.analysis; print('scipy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"

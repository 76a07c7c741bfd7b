"""Length distributions: ranges, means, joint resampling, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.rng import stream
from servoir.workload import Empirical, Fixed, LengthDistribution, LogNormal, Uniform, read_trace


@pytest.mark.parametrize("dist", [
    Fixed(100, 10), Uniform(128, 2048, 1, 512), LogNormal(500, 1.0, 100, 1.5, 4096, 1024),
    Empirical([3, 4, 5], [7, 8, 9]),
])
def test_sample_shape_dtype_and_determinism(dist: LengthDistribution) -> None:
    assert isinstance(dist, LengthDistribution)
    p, o = dist.sample(1000, stream(0, "lengths"))
    p2, o2 = dist.sample(1000, stream(0, "lengths"))
    assert p.dtype == np.int64 and o.dtype == np.int64 and p.shape == o.shape == (1000,)
    assert p.min() >= 1 and o.min() >= 1
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(o, o2)
    assert [len(a) for a in dist.sample(0, stream(0, "lengths"))] == [0, 0]


def test_uniform_is_inclusive() -> None:
    p, o = Uniform(128, 131, 1, 1).sample(4000, stream(1, "lengths"))
    assert set(p.tolist()) == {128, 129, 130, 131} and set(o.tolist()) == {1}


def test_lognormal_mean_and_caps() -> None:
    n, mean, sigma = 100_000, 800.0, 0.8
    p, o = LogNormal(mean, sigma, 50.0, 0.3).sample(n, stream(2, "lengths"))
    sd = mean * math.sqrt(math.exp(sigma**2) - 1)
    assert abs(p.mean() - mean) < 5 * sd / math.sqrt(n) + 0.5  # + rounding
    p, o = LogNormal(800, 2.0, 50, 2.0, max_prompt=1000, max_output=60).sample(
        10_000, stream(2, "lengths"))
    assert p.max() == 1000 and o.max() == 60 and p.min() >= 1


def test_empirical_keeps_pairs() -> None:
    d = Empirical([10, 20, 30], [1, 2, 3])
    p, o = d.sample(3000, stream(3, "lengths"))
    np.testing.assert_array_equal(o * 10, p)
    assert set(p.tolist()) == {10, 20, 30}


def test_empirical_from_trace_matches_reader() -> None:
    d = Empirical.from_trace("arxiv")
    w = read_trace("arxiv")
    assert len(d) == 28_257
    np.testing.assert_array_equal(d.prompt, w.num_prompt_tokens)
    assert not d.prompt.flags.writeable


@pytest.mark.parametrize("make", [
    lambda: Fixed(0, 1), lambda: Uniform(5, 4, 1, 1), lambda: Uniform(0, 4, 1, 1),
    lambda: LogNormal(-1, 1, 1, 1), lambda: Empirical([1, 0], [1, 1]),
    lambda: Empirical([1, 2], [1]), lambda: Empirical([], []),
])
def test_invalid_parameters(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError):
        make()

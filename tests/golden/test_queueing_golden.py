"""Golden tests: degenerate engine configurations against queueing closed forms.

One sequence at a time (``max_num_seqs=1``) with a constant iteration time ``c`` and prompts
that fit one iteration is a FIFO single server whose service time is ``c * output_tokens``:
Poisson arrivals make it M/G/1, and the mean queueing delay (arrival to first scheduled) is
Pollaczek-Khinchine's ``lambda E[S^2] / (2 (1 - rho))``. Each test runs independent
replications (warm-up dropped), asserts the closed form lies in the 99.9% CI *and* that the CI
half-width is below the tolerance, so it cannot pass vacuously.
"""

from __future__ import annotations

import numpy as np
import pytest

from servoir.analysis.queueing import md1_wait, mg1_wait_pk
from servoir.analysis.stats import replication_ci
from servoir.rng import stream
from servoir.sim import EngineParams
from servoir.workload import Workload

from factories import LinearLatency, simulate

STEP_S = 0.02
CONSTANT = LinearLatency(base=STEP_S, per_token=0.0, per_seq=0.0, kv_coef_s=0.0, attn=0.0)
ONE_AT_A_TIME = EngineParams(max_num_seqs=1, max_num_batched_tokens=4096, block_size=16,
                             num_blocks=10_000)


def _replications(rate: float, outputs, n: int, reps: int) -> np.ndarray:
    means = []
    for rep in range(reps):
        rng = stream(2024, "golden.mg1", replication=rep)
        arr = np.cumsum(rng.exponential(1 / rate, n))
        out = outputs(rng, n)
        w = Workload(arr, np.full(n, 64), out)
        res = simulate(w, ONE_AT_A_TIME, latency=CONSTANT, check=False)
        q = res.requests["queue_s"][n // 10:]  # drop the warm-up tenth
        means.append(q.mean())
    return np.array(means)


def _assert_golden(values: np.ndarray, expected: float, rel_tol: float) -> None:
    mean, lo, hi = replication_ci(values, confidence=0.999)
    assert lo <= expected <= hi, f"closed form {expected:.5f} outside CI [{lo:.5f}, {hi:.5f}]"
    assert (hi - lo) / 2 <= rel_tol * expected, f"CI too wide: half-width {(hi - lo) / 2:.5f}"


def test_mg1_uniform_outputs_pollaczek_khinchine() -> None:
    rate = 4.0  # E[S] = 0.02 * 8 = 0.16 s, rho = 0.64
    outputs = lambda rng, n: rng.integers(1, 16, n)  # noqa: E731  U{1..15}
    o = np.arange(1, 16)
    es, es2 = STEP_S * o.mean(), (STEP_S**2) * (o**2).mean()
    expected = mg1_wait_pk(rate, es, es2)
    _assert_golden(_replications(rate, outputs, 20_000, 10), expected, 0.06)


def test_md1_fixed_outputs() -> None:
    rate, k = 2.5, 10  # S = 0.02 * 10 = 0.2 s, rho = 0.5
    outputs = lambda rng, n: np.full(n, k)  # noqa: E731
    expected = md1_wait(rate, 1 / (STEP_S * k))
    _assert_golden(_replications(rate, outputs, 20_000, 10), expected, 0.06)


@pytest.mark.slow
def test_mg1_heavy_load_slow() -> None:
    rate = 5.5  # rho = 0.88
    outputs = lambda rng, n: rng.integers(1, 16, n)  # noqa: E731
    o = np.arange(1, 16)
    expected = mg1_wait_pk(rate, STEP_S * o.mean(), (STEP_S**2) * (o**2).mean())
    _assert_golden(_replications(rate, outputs, 200_000, 30), expected, 0.05)

"""BF-IO's survival-weighted lookahead and the finish hazard the DP group exposes."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.policies.routing.bf_io import single_request
from servoir.policies.routing.lookahead import lookahead
from servoir.registry import create
from servoir.sim.dp_attention import DPAttentionCluster
from servoir.sim.instance import EngineParams
from servoir.workload import Workload

from factories import LinearLatency


def test_plain_lookahead_is_the_unit_horizon() -> None:
    la = lookahead(8)
    np.testing.assert_array_equal(la.steps, np.arange(1, 9))
    np.testing.assert_array_equal(la.weights, np.ones(8))


def test_survival_lookahead_doubles_to_four_mean_outputs() -> None:
    q = 1 / 100
    la = lookahead(8, q)
    np.testing.assert_array_equal(la.steps, [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256])
    span = np.array([1] * 8 + [8, 16, 32, 64, 128])
    np.testing.assert_allclose(la.weights, span * (1 - q) ** la.steps)
    # The weights are a quadrature of sum_h (1 - q)^h over 1..400: most of its mass (1 / q).
    assert 0.6 / q < la.weights.sum() < 1.2 / q
    assert lookahead(8, 0.5).steps.max() == 8  # short outputs: nothing beyond the base horizon


def test_far_lookahead_sees_request_counts() -> None:
    # Rank 0: 900 tokens in 10 requests; rank 1: 1,000 tokens in 1 request. Over the next 8
    # steps rank 0 is lighter (980 vs 1,008 at step 8); a few hundred steps ahead it is far
    # heavier, since each of its requests keeps adding a token per step while it runs.
    load, drift = np.array([900, 1000]), np.array([10, 1])
    free, kv = np.array([1, 1]), np.array([10**6, 10**6])
    assert single_request(50, load, drift, free, kv, lookahead(8)) == 0
    assert single_request(50, load, drift, free, kv, lookahead(8, 0.005)) == 1


@pytest.mark.parametrize("output", [20, 60])
def test_group_finish_hazard_is_one_over_the_mean_output(output: int) -> None:
    n = 400
    w = Workload(np.zeros(n), np.full(n, 32), np.full(n, output))
    c = DPAttentionCluster(w, num_ranks=4, engine=EngineParams(16, 512, 4, 10**6),
                           latency=LinearLatency(), router=create("routing", "round_robin"),
                           make_scheduler=lambda: create("scheduling", "fcfs"),
                           max_model_len=10**6)
    c.run()
    assert c.num_finished == n
    # Every request runs about ``output`` steps (its prefill step included): finishes per
    # request-step ~ 1 / output.
    assert c.num_finished / c.request_steps == pytest.approx(1 / output, rel=0.1)


def test_single_request_is_the_programs_optimum_with_the_empty_rank_cost() -> None:
    # One candidate: the closed form (single_request) agrees with the objective's minimum over
    # ranks, empty-rank cost included.
    from servoir.policies.routing.bf_io import idle_objective

    rng = np.random.default_rng(4)
    for _ in range(200):
        g = int(rng.integers(2, 6))
        load, drift = rng.integers(0, 5000, g), rng.integers(0, 6, g)
        free, kv = rng.integers(0, 3, g), np.full(g, 10**6)
        free[int(rng.integers(g))] = 1
        la = lookahead(4, float(rng.uniform(0.01, 0.3)), float(rng.uniform(0, 20000)))
        size = int(rng.integers(10, 3000))
        best = single_request(size, load, drift, free, kv, la)
        objs = [idle_objective(np.array([k]), np.array([size]), load, drift, la)
                if free[k] > 0 else np.inf for k in range(g)]
        assert objs[best] == pytest.approx(min(objs), rel=1e-9, abs=1e-6)


def test_empty_rank_cost_spreads_requests_when_ranks_may_run_dry() -> None:
    # Rank 0 holds one request (2,500 KV tokens), rank 1 four (1,000). By KV the new request
    # belongs on rank 1; with short outputs (hazard 0.2) rank 0 is likely to run dry and idle
    # a whole iteration (150k token-equivalents) at every barrier, so it goes there.
    load, drift = np.array([2500, 1000]), np.array([1, 4])
    free, kv = np.array([1, 1]), np.array([10**6, 10**6])
    assert single_request(100, load, drift, free, kv, lookahead(8)) == 1
    assert single_request(100, load, drift, free, kv, lookahead(8, 0.2)) == 1
    assert single_request(100, load, drift, free, kv, lookahead(8, 0.2, 150_000.0)) == 0

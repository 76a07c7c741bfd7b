"""vLLM 0.19 engine behaviours behind EngineParams flags: async scheduling and the prefix cache
of a preempted request (the property tests check both against the per-iteration reference)."""

from __future__ import annotations

import numpy as np

from servoir.registry import create
from servoir.sim import Cluster, EngineParams, collect
from servoir.sim.free_queue import FreeQueue
from servoir.workload import Workload

from factories import LinearLatency, simulate

LAT = LinearLatency(base=0.01, per_token=0.0, per_seq=0.0, kv_coef_s=0.0, attn=0.0)  # 10 ms


def _run(w: Workload, eng: EngineParams) -> tuple[dict, Cluster]:
    c = Cluster(w, num_instances=1, engine=eng, latency=LAT, router=create("routing", "round_robin"),
                make_scheduler=lambda: create("scheduling", "fcfs"), max_model_len=10**9,
                check=True)
    c.run()
    return collect(c).requests, c


def test_async_scheduling_admits_an_arrival_one_step_later() -> None:
    # Request 0 decodes in 10 ms steps from t=0; request 1 arrives at 25 ms, mid-step 3.
    w = Workload(np.array([0.0, 0.025]), np.array([4, 4]), np.array([20, 2]))
    sync, _ = _run(w, EngineParams(8, 64, 4, 100))
    asyn, c = _run(w, EngineParams(8, 64, 4, 100, async_scheduling=True))
    # Sync: scheduled at the end of the step in progress (30 ms), first token at 40 ms.
    assert sync["first_scheduled_at"][1] == np.float64(0.03)
    np.testing.assert_allclose(sync["first_token_at"][1], 0.04)
    # Async: queued at 30 ms (the engine reads its input between steps), run in the step after.
    np.testing.assert_allclose(c.instances[0].queued_at[1], 0.03)
    np.testing.assert_allclose(asyn["first_token_at"][1], 0.05)
    # An idle engine takes a request at once in both modes.
    np.testing.assert_allclose(asyn["first_token_at"][0], sync["first_token_at"][0])


def test_async_scheduling_frees_a_finished_slot_one_step_later() -> None:
    # One slot: request 1 waits for request 0 (2 tokens: prefill step + 1 decode step).
    w = Workload(np.array([0.0, 0.001]), np.array([4, 4]), np.array([2, 1]))
    sync, _ = _run(w, EngineParams(1, 64, 4, 100))
    asyn, _ = _run(w, EngineParams(1, 64, 4, 100, async_scheduling=True))
    np.testing.assert_allclose(sync["finish_at"][0], 0.02)
    np.testing.assert_allclose(asyn["finish_at"][0], 0.02)
    # Nothing else is in flight when request 0 finishes, so the engine reads its queue at once.
    np.testing.assert_allclose(sync["first_token_at"][1], 0.03)
    np.testing.assert_allclose(asyn["first_token_at"][1], 0.03)
    # With another request decoding, the finished slot is reused one step later.
    w3 = Workload(np.array([0.0, 0.0, 0.001]), np.array([4, 4, 4]), np.array([2, 10, 1]))
    s3, _ = _run(w3, EngineParams(2, 64, 4, 100))
    a3, _ = _run(w3, EngineParams(2, 64, 4, 100, async_scheduling=True))
    assert a3["first_token_at"][2] > s3["first_token_at"][2]


def test_free_queue_keeps_a_preempted_prefix_until_its_blocks_are_reused() -> None:
    q = FreeQueue(10)
    q.sync(4)  # 6 blocks allocated from the head
    q.push(5, 4, rid=7)  # request 7 preempted: 5 blocks, 4 of them full (cached)
    assert q.size == 9 and q.hit(7) == 4
    q.sync(8)  # one more block allocated: from the head, the never-used blocks first
    assert q.hit(7) == 4
    q.sync(4)  # the rest of the head (3), then request 7's partial last block
    assert q.hit(7) == 4
    q.sync(3)  # then its last full block
    assert q.hit(7) == 3
    q.take(7, 3)
    assert q.hit(7) == 0 and q.size == 0


def test_preempted_prefix_cache_saves_recompute() -> None:
    # Little KV: requests preempt each other; with the cache their recompute is shorter.
    rng = np.random.default_rng(3)
    w = Workload(np.cumsum(rng.exponential(0.01, 30)), rng.integers(50, 200, 30),
                 rng.integers(50, 200, 30))
    base = dict(max_num_seqs=8, max_num_batched_tokens=256, block_size=4, num_blocks=150)
    lat = LinearLatency()
    off = simulate(w, EngineParams(**base), latency=lat)
    on = simulate(w, EngineParams(**base, cache_preempted=True), latency=lat)
    assert off.requests["num_preemptions"].sum() > 0
    assert on.requests["finish_at"].max() < off.requests["finish_at"].max()

"""``engine.preset=vidur_v0``: Vidur's numbers, the exactness of event skipping, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servoir.config import load_config
from servoir.experiments.run import build, run
from servoir.experiments.vidur import PUBLISHED, medians
from servoir.hardware import get_model
from servoir.hardware.vidur import VidurStageTime, build_tables, load_tables, vidur_num_blocks
from servoir.rng import stream
from servoir.sim import Cluster, EngineParams, collect
from servoir.workload import Workload

VIDUR_FLAGS = {"hardware.model": "llama-3-70b", "hardware.gpu": "a100", "hardware.tp": 2,
               "hardware.pp": 2}


@pytest.mark.parametrize("workload", ["w1k_qps1", "w1k_qps2", "w1k_qps4"])
def test_medians_within_ten_percent_of_vidur(workload: str) -> None:
    """Vidur 0.0.26's published medians (TTFT, TPOT, E2E; its definitions) on the same files.

    Issue #3 asks for 10%; measured here: within 3% on every median (README, bench vidur)."""
    cfg = load_config(None, {**VIDUR_FLAGS, "workload.trace": f"vidur_{workload}"},
                      ["engine.preset=vidur_v0"])
    r = run(cfg).requests
    assert (r["status"] == "finished").all() and r["num_preemptions"].sum() == 0
    got = medians(r["first_token_at"], r["finish_at"], r["arrival_at"], r["num_output_tokens"])
    for k, v in got.items():
        assert abs(v / PUBLISHED[workload][k] - 1) < 0.10, (k, v, PUBLISHED[workload][k])


def test_memory_plan_matches_vidur() -> None:
    """Vidur's planner: 80 GiB x 0.9 minus weights per device, in 4096-token chunks."""
    assert vidur_num_blocks(get_model("llama-3-70b"), tp=2, pp=2) == 32768


def test_shipped_tables_are_the_fit_of_the_shipped_profiles() -> None:
    fresh = build_tables()
    shipped = load_tables("llama-3-70b", "a100", 2)
    assert fresh.keys() == shipped.keys()
    for k in fresh:
        np.testing.assert_allclose(shipped[k], fresh[k], rtol=1e-12, err_msg=k)


def test_stage_times_follow_vidur_structure() -> None:
    t2 = VidurStageTime(get_model("llama-3-70b"), "a100", 2, pp=2)
    t1 = VidurStageTime(get_model("llama-3-70b"), "a100", 2, pp=1)
    first, last = t2.decode_stages(8, 1000)
    assert first > last  # send/recv on every stage but the last
    (whole,) = t1.decode_stages(8, 1000)
    assert whole == pytest.approx(2 * last, rel=1e-12)  # 80 layers vs 40 per stage
    # KV is bucketed by 256: same time within a bucket, more in the next.
    assert t2.decode_stages(8, 769) == t2.decode_stages(8, 1024) < t2.decode_stages(8, 1025)
    assert t2.prefill_stages([1000, 1000])[1] > t2.prefill_stages([1000])[1]


def _run(w: Workload, pp: int, blocks: int, seqs: int, fast: bool, heap_loop: bool = False):
    stage_time = VidurStageTime(get_model("llama-3-70b"), "a100", 2, pp)
    c = Cluster(w, num_instances=1, engine=EngineParams(seqs, 4096, 16, blocks, False, pp),
                latency=None, router=_rr(), make_scheduler=lambda: None, max_model_len=4096,
                stage_time=stage_time, vidur_fast=fast)
    if heap_loop:
        c.single = False  # the cluster's general loop (heap, router, table), not the lone one
        c.router.reset(1, stream(0, "policy.router"))
    c.run()
    return collect(c), c.instances[0]


def _rr():
    from servoir.registry import create

    return create("routing", "round_robin")


workloads = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000), "n": st.integers(1, 120), "gap": st.floats(0.05, 3.0),
    "pp": st.sampled_from([1, 2, 4]), "blocks": st.sampled_from([400, 2_000, 32_768]),
    "seqs": st.sampled_from([8, 32, 128]),
})


@settings(max_examples=40, deadline=None)
@given(workloads)
def test_event_skipping_equals_the_literal_engine(p: dict) -> None:
    """Stretches (closed-form cycles, cut and replayed at arrivals), the two-stage engine's
    slots and the one-replica loop change nothing."""
    rng = np.random.default_rng(p["seed"])
    n = p["n"]
    w = Workload(np.cumsum(rng.exponential(p["gap"], n)), rng.integers(16, 2048, n),
                 rng.integers(1, 400, n))
    fast, inst = _run(w, p["pp"], p["blocks"], p["seqs"], True)
    # The literal engine, driven by the cluster's general event loop.
    slow, _ = _run(w, p["pp"], p["blocks"], p["seqs"], False, heap_loop=True)
    for k in ("first_scheduled_at", "first_token_at", "finish_at", "num_preemptions"):
        np.testing.assert_allclose(fast.requests[k], slow.requests[k], rtol=1e-9, atol=1e-6,
                                   err_msg=k)
    r = fast.requests
    assert (r["status"] == "finished").all()
    assert inst.used == 0 and inst.admitted == 0  # every block returned
    # Sample-path Little's law on the recorded series (admitted + queued over time).
    s = fast.series[0]
    assert np.all(np.diff(s.time_at) >= 0) and np.all(s.kv_used_blocks <= s.kv_total_blocks)
    area = float(np.sum((s.num_running + s.num_waiting)[:-1] * np.diff(s.time_at)))
    sojourn = float((r["finish_at"] - r["arrival_at"]).sum())
    assert abs(area - sojourn) <= 1e-6 * max(1.0, sojourn)


def test_preset_defaults_and_clipping() -> None:
    cfg = load_config(None, {**VIDUR_FLAGS, "workload.num_requests": 10},
                      ["engine.preset=vidur_v0", "workload.generator.lengths.kind=fixed",
                       "workload.generator.lengths.prompt=[4000,4000]",
                       "workload.generator.lengths.output=[200,200]"])
    b = build(cfg)
    assert (b.engine.max_num_seqs, b.engine.max_num_batched_tokens) == (128, 4096)
    assert not b.engine.enable_chunked_prefill and b.engine.num_blocks == 32768
    # Vidur's trace replay takes the excess over 4096 tokens off the prompt, and says so.
    assert (b.workload.num_prompt_tokens == 3896).all()
    assert b.workload.meta["num_prompt_clipped"] == 10
    res = run(cfg)
    assert res.meta["num_prompt_clipped"] == 10 and res.finished.all()

"""Real vLLM 0.19 replays: honest inputs, the fitted tables, the comparison's structure."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.hardware import get_gpu, get_model
from servoir.hardware.layer_tables import _read, fit_layer_tables, table_latency
from servoir.validation.bundle import BUNDLES_DIR, load_bundle, measured_metrics, shipped_bundles
from servoir.validation.replay import compare, kv_blocks, predict

BUNDLES = shipped_bundles()


def test_four_bundles_ship_with_the_package() -> None:
    assert len(BUNDLES) == 4
    for name in BUNDLES:
        b = load_bundle(name)
        assert len(b.workload) == 300 and b.block_size == 16
        assert BUNDLES_DIR in b.path.parents


def test_prediction_never_reads_the_measurements(tmp_path: Path) -> None:
    """Corrupting the measured timings changes nothing the replay predicts."""
    src = BUNDLES_DIR / "RTX4090_Llama-3.1-8B"
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    a = predict(dst)
    (dst / "vllm" / "requests.jsonl").write_text("not json\n")
    (dst / "vllm" / "timeseries.csv").write_text("garbage\n")
    (dst / "validation" / "summary.txt").unlink()
    b = predict(dst)
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k])
    with pytest.raises(ValueError):
        compare(b)  # the comparison, and only it, reads them


def test_kv_capacity_uses_the_recorded_engine_flag() -> None:
    b = load_bundle("RTX4090_Llama-3.1-8B")
    assert kv_blocks(b) == b.num_gpu_blocks == 2588
    # Without the flag, vLLM's arithmetic gives the same within 1%.
    computed = kv_blocks(type(b)(**{**b.__dict__, "num_gpu_blocks": None}))
    assert abs(computed / 2588 - 1) < 0.01


@pytest.mark.parametrize("name", [n for n in BUNDLES if "A3B" not in n])
def test_decode_steps_reproduce_the_profile_sum(name: str) -> None:
    """A pure-decode step is within 10% of the per-layer tables composed independently here as
    vLLM runs a step: layers x (2 norms, qkv, [qk_norm], rope, o_proj, gate_up, act, down,
    attention, TP all-reduces) + embedding + final norm + lm_head + sampler."""
    from servoir.hardware.layer_tables import _collective_us

    b = load_bundle(name)
    spec, gpu, perf = get_model(b.model), get_gpu(b.gpu), b.perf_dir()
    lm = fit_layer_tables(perf, spec, gpu, b.tp)
    dense, att, per_seq = (_read(perf / f) for f in ("dense.csv", "attention.csv",
                                                     "per_sequence.csv"))

    def op(table, name, col, x):  # the profile's own value at an exact grid point
        return float(table["time_us"][(table["layer"] == name) & (table[col] == x)][0])

    layer_ops = ["layernorm", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj",
                 "act_fn", "down_proj"] + (["qk_norm"] if "Qwen3" in name else [])
    checked = 0
    for nd, kd in ((16, 512), (32, 1024), (64, 1024), (128, 2048)):
        m = (att["prefill_chunk"] == 0) & (att["n_decode"] == nd) & (att["kv_decode"] == kd)
        if not m.any() or not (dense["tokens"] == nd).any():
            continue
        per_layer = sum(op(dense, o, "tokens", nd) for o in layer_ops) + float(att["time_us"][m][0])
        if b.tp > 1:
            per_layer += 2 * float(_collective_us(np.array([nd * spec.hidden_size * 2.0]),
                                                  gpu, b.tp)[0])
        step_us = (spec.num_layers * per_layer + op(dense, "embedding", "tokens", nd)
                   + op(dense, "final_layernorm", "tokens", nd)
                   + op(per_seq, "lm_head", "sequences", nd)
                   + op(per_seq, "sampler", "sequences", nd))
        got = lm.step_time(nd, nd, nd * (kd + 1), 0.0) * 1e6
        assert abs(got / step_us - 1) < 0.10, (nd, kd, got, step_us)
        checked += 1
    assert checked >= 2


def test_mixed_steps_cost_more_than_their_parts() -> None:
    b = load_bundle("RTXPRO6000_Llama-3.1-8B")
    lm = table_latency(b.perf_dir(), get_model(b.model), get_gpu(b.gpu), 1)
    decode = lm.step_time(127, 127, 127 * 1200, 0.0)
    prefill = lm.step_time(857, 1, 0, 857 * 858 / 2)
    mixed = lm.step_time(127 + 857, 128, 127 * 1200, 857 * 858 / 2)
    assert mixed > max(decode, prefill)


def test_compare_reports_every_metric_and_llmservingsim() -> None:
    row = compare(predict("RTXPRO6000_Qwen3-32B"))
    for k in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(row[k]["measured"]) == {"mean", "p50", "p90"}
        assert set(row[k]["error"]) == {"mean", "p50", "p90"}
    assert row["replay_wall_s"] < 30  # seconds, not minutes (measured: ~0.1 s)
    assert row["llmservingsim_error"]["ttft_s.mean"] == pytest.approx(0.013)
    m = measured_metrics(load_bundle("RTXPRO6000_Qwen3-32B"))
    # The bundles' README: TTFT p50 40,701.8 ms, TPOT p50 84.3 ms, E2E p50 98.6 s.
    assert np.percentile(m["ttft_s"], 50) == pytest.approx(40.7018, rel=1e-4)
    assert np.percentile(m["tpot_s"], 50) == pytest.approx(0.0843, rel=2e-3)


def test_ep_moe_adjust_follows_the_tokens_of_all_ranks() -> None:
    """With expert parallelism a rank's experts see every rank's tokens: no change when the
    ranks run equal counts, cheaper MoE for a prefilling rank beside a decoding one."""
    b = load_bundle("RTXPRO6000_Qwen3-30B-A3B-Instruct-2507")
    lat = table_latency(b.perf_dir(), get_model(b.model), get_gpu(b.gpu), 1, ep=2)
    assert abs(lat.ep_moe_adjust(128, 256)) < 1e-9
    assert lat.ep_moe_adjust(1098, 1119) < -1e-3  # ~2.7 ms less over 48 layers
    assert lat.ep_moe_adjust(21, 1119) > 0  # the decoding rank's experts work more
    dense = load_bundle("RTXPRO6000_Llama-3.1-8B")
    lm = table_latency(dense.perf_dir(), get_model(dense.model), get_gpu(dense.gpu), 1)
    assert lm.ep_moe_adjust(1000, 1100) == 0.0


def test_decode_attention_follows_the_table_per_batch_size() -> None:
    """Pure-decode steps are linear in KV for a fixed batch (the engine's stretches need it)
    and follow the profile's attention rows (8-128 sequences, 256-4,096 tokens each) closer
    than one plane over all batch sizes: mean error 2.8-3.6% against 3.7-7.5%."""
    from servoir.hardware.layer_tables import _attention_fit, _decode_lines

    for name in BUNDLES:
        b = load_bundle(name)
        spec = get_model(b.model)
        lat = table_latency(b.perf_dir(), spec, get_gpu(b.gpu), b.tp, ep=2 if "A3B" in name else 1)
        for n in (16, 64):
            k1, k2 = n * 1000, n * 2000
            assert abs((lat.step_time(n, n, k2, 0.0) - lat.step_time(n, n, k1, 0.0))
                       - lat.kv_coef(n) * (k2 - k1)) < 1e-12
        att = _read(b.perf_dir() / "attention.csv")
        a, (ns, c0, c1) = _attention_fit(att, 2048), _decode_lines(att)
        pc, nd, kd, t = (att[k] for k in ("prefill_chunk", "n_decode", "kv_decode", "time_us"))
        m = (pc == 0) & (nd >= 8) & (nd <= 128) & (kd >= 256) & (kd <= 4096)
        kv = nd[m] * (kd[m] + 1)
        plane = a["const"] + a["per_seq"] * nd[m] + a["kv"] * kv
        line = np.interp(nd[m], ns, c0) + np.interp(nd[m], ns, c1) * kv
        err_line, err_plane = np.abs(line / t[m] - 1), np.abs(plane / t[m] - 1)
        assert err_line.mean() < 0.04 and err_line.max() < 0.12, name
        assert err_line.mean() < err_plane.mean(), name


@pytest.mark.parametrize("lockstep", [False, True])
def test_slower_steps_are_the_same_run_in_other_time_units(lockstep: bool) -> None:
    """``sensitivity`` replays "every step c times slower" as arrivals / c with every time x c.
    That is exact only if the engine has no clock of its own and the front end's (the DP stats
    interval) is scaled too; checked on the engine modes the replays use (async scheduling,
    prefix cache of preempted requests, whole-prompt admission, preemption under a small KV
    cache; the lock-step DP group of the MoE bundle; vLLM 0.19's stale-count DP balancer)."""
    from servoir.registry import create
    from servoir.sim import Cluster, EngineParams, collect
    from servoir.sim.dp_attention import DPAttentionCluster
    from servoir.workload import Workload

    from factories import LinearLatency, make_workload

    w = make_workload(3, 120, 0.004)
    eng = EngineParams(16, 256, 4, 160, True, 1, reserve_full_prompt=True,
                       async_scheduling=True, cache_preempted=True)

    preempted = []

    def times(arrival: np.ndarray, c: float, interval: float) -> np.ndarray:
        lat = LinearLatency(base=0.01 * c, per_token=1e-4 * c, per_seq=2e-4 * c,
                            kv_coef_s=1e-5 * c, attn=1e-8 * c, hop=1e-4 * c)
        router = create("routing", "vllm_score", {"publish_interval_s": interval,
                                                  "ties": "first"})
        kw = dict(engine=eng, latency=lat, router=router,
                  make_scheduler=lambda: create("scheduling", "fcfs"), max_model_len=10**9)
        wl = Workload(arrival, w.num_prompt_tokens, w.num_output_tokens)
        cl = (DPAttentionCluster(wl, num_ranks=2, prefill_on_ranks=True, **kw) if lockstep
              else Cluster(wl, num_instances=2, **kw))
        cl.run()
        r = collect(cl).requests
        preempted.append(int(r["num_preemptions"].sum()))
        return np.concatenate([r["first_token_at"], r["finish_at"]])

    c = 1.07
    # The front end's stats interval is the one clock outside the engine: it scales too.
    slow = times(w.arrival_at, c, 0.05)
    np.testing.assert_allclose(slow, c * times(w.arrival_at / c, 1.0, 0.05 / c), rtol=1e-9)
    assert preempted[0] > 0 and preempted[0] == preempted[1]


def test_sensitivity_separates_queueing_from_service() -> None:
    """TPOT is service: it moves about 1% per 1% of step time. The MoE run's TTFT mean is
    queueing near capacity and is amplified several times (why a 13.6% bar on it asks for
    steps right to about 2%)."""
    from servoir.validation.replay import sensitivity

    s = sensitivity(predict("RTXPRO6000_Qwen3-30B-A3B-Instruct-2507"))
    assert 0.007 < s["tpot_s"]["mean"] < 0.015
    assert s["ttft_s"]["mean"] > 2.5 * s["tpot_s"]["mean"]


def test_bundle_hardware_comes_from_its_description_not_its_folder_name(tmp_path: Path) -> None:
    """A bundle copied to any folder name replays on the GPU its ``config.json`` names; a
    description naming an unknown GPU is refused with the file that says so."""
    src = BUNDLES_DIR / "RTX4090_Llama-3.1-8B"
    dst = tmp_path / "my_run"
    shutil.copytree(src, dst)
    assert load_bundle(dst).gpu == "rtx4090"
    (dst / "config.json").unlink()  # then the profile's meta.yaml
    assert load_bundle(dst).gpu == "rtx4090"
    (dst / "config.json").write_text(
        (src / "config.json").read_text().replace('"RTX4090"', '"H100"'))
    with pytest.raises(InputError, match="unknown hardware 'H100'") as e:
        load_bundle(dst)
    assert "config.json" in str(e.value)

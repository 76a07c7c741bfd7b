"""Expert parallelism over a DP-attention group (DeepSeek-style serving): memory and roofline."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.config import load_config
from servoir.errors import InputError
from servoir.experiments.run import expert_parallel_degree, run
from servoir.hardware import get_gpu, get_model, kv_capacity_tokens
from servoir.hardware.latency import get_latency_model, roofline_model

GIB = 1024**3


def test_routed_experts_are_most_of_deepseek_v3() -> None:
    spec = get_model("deepseek-v3")
    # 58 MoE layers x 256 experts x 3 x 7168 x 2048 parameters, fp8: 654 GB of the 671 GB.
    assert spec.routed_expert_bytes == 58 * 256 * 3 * 7168 * 2048
    assert get_model("llama-3-8b").routed_expert_bytes == 0


def test_capacity_shards_only_the_routed_experts() -> None:
    spec, gpu = get_model("deepseek-v3"), get_gpu("h200")
    with pytest.raises(InputError, match="expert_parallel"):
        kv_capacity_tokens("deepseek-v3", "h200")  # 625 GiB of weights on one GPU
    got = kv_capacity_tokens("deepseek-v3", "h200", activation_reserve_bytes=GIB, ep=16)
    routed = spec.routed_expert_bytes
    weights = spec.weight_bytes - routed + routed / 16
    assert got == int((gpu.memory_bytes * 0.9 - weights - GIB) // spec.kv_bytes_per_token)
    # ep <= tp is plain TP slicing, and ep must be a multiple of tp.
    a = kv_capacity_tokens("mixtral-8x7b", "h100", tp=2, activation_reserve_bytes=GIB)
    assert kv_capacity_tokens("mixtral-8x7b", "h100", tp=2, activation_reserve_bytes=GIB,
                              ep=2) == a
    with pytest.raises(InputError, match="multiple of tp=2"):
        kv_capacity_tokens("mixtral-8x7b", "h100", tp=2, ep=3)


def test_roofline_reads_only_the_local_experts() -> None:
    spec, gpu = get_model("deepseek-v3"), get_gpu("h200")
    one, sixteen = roofline_model(spec, gpu, 1, 1), roofline_model(spec, gpu, 1, 16)
    assert sixteen.source == "roofline:ep16" and get_latency_model(
        "deepseek-v3", "h200", 1, 16).source == "roofline:ep16"
    t1, t16 = np.array(one.token_time_s), np.array(sixteen.token_time_s)
    # Decode-sized steps: every expert is touched without EP; with EP only the 16 local ones
    # (plus the all-to-all), so a rank's step is several times shorter.
    k = list(one.token_knots).index(64)
    assert t16[k] < t1[k] / 3
    # Large prefill steps are compute-bound either way: the same FLOPs per GPU, plus exchange.
    assert t16[-1] >= t1[-1] * 0.99
    assert np.all(np.diff(t16) >= 0)


def test_config_refuses_expert_parallel_where_it_means_nothing() -> None:
    def cfg(*extra: str):
        return load_config(None, {}, ["hardware.expert_parallel=true", *extra])

    with pytest.raises(InputError, match="no experts"):
        expert_parallel_degree(cfg("hardware.model=llama-3-8b", "cluster.mode=dp_attention"))
    with pytest.raises(InputError, match="dp_attention"):
        expert_parallel_degree(cfg("hardware.model=mixtral-8x7b"))
    assert expert_parallel_degree(cfg("hardware.model=mixtral-8x7b", "cluster.mode=dp_attention",
                                      "cluster.instances=4", "hardware.tp=2")) == 8


def test_deepseek_v3_runs_as_a_dp_attention_group() -> None:
    with pytest.raises(InputError, match="group's ranks"):
        kv_capacity_tokens("deepseek-v3", "h200", ep=4)  # 168 GiB per GPU
    cfg = load_config(None, {}, [
        "hardware.model=deepseek-v3", "hardware.gpu=h200", "hardware.expert_parallel=true",
        "cluster.mode=dp_attention", "cluster.instances=8", "workload.trace=azure_conv",
        "workload.num_requests=400", "workload.rate=100"])
    res = run(cfg, record_series=False)
    h = res.headline()
    assert res.meta["latency_model"] == "roofline:ep8"
    assert h["num_finished"] == 400 and 0.0 <= h["barrier_idle_frac"] < 1.0


def test_deepseek_v3_shapes_add_up_to_its_671b_parameters() -> None:
    # MLA attention, 3 dense layers, 58 MoE layers of 256 routed + 1 shared expert and a router,
    # embeddings and head: the shapes the roofline reads account for the published total.
    s = get_model("deepseek-v3")
    expert = 3 * s.hidden_size * s.moe_intermediate_size
    moe_layers = s.num_layers - s.num_dense_layers
    total = (s.num_layers * s.attn_layer_params
             + s.num_dense_layers * 3 * s.hidden_size * s.intermediate_size
             + moe_layers * ((s.num_experts + s.num_shared_experts) * expert
                             + s.hidden_size * s.num_experts)
             + 2 * s.vocab_size * s.hidden_size)
    assert total == pytest.approx(s.num_params, rel=0.005)

"""``run(cfg) -> RunResult``: a pure function of the configuration.

``build(cfg)`` turns the pydantic config into plain objects (workload, engine parameters,
latency model, policies) before the run, so the hot loop never touches pydantic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from servoir import __version__, registry
from servoir.config import GeneratorConfig, LengthsConfig, SimConfig
from servoir.errors import InputError
from servoir.hardware import (
    default_activation_reserve_bytes,
    get_latency_model,
    get_model,
    kv_capacity_tokens,
)
from servoir.hardware.vidur import VidurStageTime, vidur_num_blocks
from servoir.results import RunResult
from servoir.rng import stream
from servoir.sim import Cluster, EngineParams, collect
from servoir.workload import Workload
from servoir.workload.readers import read_trace

DEFAULT_NUM_REQUESTS = 1000
DEFAULT_RATE = 1.0


def build_lengths(cfg: LengthsConfig) -> Any:
    """The length distribution a generated workload draws from."""
    from servoir.workload import lengths as ln

    if cfg.kind == "uniform":
        return ln.Uniform(cfg.prompt[0], cfg.prompt[1], cfg.output[0], cfg.output[1])
    if cfg.kind == "fixed":
        return ln.Fixed(cfg.prompt[0], cfg.output[0])
    if cfg.kind == "lognormal":
        return ln.LogNormal(cfg.prompt_mean, cfg.prompt_sigma, cfg.output_mean, cfg.output_sigma)
    return ln.Empirical.from_trace(cfg.trace)


def generate(cfg: GeneratorConfig, rate: float, num_requests: int, seed: int,
             lengths: Any | None = None) -> Workload:
    """A generated workload: arrival process ``cfg.kind`` at mean ``rate``."""
    from servoir.workload import generators as gen

    if lengths is None and cfg.kind != "sharegpt_sessions":
        lengths = build_lengths(cfg.lengths)
    rng = stream(seed, "workload.arrivals")
    if cfg.kind == "poisson":
        return gen.poisson(rate, num_requests, lengths, rng)
    if cfg.kind == "gamma":
        return gen.gamma(rate, cfg.cv, num_requests, lengths, rng)
    if cfg.kind in ("sessions", "sharegpt_sessions"):
        num_sessions = cfg.sessions or -(-num_requests // cfg.turns)
        if cfg.kind == "sessions":
            return gen.sessions(num_sessions, cfg.turns, cfg.think_time_s, rate, lengths, rng,
                                accumulate_history=cfg.history)
        return gen.sharegpt_sessions(num_sessions, cfg.think_time_s, rate, rng)
    if len(cfg.rates) != len(cfg.sojourn_s):
        raise InputError("generator.rates and generator.sojourn_s need the same length",
                         field="workload.generator.rates")
    # Rates are relative: scale them so the long-run mean rate is `rate`.
    mean = gen.mmpp_mean_rate(cfg.rates, cfg.sojourn_s)
    if not mean > 0:
        raise InputError(f"MMPP rates {list(cfg.rates)} give a mean rate of 0",
                         field="workload.generator.rates")
    rates = [r * rate / mean for r in cfg.rates]
    return gen.mmpp(rates, cfg.sojourn_s, num_requests, lengths, rng)


def build_workload(cfg: SimConfig) -> Workload:
    """The workload of a run: a trace (optionally re-rated and truncated) or a generator."""
    wc = cfg.workload
    if wc.trace is not None:
        w = read_trace(wc.trace, seed=cfg.seed)
        if not w.meta.get("has_arrivals", True):
            # A length table without timestamps: its lengths drive a generated arrival process.
            from servoir.workload.lengths import Empirical

            lengths = Empirical(w.num_prompt_tokens, w.num_output_tokens, source=w.source)
            return generate(wc.generator, wc.rate or DEFAULT_RATE,
                            wc.num_requests or DEFAULT_NUM_REQUESTS, cfg.seed, lengths)
        if wc.num_requests is not None:
            if wc.num_requests > len(w):
                raise InputError(f"num_requests={wc.num_requests} but the trace has {len(w)}",
                                 file=w.source, field="workload.num_requests")
            w = w.head(wc.num_requests)
        if wc.rate is not None:
            w = w.with_rate(wc.rate)
        return w
    return generate(wc.generator, wc.rate or DEFAULT_RATE,
                    wc.num_requests or DEFAULT_NUM_REQUESTS, cfg.seed)


@dataclass
class Built:
    """Plain objects of one run, ready to simulate."""

    workload: Workload
    engine: EngineParams
    latency: Any
    make_router: Callable[[], Any]
    make_scheduler: Callable[[], Any]
    max_model_len: int
    kv_tokens: int
    stage_time: Any = None  # vidur_v0 only


def expert_parallel_degree(cfg: SimConfig) -> int:
    """GPUs sharing the routed experts: ``tp x instances`` with ``hardware.expert_parallel``
    (a DP-attention group of an MoE model), else 1 (experts TP-sliced like the rest)."""
    hw = cfg.hardware
    if not hw.expert_parallel:
        return 1
    if not get_model(hw.model).is_moe:
        raise InputError(f"{hw.model} has no experts to shard", field="hardware.expert_parallel")
    if cfg.cluster.mode != "dp_attention" or hw.pp != 1:
        raise InputError("expert parallelism shards the experts over the ranks of a DP-attention "
                         "group: use it with cluster.mode=dp_attention and pp=1 (within one TP "
                         "group it reads the same bytes as TP slicing)",
                         field="hardware.expert_parallel")
    return hw.tp * cfg.cluster.instances


def build(cfg: SimConfig, workload: Workload | None = None) -> Built:
    """Resolve names and capacities; validate policies by constructing them once."""
    hw, eng = cfg.hardware, cfg.engine
    spec = get_model(hw.model)
    seqs = eng.setting("max_num_seqs")
    tokens = eng.setting("max_num_batched_tokens")
    chunked = eng.setting("enable_chunked_prefill")
    ep = expert_parallel_degree(cfg)
    latency = get_latency_model(hw.model, hw.gpu, hw.tp, ep)
    stage_time = None
    if eng.preset == "vidur_v0":
        stage_time = VidurStageTime(spec, hw.gpu, hw.tp, hw.pp)
        if cfg.instance.scheduler.name != "fcfs":
            raise InputError("vidur_v0 mirrors Vidur's FIFO scheduler; use --scheduler fcfs",
                             field="instance.scheduler.name")
    if hw.kv_tokens is not None:
        kv_tokens = hw.kv_tokens
    elif eng.preset == "vidur_v0":
        kv_tokens = vidur_num_blocks(spec, hw.tp, hw.pp, max_tokens=tokens) * eng.block_size
    else:
        reserve = default_activation_reserve_bytes(spec, hw.tp, tokens, seqs)
        kv_tokens = kv_capacity_tokens(hw.model, hw.gpu, hw.tp, hw.pp,
                                       eng.gpu_memory_utilization, reserve, ep)
    num_blocks = kv_tokens // eng.block_size
    if num_blocks < 1:
        raise InputError(f"KV capacity {kv_tokens} tokens is less than one block",
                         field="hardware.kv_tokens")
    # vLLM refuses to start when the KV cache cannot hold one max-length sequence; here the
    # effective limit is capped at capacity so that every accepted request can run alone.
    max_model_len = min(eng.max_model_len or spec.max_model_len, num_blocks * eng.block_size)
    if not chunked:
        max_model_len = min(max_model_len, tokens)
    engine = EngineParams(seqs, tokens, eng.block_size, num_blocks, chunked, hw.pp,
                          reserve_full_prompt=eng.setting("scheduler_reserve_full_isl"),
                          async_scheduling=eng.async_scheduling,
                          cache_preempted=eng.cache_preempted)
    r, s = cfg.cluster.router, cfg.instance.scheduler
    registry.create("routing", r.name, r.params)
    registry.create("scheduling", s.name, s.params)
    w = workload if workload is not None else build_workload(cfg)
    if eng.preset == "vidur_v0":
        w = clip_like_vidur(w, tokens)
    return Built(
        workload=w,
        engine=engine,
        latency=latency,
        make_router=lambda: registry.create("routing", r.name, r.params),
        make_scheduler=lambda: registry.create("scheduling", s.name, s.params),
        max_model_len=max_model_len,
        kv_tokens=num_blocks * eng.block_size,
        stage_time=stage_time,
    )


def predicted_output_tokens(cfg: SimConfig, w: Workload) -> np.ndarray | None:
    """The predictions the configured scheduler reads (``None`` without a predictor).

    The scheduler's ``trusts`` (``point``, ``lower``, ``upper``; FCFS and others: ``none``)
    picks the column of the predictor's ``[lower, point, upper]``; adversarial intervals are
    placed against it (:mod:`servoir.workload.predictors`).
    """
    pc = cfg.prediction
    if pc.kind == "none":
        return None
    from servoir.workload.predictors import predict

    trusts = getattr(registry.get("scheduling", cfg.instance.scheduler.name), "trusts", "none")
    p = predict(pc.kind, pc.params, w.num_output_tokens, w.num_prompt_tokens, seed=cfg.seed,
                trusts=trusts if trusts != "none" else "point")
    return p.trusted(trusts)


def clip_like_vidur(w: Workload, max_tokens: int) -> Workload:
    """Vidur's trace replay: a request over ``max_tokens`` loses the excess from its prompt.

    The number of clipped requests is recorded in ``meta["num_prompt_clipped"]``.
    """
    total = w.num_prompt_tokens + w.num_output_tokens
    over = total > max_tokens
    if not over.any():
        return w
    prompt = np.where(over, np.maximum(w.num_prompt_tokens - (total - max_tokens), 1),
                      w.num_prompt_tokens)
    return replace(w, num_prompt_tokens=prompt,
                   meta={**w.meta, "num_prompt_clipped": int(over.sum())})


def dp_attention_group(cfg: SimConfig, b: Built, record_series: bool = True) -> Any:
    """Issue #5: the lock-step DP-attention group :func:`run` simulates for ``cfg`` (its G
    ranks are the configured instances), built from ``b``; not yet run."""
    from servoir.sim.dp_attention import DPAttentionCluster

    if cfg.engine.preset != "vllm_v1" or cfg.workload.max_concurrency is not None:
        raise InputError("cluster.mode=dp_attention runs the vllm_v1 engine without "
                         "workload.max_concurrency", field="cluster.mode")
    return DPAttentionCluster(
        b.workload, num_ranks=cfg.cluster.instances, engine=b.engine, latency=b.latency,
        router=b.make_router(), make_scheduler=b.make_scheduler,
        max_model_len=b.max_model_len, seed=cfg.seed, record_series=record_series)


def run(cfg: SimConfig, workload: Workload | None = None,
        progress: Callable[[int, int], None] | None = None,
        record_series: bool = True) -> RunResult:
    """Simulate ``cfg`` (on ``workload`` if given, else the configured one)."""
    t0 = time.perf_counter()
    b = build(cfg, workload)
    if cfg.cluster.mode == "dp_attention":
        group = dp_attention_group(cfg, b, record_series)
        loop_s = group.run(progress)
        result = collect(group, {  # type: ignore[arg-type]
            "config_digest": cfg.digest(), "version": __version__, "seed": cfg.seed,
            "slo": cfg.slo.model_dump(), "kv_tokens_per_instance": b.kv_tokens,
            "max_model_len": b.max_model_len, "latency_model": getattr(b.latency, "source", ""),
            "workload_source": b.workload.source, "loop_wall_s": loop_s,
            "engine_preset": cfg.engine.preset, "cluster_mode": "dp_attention",
            **group.dp_summary()})
        result.meta["wall_s"] = time.perf_counter() - t0
        return result
    if cfg.cluster.mode == "pd":
        # Issue #8: prefill and decode pools with KV transfer (servoir.sim.pd).
        from servoir.hardware.latency import kv_bytes_per_token_per_gpu
        from servoir.sim.pd import PDCluster

        cl, hw = cfg.cluster, cfg.hardware
        if cfg.engine.preset != "vllm_v1" or cl.prefill_instances >= cl.instances:
            raise InputError("cluster.mode=pd runs the vllm_v1 engine with prefill_instances < "
                             "instances", field="cluster.prefill_instances")
        pd = PDCluster(
            b.workload, num_prefill=cl.prefill_instances,
            num_decode=cl.instances - cl.prefill_instances, engine=b.engine, latency=b.latency,
            make_router=b.make_router, make_scheduler=b.make_scheduler,
            max_model_len=b.max_model_len, seed=cfg.seed, record_series=record_series,
            kv_bytes_per_token=kv_bytes_per_token_per_gpu(get_model(hw.model), hw.tp) * hw.tp,
            link_bytes_per_s=cl.link_gb_per_s * 1e9)
        loop_s = pd.run(progress)
        result = pd.collect({
            "config_digest": cfg.digest(), "version": __version__, "seed": cfg.seed,
            "slo": cfg.slo.model_dump(), "kv_tokens_per_instance": b.kv_tokens,
            "max_model_len": b.max_model_len, "workload_source": b.workload.source,
            "loop_wall_s": loop_s, "engine_preset": cfg.engine.preset, "cluster_mode": "pd"})
        result.meta["wall_s"] = time.perf_counter() - t0
        return result
    cluster = Cluster(
        b.workload, num_instances=cfg.cluster.instances, engine=b.engine, latency=b.latency,
        router=b.make_router(), make_scheduler=b.make_scheduler,
        max_model_len=b.max_model_len, seed=cfg.seed,
        max_concurrency=cfg.workload.max_concurrency, record_series=record_series,
        stage_time=b.stage_time, predicted_output_tokens=predicted_output_tokens(cfg, b.workload))
    loop_s = cluster.run(progress)
    meta = {
        "config_digest": cfg.digest(),
        "version": __version__,
        "seed": cfg.seed,
        "slo": cfg.slo.model_dump(),
        "kv_tokens_per_instance": b.kv_tokens,
        "max_model_len": b.max_model_len,
        "latency_model": getattr(b.latency, "source", ""),
        "workload_source": b.workload.source,
        "loop_wall_s": loop_s,
        "engine_preset": cfg.engine.preset,
        "num_prompt_clipped": b.workload.meta.get("num_prompt_clipped", 0),
    }
    result = collect(cluster, meta)
    result.meta["wall_s"] = time.perf_counter() - t0
    return result

"""``servoir plan``: size a cluster from queueing theory, then confirm it with the simulator.

:func:`plan` reads the workload exactly as ``servoir simulate`` does (same config keys, same
seed), computes one instance's service rate and binding constraint
(:mod:`servoir.analysis.capacity`), the closed-form minimum number of instances (the fluid
queue of the trace's arrivals must pass the stability check) and, with SLOs, the smallest count
whose predicted p99 TTFT and TPOT meet them. With ``verify=True`` it then searches the instance
count with the simulator around the closed form: the answer is the smallest ``N`` whose run is
stable (waiting-queue slope over the second half of the arrival window below 1% of the arrival
rate, :meth:`servoir.results.RunResult.queue_slope_per_s`) and SLO-compliant, with ``N - 1``
checked to fail, so ``servoir simulate ... --instances N`` reproduces the verdict.

The experiments of issue #8 are here too: the stability boundary (:func:`stability_boundary`),
the rule-of-thumb comparison (:func:`rule_of_thumb_table`) and the closed form against
``--verify`` (:func:`closed_form_table`). The P:D split and the PD crossover are in
:mod:`servoir.experiments.pd_planning`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from servoir.analysis.capacity import (
    Capacity,
    EngineLimits,
    RunningBatch,
    instance_capacity,
    min_instances_fluid,
)
from servoir.analysis.slo import slo_min_instances
from servoir.config import SimConfig, load_config
from servoir.errors import InputError
from servoir.experiments.run import build, build_workload, run
from servoir.hardware import get_model
from servoir.hardware.latency import kv_bytes_per_token_per_gpu
from servoir.workload import Workload

STABLE_SLOPE_FRAC = 0.01
"""A run is stable when its waiting-queue slope is below this fraction of the arrival rate."""
MAX_INSTANCES = 10_000


def plan_config(*, trace: str | None, rate: float, model: str, gpu: str, tp: int | None = None,
                prompt_mean: float | None = None, output_mean: float | None = None,
                prompt_sigma: float | None = None, output_sigma: float | None = None,
                num_requests: int | None = None, seed: int | None = None,
                overrides: list[str] | None = None) -> SimConfig:
    """The config ``servoir simulate`` would build from the same flags.

    Without a trace the lengths are lognormal with the given means (sigma 1 by default) and the
    arrivals Poisson (``num_requests``, default 2,000).
    """
    if trace is None and prompt_mean is None:
        raise InputError("give --trace FILE or --prompt-mean (and --output-mean)")
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"--rate must be a finite rate > 0, got {rate}", field="rate")
    if trace is not None and prompt_mean is not None:
        raise InputError("give either --trace or --prompt-mean, not both")
    flags: dict[str, Any] = {"workload.trace": trace, "workload.rate": rate,
                             "workload.num_requests": num_requests, "hardware.model": model,
                             "hardware.gpu": gpu, "hardware.tp": tp, "seed": seed}
    if prompt_mean is not None:
        if output_mean is None:
            raise InputError("--prompt-mean needs --output-mean", field="output_mean")
        flags.update({"workload.generator.lengths.kind": "lognormal",
                      "workload.generator.lengths.prompt_mean": prompt_mean,
                      "workload.generator.lengths.output_mean": output_mean,
                      "workload.generator.lengths.prompt_sigma": prompt_sigma,
                      "workload.generator.lengths.output_sigma": output_sigma,
                      "workload.num_requests": num_requests or 2000})
    return load_config(None, flags, overrides)


def capacity_of(cfg: SimConfig, w: Workload) -> tuple[Capacity, Any, EngineLimits]:
    """Service rate of one instance of ``cfg`` for the lengths of ``w``."""
    if cfg.hardware.pp != 1 or cfg.engine.preset != "vllm_v1":
        raise InputError("the capacity model covers the vllm_v1 engine with pp = 1",
                         field="hardware.pp")
    b = build(cfg, w)
    spec = get_model(cfg.hardware.model)
    lim = EngineLimits(int(b.kv_tokens), b.engine.max_num_seqs, b.engine.max_num_batched_tokens,
                       b.engine.block_size, b.max_model_len,
                       float(kv_bytes_per_token_per_gpu(spec, cfg.hardware.tp)))
    return instance_capacity(w.num_prompt_tokens, w.num_output_tokens, b.latency, lim), \
        b.latency, lim


def _accepted(w: Workload, max_model_len: int | None) -> np.ndarray:
    if max_model_len is None:
        return np.ones(len(w), dtype=bool)
    return (w.num_prompt_tokens + w.num_output_tokens) <= max_model_len


def closed_form(cfg: SimConfig, w: Workload, slo_ttft: float | None = None,
                slo_tpot: float | None = None) -> dict[str, Any]:
    """Closed-form sizing of ``cfg``'s workload ``w`` (no simulation)."""
    cap, lat, lim = capacity_of(cfg, w)
    ok = _accepted(w, lim.max_model_len)
    rate = w.mean_rate if len(w) > 1 else float(cfg.workload.rate or 1.0)
    lam_acc = rate * float(ok.mean())
    batch = RunningBatch.of(cap, lat, lim, w.num_prompt_tokens[ok], w.num_output_tokens[ok])
    n = min_instances_fluid(w.arrival_at[ok], cap.mu_rps, tol_rps=STABLE_SLOPE_FRAC * rate,
                            batch=batch)
    out: dict[str, Any] = {"stable_min_instances": n}
    if slo_ttft is not None or slo_tpot is not None:
        n_slo, pred = slo_min_instances(n, w.arrival_at, w.num_prompt_tokens,
                                        w.num_output_tokens, cap, lat, lim, slo_ttft,
                                        slo_tpot, MAX_INSTANCES, batch)
        out["slo_feasible"] = n_slo is not None
        out["predicted_p99"] = pred
        n = n_slo if n_slo is not None else n
    margin = 1.0 - lam_acc / (n * cap.mu_rps)
    out.update({
        "min_instances": n, "rate_rps": rate, "accepted_rate_rps": lam_acc,
        # The mean-rate bound: below it, only the second-half slope test calls the run stable.
        "mean_rate_instances": math.ceil(lam_acc / cap.mu_rps),
        **cap.summary(), "stability_margin": margin,
        "guaranteed_stable": bool(margin > cap.delta),
        "per_kv_gb_per_gpu_rps": cap.duals["per_kv_gb_per_gpu"] * n,
    })
    return out


def sim_check(cfg: SimConfig, w: Workload, n: int, slo_ttft: float | None = None,
              slo_tpot: float | None = None) -> dict[str, Any]:
    """Simulate ``n`` instances of ``cfg`` on ``w``: stable, SLO-compliant, and the numbers."""
    c = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"instances": n})})
    h = run(c, workload=w).headline()
    rate = w.mean_rate if len(w) > 1 else float(cfg.workload.rate or 1.0)
    slope = float(h["queue_slope_per_s"])
    ttft, tpot = h["metrics"]["ttft_s"]["p99"], h["metrics"]["tpot_s"]["p99"]
    ok = slope < STABLE_SLOPE_FRAC * rate
    if slo_ttft is not None:
        ok = ok and ttft is not None and ttft <= slo_ttft
    if slo_tpot is not None:
        ok = ok and (tpot is None or tpot <= slo_tpot)
    return {"instances": n, "queue_slope_per_s": slope, "ttft_p99_s": ttft,
            "tpot_p99_s": tpot, "throughput_rps": h["throughput_rps"], "ok": bool(ok)}


def verify_min_instances(check: Callable[[int], dict[str, Any]], start: int,
                         max_instances: int = MAX_INSTANCES) -> tuple[int, list[dict[str, Any]]]:
    """Smallest ``n`` with ``check(n)["ok"]`` and not ``check(n - 1)["ok"]``, searched from
    ``start``: down one at a time while it holds, else up by doubling then bisection."""
    runs: dict[int, dict[str, Any]] = {}

    def ok(n: int) -> bool:
        if n not in runs:
            runs[n] = check(n)
        return bool(runs[n]["ok"])

    n = max(1, start)
    if ok(n):
        while n > 1 and ok(n - 1):
            n -= 1
    else:
        lo, step = n, 1
        while not ok(lo + step):
            lo += step
            step *= 2
            if lo + step > max_instances:
                raise InputError(f"no instance count up to {max_instances} is stable")
        hi = lo + step  # ok(hi), not ok(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if not ok(mid) else (lo, mid)
        n = hi
        if n > 1:
            ok(n - 1)
    return n, [runs[k] for k in sorted(runs)]


def plan(cfg: SimConfig, *, slo_ttft: float | None = None, slo_tpot: float | None = None,
         disagg: bool = False, verify: bool = False, link_gbps: float | None = None,
         workload: Workload | None = None) -> dict[str, Any]:
    """The planner behind ``servoir plan`` (see the module docstring); a JSON-ready dict."""
    for name, slo in (("--slo-ttft-p99", slo_ttft), ("--slo-tpot-p99", slo_tpot)):
        if slo is not None and not (math.isfinite(slo) and slo > 0):
            raise InputError(f"{name} must be > 0 seconds, got {slo}", field=name)
    w = workload if workload is not None else build_workload(cfg)
    if len(w) < 2:
        raise InputError("the workload needs at least two requests", field="workload.trace")
    out = closed_form(cfg, w, slo_ttft, slo_tpot)
    out["closed_form_min_instances"] = out["min_instances"]
    out["num_requests"] = len(w)
    if verify:
        n, runs = verify_min_instances(
            lambda k: sim_check(cfg, w, k, slo_ttft, slo_tpot), out["min_instances"])
        out["min_instances"] = n
        out["verify"] = {"verified": True, "runs": runs}
        out["stability_margin"] = 1.0 - out["accepted_rate_rps"] / (n * out["mu_rps_per_instance"])
    if disagg:
        from servoir.experiments.pd_planning import plan_disaggregated, verify_disaggregated

        out.update(plan_disaggregated(cfg, w, out["min_instances"], slo_ttft=slo_ttft,
                                      slo_tpot=slo_tpot, link_gbps=link_gbps))
        if verify and out["prefill_instances"] is not None:
            out.update(verify_disaggregated(cfg, w, (out["prefill_instances"],
                                                     out["decode_instances"]),
                                            slo_ttft=slo_ttft, slo_tpot=slo_tpot,
                                            link_gbps=link_gbps))
    return out


def rule_of_thumb(rate: float, profiled_rps: float, headroom: float = 1.2) -> int:
    """The production planners' sizing: ``ceil(headroom * rate / profiled throughput)``
    (llm-d planner; Dynamo's SLA planner without its correction factors)."""
    if not profiled_rps > 0:
        raise InputError(f"profiled throughput must be > 0, got {profiled_rps}")
    return max(1, math.ceil(headroom * rate / profiled_rps - 1e-9))


def describe(out: dict[str, Any]) -> str:
    """The terminal report of :func:`plan`."""
    d = out["duals"]
    lines = [
        f"recommended instances: {out['min_instances']}"
        + (" (verified by simulation)" if "verify" in out else " (closed form)"),
        f"service rate per instance: {out['mu_rps_per_instance']:.3f} req/s "
        f"(memory {out['mu_memory_rps']:.3f}, token budget {out['mu_compute_rps']:.3f}, "
        f"max_num_seqs {out['mu_seqs_rps']:.3f})",
        f"binding: {out['binding']} ({out['binding_constraint']}); the next limit allows "
        f"{100 * (out['binding_ratio'] - 1):.1f}% more batch",
        f"one more GB of KV per GPU is worth {d['per_kv_gb_per_gpu']:.4f} req/s per instance "
        f"({out['per_kv_gb_per_gpu_rps']:.4f} for the cluster); one more sequence slot "
        f"{d['per_seq_slot']:.4f}; iterations 1% faster {d['per_iteration_time_frac']:.4f}",
        f"stability margin: {100 * out['stability_margin']:.1f}% "
        f"(guaranteed stable above delta = {100 * out['delta']:.2f}%: "
        f"{'yes' if out['guaranteed_stable'] else 'no'})",
    ]
    if out["min_instances"] < out.get("mean_rate_instances", 0):
        lines.append(f"note: below the mean-rate bound of {out['mean_rate_instances']} "
                     "instances; stable only in the sense of the second-half queue-slope test "
                     "(the trace's load is uneven)")
    if out.get("slo_feasible") is False:
        lines.append("warning: no instance count meets the SLOs in the closed form; the "
                     "recommendation is for stability only (use --verify)")
    if out.get("predicted_p99"):
        p = out["predicted_p99"]
        lines.append(f"predicted p99: TTFT {p['ttft_p99_s']:.3f} s, TPOT {p['tpot_p99_s']:.4f} s")
    for r in out.get("verify", {}).get("runs", []):
        lines.append(f"  simulated N={r['instances']}: slope {r['queue_slope_per_s']:+.4f} req/s, "
                     f"p99 TTFT {r['ttft_p99_s']}, TPOT {r['tpot_p99_s']} -> "
                     f"{'ok' if r['ok'] else 'fails'}")
    if "prefill_instances" in out:
        vd = "verify_disagg" in out
        lines.append(f"disaggregated: {out['prefill_instances']} prefill + "
                     f"{out['decode_instances']} decode"
                     + (" (verified by the PD simulator; closed form "
                        f"{out['closed_form_prefill_instances']}P+"
                        f"{out['closed_form_decode_instances']}D)"
                        if vd else " (closed form)")
                     + f"; fluid LP split {out['lp_prefill_instances']}P+"
                     f"{out['lp_decode_instances']}D; disaggregation "
                     f"{'wins' if out['disaggregation_wins'] else 'loses'} in the fluid model")
        if out.get("predicted_pd_p99"):
            q = out["predicted_pd_p99"]
            lines.append(f"predicted p99 of the split: TTFT {q['ttft_p99_s']:.3f} s, TPOT "
                         f"{q['tpot_p99_s']:.4f} s")
        for r in out.get("verify_disagg", {}).get("runs", []):
            lines.append(f"  simulated {r['prefill_instances']}P+{r['decode_instances']}D: "
                         f"slope {r['queue_slope_per_s']:+.4f} req/s (prefill "
                         f"{r['prefill_slope_per_s']:+.4f}, transfer "
                         f"{r['transfer_slope_per_s']:+.4f}, decode "
                         f"{r['decode_slope_per_s']:+.4f}), p99 TTFT {r['ttft_p99_s']}, TPOT "
                         f"{r['tpot_p99_s']} -> {'ok' if r['ok'] else 'fails'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- experiments (issue #8)


def poisson_lengths_workload(w: Workload, rate: float, num_requests: int, seed: int) -> Workload:
    """Poisson arrivals at ``rate`` with (prompt, output) pairs resampled from ``w``."""
    from servoir.rng import stream
    from servoir.workload import generators as gen
    from servoir.workload import lengths as ln

    lengths = ln.Empirical(w.num_prompt_tokens, w.num_output_tokens, source=w.source)
    return gen.poisson(rate, num_requests, lengths, stream(seed, "workload.arrivals"))


def _waiting_series(result: Any, num_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    arr = result.requests["arrival_at"]
    grid = np.linspace(float(arr.min()), float(arr.max()), num_points)
    total = np.zeros(num_points)
    for s in result.series:
        idx = np.searchsorted(s.time_at, grid, side="right") - 1
        total += np.where(idx >= 0, s.num_waiting[np.maximum(idx, 0)], 0)
    return grid, total


def saturated_throughput(result: Any) -> float:
    """Completions per second over the second half of the arrival window (an overloaded run)."""
    r = result.requests
    t0, t1 = float(r["arrival_at"].min()), float(r["arrival_at"].max())
    tm = 0.5 * (t0 + t1)
    fin = r["finish_at"]
    return float(((fin >= tm) & (fin <= t1)).sum() / (t1 - tm))


STABILITY_CASES: tuple[tuple[str, str, int], ...] = (
    ("azure_conv", "llama-3-8b", 1), ("azure_code", "llama-3-8b", 1),
    ("arxiv", "llama-3-8b", 1), ("mooncake_conversation", "llama-3-8b", 1),
    ("sharegpt", "llama-3-8b", 1), ("azure_conv", "llama-3-70b", 4),
    ("arxiv", "qwen3-32b", 2))


def stability_case(trace: str, model: str, tp: int, gpu: str = "a100",
                   num_requests: int = 3000, seed: int = 0,
                   factors: tuple[float, ...] = (0.9, 1.1)) -> dict[str, Any]:
    """One instance on Poisson arrivals with the trace's lengths at ``factors x mu``, plus an
    overloaded run (1.5 mu) whose completion rate is the simulator's maximum sustainable
    throughput."""
    cfg = load_config(None, {"hardware.model": model, "hardware.gpu": gpu, "hardware.tp": tp,
                             "seed": seed})
    from servoir.workload.readers import read_trace

    src = read_trace(trace, seed=seed)
    cap, _, _ = capacity_of(cfg, src)
    mu = cap.mu_rps / cap.accepted_frac  # per arriving request (rejected ones cost nothing)
    row: dict[str, Any] = {"trace": trace, "model": model, "tp": tp, "gpu": gpu,
                           "mu_rps": cap.mu_rps, "binding": cap.binding,
                           "binding_constraint": cap.binding_constraint, "series": {}}
    for f in (*factors, 1.5):
        w = poisson_lengths_workload(src, f * mu, num_requests, seed)
        res = run(cfg, workload=w)
        slope = res.queue_slope_per_s()
        row[f"slope_frac_{f:g}"] = slope / (f * mu)
        if f == 1.5:
            row["sim_max_rps"] = saturated_throughput(res)  # accepted requests per second
        else:
            row["series"][f] = _waiting_series(res)
    row["mu_error_frac"] = cap.mu_rps / row["sim_max_rps"] - 1.0
    return row


def stability_boundary(out: Any = None, cases: tuple[tuple[str, str, int], ...] = STABILITY_CASES,
                       num_requests: int = 3000) -> list[dict[str, Any]]:
    """Issue #8's stability check on several traces and models, and the queue-length plot
    (``out/stability_boundary.png``) when ``out`` is given."""
    rows = [stability_case(t, m, tp, num_requests=num_requests) for t, m, tp in cases]
    if out is not None:
        from pathlib import Path

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        Path(out).mkdir(parents=True, exist_ok=True)
        k = len(rows)
        fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.0), squeeze=False)
        for ax, r in zip(axes[0], rows, strict=True):
            for f, (t, q) in r["series"].items():
                ax.plot(t, q, label=f"{f:g} mu")
            ax.set_title(f"{r['trace']}\n{r['model']} tp{r['tp']} ({r['binding_constraint']})",
                         fontsize=8)
            ax.set_xlabel("time (s)")
        axes[0][0].set_ylabel("waiting requests")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(out) / "stability_boundary.png", dpi=120)
        plt.close(fig)
    return [{k: v for k, v in r.items() if k != "series"} for r in rows]


def profiled_throughput(cfg: SimConfig, w: Workload, num_requests: int = 2000) -> float:
    """What a benchmark reports for one instance: throughput of a closed loop at
    ``max_num_seqs`` requests in flight (``vllm bench serve --max-concurrency``)."""
    c = cfg.model_copy(update={
        "workload": cfg.workload.model_copy(update={"max_concurrency": 256}),
        "cluster": cfg.cluster.model_copy(update={"instances": 1})})
    from dataclasses import replace

    head = w.head(min(len(w), num_requests))
    burst = replace(head, arrival_at=np.zeros(len(head)), session_id=None, turn=None,
                    think_time_s=None)  # every request ready at once, as a benchmark sends them
    return float(run(c, workload=burst).headline()["throughput_rps"])


RULE_CASES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("azure_conv", (10.0, 25.0, 60.0)), ("azure_code", (5.0, 12.0, 30.0)),
    ("arxiv", (4.0, 10.0, 25.0)), ("sharegpt", (8.0, 20.0, 50.0)),
    ("mooncake_conversation", (2.0, 5.0, 12.0)))


def rule_of_thumb_table(cases: tuple[tuple[str, tuple[float, ...]], ...] = RULE_CASES,
                        model: str = "llama-3-8b", gpu: str = "a100",
                        num_requests: int = 3000) -> dict[str, Any]:
    """Issue #8's comparison: closed form, rule of thumb (1.2 x load / profiled throughput)
    and the simulated minimum on the same workloads; counts of under- and over-provisioning."""
    rows = []
    for trace, rates in cases:
        for rate in rates:
            from servoir.workload.readers import read_trace

            has_t = read_trace(trace).meta.get("has_arrivals", True)
            cfg = plan_config(trace=trace, rate=rate, model=model, gpu=gpu,
                              num_requests=None if has_t else num_requests)
            w = build_workload(cfg)
            cf = closed_form(cfg, w)
            truth, _ = verify_min_instances(lambda k, c=cfg, w=w: sim_check(c, w, k),
                                            cf["min_instances"])
            prof = profiled_throughput(cfg, w)
            rule = rule_of_thumb(cf["accepted_rate_rps"], prof)  # load the engine serves
            rows.append({"trace": trace, "rate_rps": rate, "binding": cf["binding_constraint"],
                         "simulated_min": truth, "closed_form": cf["min_instances"],
                         "rule_of_thumb": rule, "profiled_rps": prof,
                         "mu_rps": cf["mu_rps_per_instance"]})
    tally = {}
    for key in ("closed_form", "rule_of_thumb"):
        d = [r[key] - r["simulated_min"] for r in rows]
        tally[key] = {"exact": sum(x == 0 for x in d), "under": sum(x < 0 for x in d),
                      "over": sum(x > 0 for x in d), "max_abs_error": max(abs(x) for x in d),
                      "extra_instances": sum(max(x, 0) for x in d)}
    return {"rows": rows, "tally": tally}


SLO_CASES: dict[str, tuple[float | None, float | None]] = {
    "none": (None, None), "tpot80": (None, 0.08), "ttft2_tpot80": (2.0, 0.08),
    "ttft1": (1.0, None)}
"""SLO settings of :func:`closed_form_table`: name -> (p99 TTFT, p99 TPOT) in seconds."""


def closed_form_table(cases: tuple[tuple[str, tuple[float, ...]], ...] = (
        *RULE_CASES, ("mooncake_synthetic", (2.0, 5.0, 12.0))),
        slos: dict[str, tuple[float | None, float | None]] = SLO_CASES,
        model: str = "llama-3-8b", gpu: str = "a100") -> list[dict[str, Any]]:
    """Closed form against ``--verify`` for each trace (or CSV path), rate and SLO setting,
    with the planner's defaults (``servoir plan --trace T --rate R [--slo-...] [--verify]``)."""
    rows = []
    for trace, rates in cases:
        for rate in rates:
            cfg = plan_config(trace=trace, rate=rate, model=model, gpu=gpu)
            w = build_workload(cfg)
            for name, (ttft, tpot) in slos.items():
                closed = plan(cfg, slo_ttft=ttft, slo_tpot=tpot, workload=w)["min_instances"]
                verified = plan(cfg, slo_ttft=ttft, slo_tpot=tpot, workload=w,
                                verify=True)["min_instances"]
                rows.append({"trace": trace, "rate_rps": rate, "slo": name,
                             "closed_form": closed, "verified": verified,
                             "error": closed - verified})
    return rows

"""The ``servoir`` command line: thin, config -> library call -> files and a terminal table.

Bad input exits with status 2 and one line on stderr naming the file, line or field; never a
traceback.

Annotations here are evaluated at definition (no ``from __future__ import annotations``):
typer would otherwise compile each annotation string at every start-up.
"""

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from servoir.errors import InputError, ServoirError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Operations research for LLM serving: simulate, compare, size.")
hardware_app = typer.Typer(no_args_is_help=True, help="Model, GPU and latency-model data.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed), never part of tests.")
app.add_typer(hardware_app, name="hardware")
app.add_typer(bench_app, name="bench")

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Print servoir's input errors as one line and exit 2 (no traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServoirError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def progress_bar(total_label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A rich progress bar on stderr (only when stderr is a terminal)."""
    if not sys.stderr.isatty():
        return (lambda done, total: None), (lambda: None)
    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(stderr=True), transient=True)
    task = prog.add_task(total_label, total=None)
    prog.start()

    def update(done: int, total: int) -> None:
        prog.update(task, completed=done, total=total)

    return update, prog.stop


Opt = typer.Option


@app.command()
@friendly
def simulate(
    config: Annotated[Path | None, typer.Argument(help="YAML/JSON config file.")] = None,
    trace: Annotated[str | None, Opt(help="Trace file or built-in name.")] = None,
    rate: Annotated[float | None, Opt(help="Mean arrival rate (req/s).")] = None,
    num_requests: Annotated[int | None, Opt(help="Number of requests.")] = None,
    model: Annotated[str | None, Opt(help="Model name.")] = None,
    gpu: Annotated[str | None, Opt(help="GPU name.")] = None,
    tp: Annotated[int | None, Opt(help="Tensor-parallel degree.")] = None,
    pp: Annotated[int | None, Opt(help="Pipeline-parallel degree.")] = None,
    instances: Annotated[int | None, Opt(help="Number of instances.")] = None,
    kv_tokens: Annotated[int | None, Opt(help="KV capacity per instance (tokens).")] = None,
    router: Annotated[str | None, Opt(help="Routing policy.")] = None,
    scheduler: Annotated[str | None, Opt(help="Scheduling policy.")] = None,
    predictor: Annotated[str | None, Opt(help="Output-length predictor: oracle | noisy:SIGMA | "
                                              "interval:ALPHA[:adversarial] | learned.")] = None,
    max_concurrency: Annotated[int | None, Opt(help="Closed-loop cap on requests in flight.")] = None,
    slo_ttft: Annotated[float | None, Opt(help="TTFT SLO (s).")] = None,
    slo_tpot: Annotated[float | None, Opt(help="TPOT SLO (s).")] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="key=value override (repeatable).")] = None,
    seed: Annotated[int | None, Opt(help="Root seed.")] = None,
    out: Annotated[Path | None, Opt(help="Write requests/series Parquet and summary.json here.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Simulate one configuration and print its metrics."""
    from servoir.config import load_config
    from servoir.experiments.run import run

    flags = {
        "workload.trace": trace, "workload.rate": rate, "workload.num_requests": num_requests,
        "workload.max_concurrency": max_concurrency, "hardware.model": model,
        "hardware.gpu": gpu, "hardware.tp": tp, "hardware.pp": pp,
        "hardware.kv_tokens": kv_tokens, "cluster.instances": instances,
        "cluster.router.name": router, "instance.scheduler.name": scheduler,
        "slo.ttft_s": slo_ttft, "slo.tpot_s": slo_tpot, "seed": seed,
    }
    if predictor is not None:
        from servoir.workload.predictors import parse_predictor

        flags["prediction.kind"], flags["prediction.params"] = parse_predictor(predictor)
    cfg = load_config(config, flags, set_)
    update, stop = progress_bar("simulating")
    try:
        result = run(cfg, progress=update)
    finally:
        stop()
    head = result.headline()
    head["wall_s"] = result.meta["wall_s"]
    if out is not None:
        result.write(out)
    if as_json:
        typer.echo(json.dumps(head))
        return
    from servoir.cli.report import print_headline

    print_headline(head, cfg)


@app.command()
@friendly
def validate(
    bundles: Annotated[list[Path] | None, typer.Argument(help="Bundle folders (default: every "
                                                              "bundle shipped).")] = None,
    out: Annotated[Path, Opt(help="Folder for the running/waiting PNGs.")] = Path(
        "results/validate"),
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object.")] = False,
    sensitivity: Annotated[bool, Opt(help="Also replay with every step 1% faster and 1% "
                                          "slower: how much each statistic moves per +1% of "
                                          "step time (queueing amplifies model error).")] = False,
) -> None:
    """Replay real vLLM 0.19 runs from their engine flags and per-layer tables; print measured
    beside predicted TTFT, TPOT and E2E (mean, p50, p90), throughput and each error."""
    from servoir.validation.bundle import shipped_bundles
    from servoir.validation.replay import compare as compare_bundle
    from servoir.validation.replay import plot_series, predict
    from servoir.validation.replay import sensitivity as step_sensitivity

    names: list[str | Path] = list(bundles) if bundles else list(shipped_bundles())
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for name in names:
        pred = predict(name)
        row = compare_bundle(pred)
        row["plot"] = str(plot_series(pred, out / f"{pred.bundle.name}.png"))
        if sensitivity:
            row["per_step_plus_1pct"] = step_sensitivity(pred)
        result[pred.bundle.name] = row
    if as_json:
        typer.echo(json.dumps({"bundles": result}))
        return
    from servoir.cli.report import print_validation

    print_validation(result)


@app.command()
@friendly
def compare(
    trace: Annotated[str, Opt(help="Trace file or built-in name.")] = "azure_conv",
    rate: Annotated[float | None, Opt(help="Replay at this mean rate (req/s).")] = 22.0,
    num_requests: Annotated[int | None, Opt(help="First N requests of the trace.")] = None,
    model: Annotated[str, Opt(help="Model name.")] = "llama-3-8b",
    gpu: Annotated[str, Opt(help="GPU name.")] = "a100",
    tp: Annotated[int, Opt(help="Tensor-parallel degree.")] = 1,
    instances: Annotated[int, Opt(help="Number of instances.")] = 4,
    routers: Annotated[str, Opt(help="Comma-separated routers.")] = "round_robin,jsq,least_outstanding_tokens,vllm_score,power_of_two",
    schedulers: Annotated[str, Opt(help="Comma-separated schedulers.")] = "fcfs",
    slo_ttft: Annotated[float, Opt(help="TTFT SLO (s).")] = 1.0,
    slo_tpot: Annotated[float, Opt(help="TPOT SLO (s).")] = 0.1,
    set_: Annotated[list[str] | None, Opt("--set", help="key=value override (repeatable).")] = None,
    seed: Annotated[int, Opt(help="Root seed.")] = 0,
    out: Annotated[Path, Opt(help="Output folder.")] = Path("results/compare"),
    family: Annotated[str | None, Opt(help="A family's own experiment instead: "
                                           "one of servoir.experiments.FAMILIES.")] = None,
    quick: Annotated[bool, Opt(help="--family: a smaller sweep (smoke run).")] = False,
    as_json: Annotated[bool, Opt("--json", help="Print the table as JSON.")] = False,
) -> None:
    """The main job: one scenario under several policy combinations, one table and one plot.

    With no arguments: the Azure LLM 2023 conversation trace (19,366 real requests, replayed at
    22 req/s, about 70% of the cluster's saturated throughput) on 4 Llama-3-8B A100 instances.
    With ``--family NAME``: that family's experiment (its module's ``run_family``), which writes
    its table and plots into ``--out``.
    """
    if family is not None:
        from servoir.cli.report import print_rows
        from servoir.experiments import run_family

        result = run_family(family, out=out, seed=seed, quick=quick,
                            echo=None if as_json else typer.echo)
        if as_json:
            typer.echo(json.dumps(result["rows"]))
            return
        print_rows(result)
        return
    from servoir.experiments.compare import compare_policies

    table = compare_policies(
        trace=trace, rate=rate, num_requests=num_requests, model=model, gpu=gpu, tp=tp,
        instances=instances, routers=_split(routers), schedulers=_split(schedulers),
        slo_ttft=slo_ttft, slo_tpot=slo_tpot, overrides=set_ or [], seed=seed, out=out,
        progress=not as_json)
    if as_json:
        typer.echo(json.dumps(table["rows"]))
        return
    from servoir.cli.report import print_compare

    print_compare(table)


@app.command("plan")
@friendly
def plan(
    rate: Annotated[float, Opt(help="Target arrival rate (req/s).")],
    trace: Annotated[str | None, Opt(help="Trace file or built-in name (its lengths and "
                                          "arrival pattern, replayed at --rate).")] = None,
    prompt_mean: Annotated[float | None, Opt(help="Without a trace: mean prompt tokens "
                                                  "(lognormal).")] = None,
    output_mean: Annotated[float | None, Opt(help="Without a trace: mean output tokens.")] = None,
    prompt_sigma: Annotated[float | None, Opt(help="Log-space sigma of prompts (1).")] = None,
    output_sigma: Annotated[float | None, Opt(help="Log-space sigma of outputs (1).")] = None,
    num_requests: Annotated[int | None, Opt(help="Requests (first N of the trace; "
                                                 "generated: 2000).")] = None,
    model: Annotated[str, Opt(help="Model name.")] = "llama-3-8b",
    gpu: Annotated[str, Opt(help="GPU name.")] = "a100",
    tp: Annotated[int | None, Opt(help="Tensor-parallel degree.")] = None,
    slo_ttft_p99: Annotated[float | None, Opt(help="p99 TTFT target (s).")] = None,
    slo_tpot_p99: Annotated[float | None, Opt(help="p99 TPOT target (s).")] = None,
    disagg: Annotated[bool, Opt("--disagg", help="Also size a prefill/decode split.")] = False,
    link_gb_per_s: Annotated[float | None, Opt(help="--disagg: KV link per prefill instance "
                                                    "(GB/s, default 25).")] = None,
    verify: Annotated[bool, Opt("--verify", help="Confirm with the simulator (exact).")] = False,
    set_: Annotated[list[str] | None, Opt("--set", help="key=value override (repeatable).")] = None,
    seed: Annotated[int | None, Opt(help="Root seed.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """How many instances for this traffic: service rate, binding constraint and its dual,
    stability margin, SLO-aware count, and with --verify the simulator's confirmation."""
    from servoir.experiments.planning import plan as plan_cluster
    from servoir.experiments.planning import plan_config

    cfg = plan_config(trace=trace, rate=rate, model=model, gpu=gpu, tp=tp,
                      prompt_mean=prompt_mean, output_mean=output_mean,
                      prompt_sigma=prompt_sigma, output_sigma=output_sigma,
                      num_requests=num_requests, seed=seed, overrides=set_)
    out = plan_cluster(cfg, slo_ttft=slo_ttft_p99, slo_tpot=slo_tpot_p99, disagg=disagg,
                       verify=verify, link_gbps=link_gb_per_s)
    if as_json:
        typer.echo(json.dumps(out))
        return
    from servoir.experiments.planning import describe

    typer.echo(describe(out))


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


@app.command()
@friendly
def policies() -> None:
    """List registered policies with their declared guarantees."""
    from servoir import registry
    from servoir.cli.report import print_policies

    rows = []
    for fam in ("routing", "scheduling"):
        for name in registry.names(fam):
            info = registry.get(fam, name).info
            rows.append((fam, name, ", ".join(info.guarantees), info.reference))
    print_policies(rows)


@app.command("bound")
@friendly
def bound(
    trace: Annotated[str, Opt(help="Trace file or built-in name (arrival_s floored to steps).")],
    memory: Annotated[int, Opt(help="KV memory M in tokens (unit-time model).")],
    policies: Annotated[str, Opt(help="Comma-separated schedulers to simulate.")] = "fcfs,mc_sf",
    predictor: Annotated[str | None, Opt(help="Predictor the policies read (default: oracle).")] = None,
    time_limit: Annotated[float, Opt(help="HiGHS time limit (s).")] = 60.0,
    seed: Annotated[int, Opt(help="Root seed (predictor noise).")] = 0,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Hindsight lower bound on total latency (time-indexed IP, HiGHS) in the unit-time model of
    Jaillet et al., next to each policy's total latency in the same model."""
    from servoir.analysis.bounds import compare_to_bound
    from servoir.sim.unit_time import UnitInstance
    from servoir.workload.readers import read_trace

    inst = UnitInstance.from_workload(read_trace(trace, seed=seed), memory)
    if not time_limit > 0:
        raise InputError(f"--time-limit must be > 0 seconds, got {time_limit}",
                         field="time_limit")
    rep = compare_to_bound(inst, _split(policies), predictor=predictor, time_limit=time_limit,
                           seed=seed)
    keys = ("lower_bound_total_latency", "optimal", "solver_gap", "policies")
    if as_json:
        typer.echo(json.dumps({k: rep[k] for k in keys}))
        return
    lb = rep["lower_bound_total_latency"]
    typer.echo(f"lower bound {lb:g} ({rep['method']}, optimal={rep['optimal']}, "
               f"gap {rep['solver_gap']:.4f}, {rep['solve_s']:.2f} s)")
    for name, total in rep["policies"].items():
        typer.echo(f"  {name:12s} {total:10d}  x{total / lb:.4f}" if lb > 0 else f"  {name} {total}")


@hardware_app.command("list")
@friendly
def hardware_list(as_json: Annotated[bool, Opt("--json")] = False) -> None:
    """Models, GPUs and the (model, GPU, TP) pairs with shipped fitted coefficients."""
    from servoir import hardware as hw
    from servoir.cli.report import print_hardware

    data = {
        "models": {m: _spec_row(hw.get_model(m)) for m in hw.list_models()},
        "gpus": {g: _spec_row(hw.get_gpu(g)) for g in hw.list_gpus()},
        "fitted": [list(p) for p in hw.list_fitted_pairs()],
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    print_hardware(data)


def _spec_row(spec: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(spec).items() if isinstance(v, (int, float, str))}


@hardware_app.command("fit")
@friendly
def hardware_fit(
    csv: Annotated[Path | None, Opt(help="Fit your own whole-iteration profile CSV.")] = None,
    model: Annotated[str | None, Opt(help="Model of the CSV (for its name).")] = None,
    gpu: Annotated[str | None, Opt(help="GPU of the CSV.")] = None,
    tp: Annotated[int, Opt(help="TP degree of the CSV.")] = 1,
    write: Annotated[Path | None, Opt(help="Write the coefficients JSON here.")] = None,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Refit latency models from the shipped profiles (or your CSV) and print their errors."""
    from servoir.cli.report import print_fits
    from servoir.hardware import fit as fitmod

    if csv is not None:
        reports = [fitmod.fit_profile_csv(csv, model=model, gpu=gpu, tp=tp)]
    else:
        reports = fitmod.fit_all()
    rows = [_fit_row(r) for r in reports]
    if write is not None:
        fitmod.write_coefficients(reports, write)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    print_fits(rows)


def _fit_row(report: Any) -> dict[str, Any]:
    lm = report.latency
    row: dict[str, Any] = {"model": lm.model, "gpu": lm.gpu, "tp": lm.tp, "source": lm.source,
                           "overhead_ms": lm.overhead_s * 1e3,
                           "kv_ns_per_token": lm.kv_coef_s * 1e9,
                           "prefill_attn_ps_per_pair": lm.prefill_attn_coef_s * 1e12,
                           "t(1 tok)_ms": lm.token_time(1) * 1e3,
                           "t(2048 tok)_ms": lm.token_time(2048) * 1e3}
    for check, err in report.errors.items():
        row[f"{check}_err"] = err.get("mean_abs_rel_err", float("nan"))
    return row


@bench_app.command("sim")
@friendly
def bench_sim(
    quick: Annotated[bool, Opt(help="Smaller workloads (for a smoke run).")] = False,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Simulated requests per wall second on the fixed benchmark workloads."""
    from servoir.experiments.bench import run_sim_bench

    rows = run_sim_bench(quick=quick, echo=None if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(rows))


@bench_app.command("moe")
@friendly
def bench_moe(
    quick: Annotated[bool, Opt(help="Fewer batches (for a smoke run).")] = False,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """LPLB LP solvers: solve time, optimality gap vs HiGHS, max/mean GPU load."""
    from servoir.moe.bench import run_moe_bench

    row = run_moe_bench(quick=quick, echo=None if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(row))


@bench_app.command("vidur")
@friendly
def bench_vidur(
    workloads: Annotated[str, Opt(help="Comma-separated: w1k_qps1, w1k_qps2, w1k_qps4, "
                                       "w10k_qps1, w10k_qps2, or files.")] = "w10k_qps1,w1k_qps1,w1k_qps2,w1k_qps4",
    vidur_python: Annotated[str | None, Opt(help="Python with vidur==0.0.26 installed "
                                                 "(default: $VIDUR_PYTHON or the research "
                                                 "recipe's venv).")] = None,
    vidur_cache: Annotated[str | None, Opt(help="Vidur's trained-predictor cache "
                                                "(default: $VIDUR_CACHE).")] = None,
    require_vidur: Annotated[bool, Opt(help="Fail instead of using the published numbers "
                                            "when Vidur is not installed.")] = False,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Vidur vs servoir (engine.preset=vidur_v0), each as a whole process, on the same files:
    wall times, their ratio and the error of each median."""
    from servoir.cli.report import print_vidur
    from servoir.experiments.vidur import compare, find_vidur

    vidur = find_vidur(vidur_python, vidur_cache)
    if vidur is None and require_vidur:
        raise InputError("Vidur is not installed: `python -m venv V && V/bin/pip install "
                         "vidur==0.0.26`, then pass --vidur-python V/bin/python")
    rows = compare(_split(workloads), vidur)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    print_vidur(rows)


@bench_app.command("routing")
@friendly
def bench_routing(
    quick: Annotated[bool, Opt(help="Fewer decisions (for a smoke run).")] = False,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Routing decision time: isolated, amortised in a DP-attention run, BF-IO per step."""
    from servoir.experiments.bench_routing import run_routing_bench

    out = run_routing_bench(quick=quick, echo=None if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(out))


def main() -> None:
    """Console entry point: run the app, then leave without tearing the interpreter down.

    Module teardown and the final garbage collection cost tens of milliseconds, a tenth of a
    short ``servoir simulate``, and have nothing left to do: output is flushed and exit
    handlers (pools, temporary files) run first, as on a normal exit.
    """
    import atexit
    import os

    try:
        app()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # under a profiler or debugger: let it see a normal exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # the reader went away (`servoir ... | head`): nothing left to say
            code = code or 1
    os._exit(0 if code is None else int(code))


if __name__ == "__main__":  # pragma: no cover
    main()

"""Terminal tables for the CLI (rich). Formatting only; no logic."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# At least 120 columns, so tables stay readable when piped or in a narrow terminal.
console = Console(width=max(Console().width, 120))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:,.1f}"


def print_headline(head: dict[str, Any], cfg: Any) -> None:
    """One run's metrics."""
    hw = cfg.hardware
    console.print(
        f"[bold]{head['num_requests']:,}[/] requests, {cfg.cluster.instances} x {hw.model} on "
        f"{hw.gpu} (tp={hw.tp}, pp={hw.pp}), router {cfg.cluster.router.name}, scheduler "
        f"{cfg.instance.scheduler.name}")
    t = Table("metric (ms)", "mean", "p50", "p90", "p99")
    for name, stats in head["metrics"].items():
        t.add_row(name.removesuffix("_s"), *(_ms(stats[k]) for k in ("mean", "p50", "p90", "p99")))
    console.print(t)
    extra = (f"finished {head['num_finished']:,}  rejected {head['num_rejected']:,}  "
             f"preemptions {head['num_preemptions']:,}  throughput "
             f"{head['throughput_rps']:.2f} req/s, {head['output_tokens_per_s']:,.0f} tok/s")
    if "slo_attainment" in head:
        extra += (f"  SLO attainment {head['slo_attainment']:.1%}, goodput "
                  f"{head['goodput_rps']:.2f} req/s")
    console.print(extra)
    if "barrier_idle_frac" in head:  # DP-attention group (issue #5)
        console.print(
            f"barrier idle {head['barrier_idle_frac']:.1%} of rank-time, imbalance "
            f"{head['mean_imbalance_tokens']:,.0f} KV tokens; before the last arrival "
            f"{head['barrier_idle_frac_before_last_arrival']:.1%}, "
            f"{head['mean_imbalance_tokens_before_last_arrival']:,.0f}")
    console.print(f"[dim]{head['sim_events']:,} events in {head['wall_s']:.2f} s wall[/]")


def print_compare(table: dict[str, Any]) -> None:
    """The comparison table of ``servoir compare`` (latencies in seconds)."""
    console.print(f"[bold]{table['title']}[/]")
    t = Table("router + scheduler", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E mean",
              "SLO att.", "goodput/s", "preempt", title="latencies in seconds")
    best = max(r["slo_attainment"] for r in table["rows"])
    for r in table["rows"]:
        att = f"{r['slo_attainment']:.1%}"
        if r["slo_attainment"] == best:
            att = f"[bold green]{att}[/]"
        t.add_row(f"{r['router']} + {r['scheduler']}", _s(r["ttft_p50_s"]), _s(r["ttft_p99_s"]),
                  _s(r["tpot_p50_s"]), _s(r["tpot_p99_s"]), _s(r["e2e_mean_s"]), att,
                  f"{r['goodput_rps']:.2f}", f"{r['num_preemptions']:,}")
    console.print(t)
    console.print(f"baseline (what engines ship): {table['baseline']}")
    for p in table["files"]:
        console.print(f"wrote {p}")


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def print_policies(rows: list[tuple[str, str, str, str]]) -> None:
    """Registered policies."""
    t = Table("family", "name", "guarantees", "reference")
    for r in rows:
        t.add_row(*r)
    console.print(t)


def print_hardware(data: dict[str, Any]) -> None:
    """Models, GPUs and fitted pairs."""
    t = Table("model", "layers", "hidden", "heads", "kv heads", "params (B)", "KV bytes/token")
    for name, m in data["models"].items():
        t.add_row(name, str(m.get("num_layers")), str(m.get("hidden_size")),
                  str(m.get("num_heads")), str(m.get("num_kv_heads")),
                  f"{m.get('num_params', 0) / 1e9:.1f}", "")
    console.print(t)
    g = Table("gpu", "memory (GB)", "HBM (TB/s)", "bf16 (TFLOP/s)")
    for name, s in data["gpus"].items():
        g.add_row(name, f"{s.get('memory_bytes', 0) / 1e9:.0f}",
                  f"{s.get('hbm_bandwidth_bytes_per_s', 0) / 1e12:.2f}",
                  f"{s.get('bf16_flops', 0) / 1e12:.0f}")
    console.print(g)
    console.print(f"{len(data['fitted'])} fitted (model, gpu, tp) pairs: "
                  + ", ".join(f"{m}/{g}/tp{tp}" for m, g, tp in data["fitted"]))


def print_fits(rows: list[dict[str, Any]]) -> None:
    """Fit reports of ``servoir hardware fit``: coefficients and mean relative errors."""
    if not rows:
        console.print("no fits")
        return
    t = Table("pair", "source", "overhead ms", "t(1 tok) ms", "t(2048 tok) ms", "KV ns/tok",
              "mean |rel err| vs profile points")
    for r in rows:
        errs = "  ".join(f"{k.removesuffix('_err')} {v:.1%}" for k, v in r.items()
                         if k.endswith("_err") and v == v)
        t.add_row(f"{r['model']}/{r['gpu']}/tp{r['tp']}", r["source"].removeprefix("fit:"),
                  f"{r['overhead_ms']:.2f}", f"{r['t(1 tok)_ms']:.2f}",
                  f"{r['t(2048 tok)_ms']:.1f}", f"{r['kv_ns_per_token']:.2f}", errs)
    console.print(t)


def print_vidur(rows: list[dict[str, Any]]) -> None:
    """Rows of ``servoir bench vidur``."""
    t = Table("workload", "reference", "Vidur s", "servoir s", "speedup", "TTFT p50 err",
              "TPOT p50 err", "E2E p50 err")
    for r in rows:
        t.add_row(r["workload"], r["reference"], f"{r['vidur_wall_s']:.1f}",
                  f"{r['servoir_wall_s']:.2f}", f"{r['speedup']:.0f}x",
                  f"{r['ttft_s_p50_rel_err']:+.1%}", f"{r['tpot_s_p50_rel_err']:+.1%}",
                  f"{r['e2e_s_p50_rel_err']:+.1%}")
    console.print(t)


def print_rows(result: dict[str, Any]) -> None:
    """A family experiment's table (any columns) and the files it wrote."""
    console.print(f"[bold]{result['title']}[/]")
    rows = result["rows"]
    if rows:
        t = Table(*rows[0].keys())
        for r in rows:
            t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
        console.print(t)
    for line in result.get("notes", []):
        console.print(line)
    for p in result["files"]:
        console.print(f"wrote {p}")


def print_validation(result: dict[str, Any]) -> None:
    """``servoir validate``: measured beside predicted, errors, LLMServingSim's errors."""
    for name, r in result.items():
        sens = r.get("per_step_plus_1pct")
        extra = ("per +1% step time",) if sens else ()
        t = Table("metric", "stat", "measured", "predicted", "error", "LLMServingSim error",
                  *extra, title=f"{name}  (replay {r['replay_wall_s']:.2f} s, KV blocks "
                                f"{r['kv_blocks']:,}, preemptions {r['num_preemptions']:,})")
        for k in ("ttft_s", "tpot_s", "e2e_s"):
            for stat in ("mean", "p50", "p90"):
                ref = r["llmservingsim_error"].get(f"{k}.{stat}")
                t.add_row(k.removesuffix("_s"), stat, f"{r[k]['measured'][stat]:.4g} s",
                          f"{r[k]['predicted'][stat]:.4g} s", f"{r[k]['error'][stat]:+.1%}",
                          "-" if ref is None else f"{ref:+.1%}",
                          *((f"{sens[k][stat]:+.1%}",) if sens else ()))
        th = r["throughput_rps"]
        t.add_row("throughput", "req/s", f"{th['measured']:.3g}", f"{th['predicted']:.3g}",
                  f"{th['error']:+.1%}", "-", *(("-",) if sens else ()))
        console.print(t)
        console.print(f"running/waiting over time: {r['plot']}")

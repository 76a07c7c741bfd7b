"""Prefill-decode disaggregation for ``servoir plan --disagg``, and the PD crossover experiment.

:func:`plan_disaggregated` sizes the prefill and decode pools with the fluid LPs of
:mod:`servoir.analysis.pd`; :func:`verify_disaggregated` (``--disagg --verify``) confirms the
split with the simulator's PD mode (:mod:`servoir.sim.pd`), searching the smallest split that is
stable and SLO-compliant (:func:`verify_split`). :func:`pd_crossover` reproduces the published
regimes (disaggregation wins when prefill-heavy and TPOT-strict, co-location under tight TTFT
with relaxed TPOT) in the fluid model and in simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from servoir.config import SimConfig, load_config
from servoir.errors import InputError
from servoir.experiments.planning import (
    MAX_INSTANCES,
    STABLE_SLOPE_FRAC,
    _accepted,
    capacity_of,
)
from servoir.experiments.run import run
from servoir.workload import Workload


def pool_rates_of(cfg: SimConfig, w: Workload, slo_ttft: float | None = None,
                  slo_tpot: float | None = None, link_gb_per_s: float | None = None,
                  capacity: tuple[Any, Any, Any] | None = None) -> Any:
    """:func:`servoir.analysis.pd.pool_rates` for ``cfg``'s engine on the lengths of ``w``
    (``capacity``: :func:`capacity_of` of the same, when the caller has it already)."""
    from servoir.analysis.pd import pool_rates

    _, lat, lim = capacity if capacity is not None else capacity_of(cfg, w)
    link = cfg.cluster.link_gb_per_s if link_gb_per_s is None else link_gb_per_s
    return pool_rates(w.num_prompt_tokens, w.num_output_tokens, lat, lim,
                      lim.kv_bytes_per_token_per_gpu * cfg.hardware.tp, link * 1e9,
                      slo_ttft, slo_tpot)


def plan_disaggregated(cfg: SimConfig, w: Workload, colocated: int, *,
                       slo_ttft: float | None = None, slo_tpot: float | None = None,
                       link_gbps: float | None = None) -> dict[str, Any]:
    """P:D split for ``w``: the fluid LPs of :mod:`servoir.analysis.pd` give the stable split
    for the accepted rate (``lp_prefill_instances``, ``lp_decode_instances``), from which
    :func:`servoir.analysis.pd.split_for_slos` grows the pools until the predicted p99 TTFT
    and TPOT on the trace meet the SLOs (``prefill_instances``, ``decode_instances``)."""
    from servoir.analysis.pd import (
        colocated_lp,
        disaggregated_lp,
        split_for_rate,
        split_for_slos,
    )

    cap = capacity_of(cfg, w)  # one instance's model, shared by the steps below
    _, lat, lim = cap
    rates = pool_rates_of(cfg, w, slo_ttft, slo_tpot, link_gbps, cap)
    ok = _accepted(w, lim.max_model_len)
    lam = (w.mean_rate if len(w) > 1 else float(cfg.workload.rate or 1.0)) * float(ok.mean())
    split = split_for_rate(rates, lam)
    out: dict[str, Any] = {"pd_rates_rps": {
        "colocated": rates.colocated_rps, "prefill": rates.prefill_rps, "link": rates.link_rps,
        "decode": rates.decode_rps}, "kv_transfer_s": rates.transfer_s,
        "disaggregation_wins": rates.disaggregation_wins}
    if split is None:
        out.update({"prefill_instances": None, "decode_instances": None})
        return out
    out.update({"lp_prefill_instances": split[0], "lp_decode_instances": split[1]})
    # The p99s of the split on the trace's own arrivals (servoir.analysis.pd.pd_latencies).
    link = cfg.cluster.link_gb_per_s if link_gbps is None else link_gbps
    p99_split, pred = split_for_slos(
        w.arrival_at, w.num_prompt_tokens, w.num_output_tokens, lat, lim,
        lim.kv_bytes_per_token_per_gpu * cfg.hardware.tp, link * 1e9, split, slo_ttft,
        slo_tpot, MAX_INSTANCES)
    if p99_split is not None:
        split = p99_split
    n = split[0] + split[1]
    out.update({"prefill_instances": split[0], "decode_instances": split[1],
                "disaggregated_instances": n, "colocated_instances": colocated,
                "pd_slo_feasible": p99_split is not None, "predicted_pd_p99": pred,
                "lp_disaggregated": disaggregated_lp(rates, n),
                "lp_colocated": colocated_lp(rates, n)})
    return out


def _pd_config(cfg: SimConfig, n_p: int, n_d: int, link_gbps: float | None) -> SimConfig:
    upd: dict[str, Any] = {"mode": "pd", "instances": n_p + n_d, "prefill_instances": n_p}
    if link_gbps is not None:
        upd["link_gb_per_s"] = link_gbps
    return cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update=upd)})


def _slope(grid: np.ndarray, series: np.ndarray) -> float:
    x = grid - grid.mean()
    return float((x * (series - series.mean())).sum() / (x * x).sum())


def sim_check_pd(cfg: SimConfig, w: Workload, n_p: int, n_d: int,
                 slo_ttft: float | None = None, slo_tpot: float | None = None,
                 link_gbps: float | None = None, num_points: int = 1000) -> dict[str, Any]:
    """Simulate ``n_p`` prefill and ``n_d`` decode instances (``cluster.mode=pd``) on ``w``.

    Stable as in :func:`sim_check`, counting as waiting every request queued anywhere: in a
    prefill instance's queue, behind its KV transfer (the link is served FIFO) or in a decode
    instance's queue. Each part's slope over the second half of the arrival window is reported
    (``prefill_slope_per_s``, ``transfer_slope_per_s``, ``decode_slope_per_s``) so a failing
    split says which pool to grow; ``queue_slope_per_s`` is their sum.
    """
    res = run(_pd_config(cfg, n_p, n_d, link_gbps), workload=w)
    h = res.headline()
    r = res.requests
    rate = w.mean_rate if len(w) > 1 else float(cfg.workload.rate or 1.0)
    arr = r["arrival_at"]
    t0, t1 = float(arr.min()), float(arr.max())
    grid = np.linspace(t0 + (t1 - t0) / 2, t1, num_points)
    pools = []
    for part in (res.series[:n_p], res.series[n_p:]):
        tot = np.zeros(num_points)
        for s in part:
            if len(s.time_at):
                idx = np.searchsorted(s.time_at, grid, side="right") - 1
                tot += np.where(idx >= 0, s.num_waiting[np.maximum(idx, 0)], 0)
        pools.append(tot)
    # In transfer: first token sampled, KV not yet on a decode instance (NaN: still queued).
    multi = r["num_output_tokens"] > 1
    first = r["first_token_at"][multi]
    first = first[~np.isnan(first)]
    kv = r["kv_arrived_at"][multi]
    kv = np.sort(np.where(np.isnan(kv), np.inf, kv))
    moving = (np.searchsorted(np.sort(first), grid, side="right")
              - np.searchsorted(kv, grid, side="right"))
    sp, sd, sx = _slope(grid, pools[0]), _slope(grid, pools[1]), _slope(grid, moving)
    slope = sp + sd + sx
    ttft, tpot = h["metrics"]["ttft_s"]["p99"], h["metrics"]["tpot_s"]["p99"]
    tol = STABLE_SLOPE_FRAC * rate
    stable = slope < tol
    ttft_ok = slo_ttft is None or (ttft is not None and ttft <= slo_ttft)
    tpot_ok = slo_tpot is None or tpot is None or tpot <= slo_tpot
    ok = stable and ttft_ok and tpot_ok and h["num_unfinished"] == 0
    return {"prefill_instances": n_p, "decode_instances": n_d, "queue_slope_per_s": slope,
            "prefill_slope_per_s": sp, "transfer_slope_per_s": sx, "decode_slope_per_s": sd,
            "ttft_p99_s": ttft, "tpot_p99_s": tpot, "throughput_rps": h["throughput_rps"],
            "stable": bool(stable), "slo_ok": bool(ttft_ok and tpot_ok),
            # Which pool to grow when the split fails.
            "grow_prefill": bool(sp + sx >= tol / 2 or not ttft_ok),
            "grow_decode": bool(sd >= tol / 2 or not tpot_ok),
            "ok": bool(ok)}


def verify_split(check: Callable[[int, int], dict[str, Any]], start: tuple[int, int],
                 max_instances: int = MAX_INSTANCES, exhaustive_below: int = 16,
                 ) -> tuple[tuple[int, int], list[dict[str, Any]]]:
    """Smallest verified P:D split, searched from ``start`` with the simulator.

    1. While ``start`` fails, grow the pool(s) the run flags (``grow_prefill``,
       ``grow_decode``; both when neither is flagged) by a step that doubles each time.
    2. Bisect each pool down with the other fixed (prefill first, then decode): the result
       ``(p, d)`` passes while ``(p - 1, d)`` and ``(p, d - 1)`` fail (both simulated; checks
       are assumed monotone in each pool).
    3. When ``p + d <= exhaustive_below``, every split of ``p + d - 1`` instances is simulated;
       if one passes, the search restarts from it, so the answer has the smallest total.
    """
    runs: dict[tuple[int, int], dict[str, Any]] = {}

    def ok(p: int, d: int) -> bool:
        if (p, d) not in runs:
            runs[(p, d)] = check(p, d)
        return bool(runs[(p, d)]["ok"])

    def smallest(lo: int, hi: int, good: Callable[[int], bool]) -> int:
        # good(hi) holds; smallest k in [lo, hi] with good(k), bisection.
        lo -= 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if good(mid) else (mid, hi)
        return hi

    p, d = max(1, start[0]), max(1, start[1])
    step = 1
    while not ok(p, d):
        r = runs[(p, d)]
        gp, gd = r["grow_prefill"], r["grow_decode"]
        if not (gp or gd):
            gp = gd = True
        p, d = p + step * gp, d + step * gd
        step *= 2
        if p + d > max_instances:
            raise InputError(f"no P:D split up to {max_instances} instances passes")
    while True:
        p = smallest(1, p, lambda k, d=d: ok(k, d))
        d = smallest(1, d, lambda k, p=p: ok(p, k))
        for q, e in ((p - 1, d), (p, d - 1)):
            if q >= 1 and e >= 1:
                ok(q, e)  # the neighbours, simulated for the report
        n = p + d
        better = None
        if n <= exhaustive_below:
            for q in range(1, n - 1):
                if ok(q, n - 1 - q):
                    better = (q, n - 1 - q)
                    break
        if better is None:
            return (p, d), [runs[k] for k in sorted(runs)]
        p, d = better


def verify_disaggregated(cfg: SimConfig, w: Workload, start: tuple[int, int], *,
                         slo_ttft: float | None = None, slo_tpot: float | None = None,
                         link_gbps: float | None = None) -> dict[str, Any]:
    """``--disagg --verify``: the smallest split the PD simulator finds stable and
    SLO-compliant (:func:`verify_split` from the closed-form split ``start``)."""
    (n_p, n_d), runs = verify_split(
        lambda p, d: sim_check_pd(cfg, w, p, d, slo_ttft, slo_tpot, link_gbps), start)
    by = {(r["prefill_instances"], r["decode_instances"]): r for r in runs}
    chosen = by[(n_p, n_d)]
    # The neighbours one instance smaller (simulated by the search; absent when a pool has 1).
    fewer = {name: by[k]["ok"] for name, k in (("one_fewer_prefill", (n_p - 1, n_d)),
                                               ("one_fewer_decode", (n_p, n_d - 1))) if k in by}
    return {"closed_form_prefill_instances": start[0],
            "closed_form_decode_instances": start[1],
            "prefill_instances": n_p, "decode_instances": n_d,
            "disaggregated_instances": n_p + n_d,
            "verify_disagg": {"verified": True, "stable": chosen["stable"],
                              "slo_ok": chosen["slo_ok"], "queue_slope_per_s":
                              chosen["queue_slope_per_s"], "ttft_p99_s": chosen["ttft_p99_s"],
                              "tpot_p99_s": chosen["tpot_p99_s"], "neighbours_ok": fewer,
                              "runs": runs}}


# ---------------------------------------------------------------------- PD crossover

PD_SHAPES: tuple[tuple[int, int], ...] = ((256, 1024), (512, 512), (1024, 256), (2048, 128),
                                          (4096, 64))
PD_TPOT: tuple[float, ...] = (0.015, 0.025, 0.05, 0.1, 0.5)
PD_TTFT: tuple[float, ...] = (0.3, 1.0, 10.0)
PD_LINKS: tuple[float, ...] = (2.0, 25.0, 100.0)


def _fixed_workload(s: int, o: int, rate: float, n: int, seed: int) -> Workload:
    from servoir.rng import stream
    from servoir.workload import generators as gen
    from servoir.workload import lengths as ln

    return gen.poisson(rate, n, ln.Fixed(s, o), stream(seed, "workload.arrivals"))


def pd_fluid_grid(model: str = "llama-3-8b", gpu: str = "a100", tp: int = 1) -> list[dict]:
    """Fluid winner (disaggregated vs co-located SLO-feasible rate per instance) on the grid of
    prefill:decode shapes, TPOT and TTFT targets and link bandwidths."""
    cfg = load_config(None, {"hardware.model": model, "hardware.gpu": gpu, "hardware.tp": tp})
    rows = []
    for s, o in PD_SHAPES:
        w = _fixed_workload(s, o, 1.0, 4, 0)
        for link in PD_LINKS:
            for ttft in PD_TTFT:
                for tpot in PD_TPOT:
                    r = pool_rates_of(cfg, w, ttft, tpot, link)
                    rows.append({"prompt": s, "output": o, "link_gb_per_s": link,
                                 "slo_ttft_s": ttft, "slo_tpot_s": tpot,
                                 "colocated_rps": r.colocated_rps,
                                 "disaggregated_rps": r.disaggregated_per_instance_rps,
                                 "disaggregation_wins": r.disaggregation_wins})
    return rows


def _sim_meets(cfg: SimConfig, s: int, o: int, rate: float, ttft: float, tpot: float,
               n: int) -> bool:
    res = run(cfg, workload=_fixed_workload(s, o, rate, n, cfg.seed))
    h = res.headline()
    m = h["metrics"]
    return bool(res.queue_slope_per_s() < STABLE_SLOPE_FRAC * rate and h["num_unfinished"] == 0
                and m["ttft_s"]["mean"] is not None and m["ttft_s"]["mean"] <= ttft
                and (m["tpot_s"]["mean"] is None or m["tpot_s"]["mean"] <= tpot))


def _max_rate(meets: Callable[[float], bool], hi: float) -> float:
    lo = 0.0
    while meets(hi) and hi < 1e4:
        lo, hi = hi, 2 * hi
    for _ in range(7):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def pd_sim_point(s: int, o: int, ttft: float, tpot: float, link: float = 25.0,
                 instances: int = 4, model: str = "llama-3-8b", gpu: str = "a100",
                 num_requests: int = 1500) -> dict[str, Any]:
    """Simulated SLO-feasible maximum rate (mean TTFT and TPOT within the targets, stable) of
    ``instances`` co-located versus the best P:D split in PD mode."""
    base = load_config(None, {"hardware.model": model, "hardware.gpu": gpu,
                              "cluster.instances": instances,
                              "cluster.link_gb_per_s": link})
    fluid = pool_rates_of(base, _fixed_workload(s, o, 1.0, 4, 0), ttft, tpot, link)
    guess = max(0.05, instances * max(fluid.colocated_rps, fluid.disaggregated_per_instance_rps)
                / 2)
    colo = _max_rate(lambda r: _sim_meets(base, s, o, r, ttft, tpot, num_requests), guess)
    best, best_split = 0.0, 0
    for n_p in range(1, instances):
        cfg = base.model_copy(update={"cluster": base.cluster.model_copy(
            update={"mode": "pd", "prefill_instances": n_p})})
        r = _max_rate(lambda r, c=cfg: _sim_meets(c, s, o, r, ttft, tpot, num_requests), guess)
        if r > best:
            best, best_split = r, n_p
    return {"prompt": s, "output": o, "slo_ttft_s": ttft, "slo_tpot_s": tpot,
            "link_gb_per_s": link, "instances": instances,
            "sim_colocated_rps": colo, "sim_disaggregated_rps": best,
            "sim_prefill_instances": best_split,
            "fluid_colocated_rps": instances * fluid.colocated_rps,
            "fluid_disaggregated_rps": instances * fluid.disaggregated_per_instance_rps,
            "sim_disaggregation_wins": best > colo,
            "fluid_disaggregation_wins": fluid.disaggregation_wins}


PD_SIM_POINTS: tuple[tuple[int, int, float, float], ...] = (
    (2048, 128, 10.0, 0.025),  # prefill-heavy, strict TPOT, relaxed TTFT: disaggregation
    (4096, 64, 10.0, 0.025),
    (512, 512, 0.3, 0.5),  # tight TTFT, relaxed TPOT: co-location
    (1024, 256, 0.3, 0.5),
)


def pd_crossover(out: Any = None, points: tuple[tuple[int, int, float, float], ...] =
                 PD_SIM_POINTS) -> dict[str, Any]:
    """Fluid grid, simulator checks at ``points``, and the figure ``out/pd_crossover.png``."""
    grid = pd_fluid_grid()
    sims = [pd_sim_point(*p) for p in points]
    if out is not None:
        _plot_crossover(grid, sims, out)
    return {"grid": grid, "sim": sims}


def _plot_crossover(grid: list[dict], sims: list[dict], out: Any) -> None:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(out).mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(PD_TTFT), figsize=(4.2 * len(PD_TTFT), 3.6), squeeze=False)
    xs = [f"{s}:{o}" for s, o in PD_SHAPES]
    for ax, ttft in zip(axes[0], PD_TTFT, strict=True):
        z = np.full((len(PD_TPOT), len(PD_SHAPES)), np.nan)
        for r in grid:
            if r["slo_ttft_s"] == ttft and r["link_gb_per_s"] == 25.0:
                i, j = PD_TPOT.index(r["slo_tpot_s"]), PD_SHAPES.index((r["prompt"], r["output"]))
                c, d = r["colocated_rps"], r["disaggregated_rps"]
                z[i, j] = np.log2(max(d, 1e-6) / max(c, 1e-6)) if max(c, d) > 0 else np.nan
        im = ax.imshow(np.clip(z, -3, 3), cmap="RdBu", vmin=-3, vmax=3, origin="lower",
                       aspect="auto")
        for sp in sims:
            if sp["slo_ttft_s"] == ttft and (sp["prompt"], sp["output"]) in PD_SHAPES:
                ax.plot(PD_SHAPES.index((sp["prompt"], sp["output"])),
                        PD_TPOT.index(sp["slo_tpot_s"]) if sp["slo_tpot_s"] in PD_TPOT else
                        len(PD_TPOT) - 1, marker="o" if sp["sim_disaggregation_wins"] else "x",
                        color="k", ms=9, mfc="none")
        ax.set_xticks(range(len(xs)), xs, fontsize=7, rotation=30)
        ax.set_yticks(range(len(PD_TPOT)), [f"{t:g}" for t in PD_TPOT])
        ax.set_xlabel("prompt:output tokens")
        ax.set_title(f"TTFT SLO {ttft:g} s, link 25 GB/s", fontsize=9)
    axes[0][0].set_ylabel("TPOT SLO (s)")
    fig.colorbar(im, ax=axes[0].tolist(), label="log2(disaggregated / co-located)")
    fig.suptitle("blue: disaggregation supports more SLO-feasible load (fluid); "
                 "o / x: simulator says PD / co-located wins", fontsize=8)
    fig.savefig(Path(out) / "pd_crossover.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

"""``RunResult``: the per-request table, per-instance time series, and run metadata.

Metric definitions follow vLLM's serving benchmark (``benchmarks/benchmark_serving.py``):

- TTFT = first token time - arrival time (includes queueing);
- TPOT = (finish - first token) / (output tokens - 1), undefined for one-token outputs, which are
  left out of TPOT statistics (never NaN in a summary);
- E2E = finish - arrival; queueing delay = first scheduled - arrival;
- throughput = finished requests / (last finish - first arrival); output tokens/s likewise;
- with SLOs, a request attains them when it finished and meets every target set; goodput is
  attaining requests per second over the same span.

Column names carry units: ``*_at`` timestamps and ``*_s`` durations in seconds, ``num_*`` counts.
Nothing here writes files on its own; the CLI does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
STATUS = np.array(["unfinished", "unfinished", "unfinished", "finished", "rejected"])


@dataclass
class InstanceSeries:
    """Level samples of one instance, taken at every event that touched it."""

    time_at: np.ndarray
    num_running: np.ndarray
    num_waiting: np.ndarray
    kv_used_blocks: np.ndarray
    kv_total_blocks: int


@dataclass
class RunResult:
    """Results of one run. ``requests`` is struct-of-arrays, one row per request."""

    requests: dict[str, np.ndarray]
    series: list[InstanceSeries]
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ masks
    @property
    def finished(self) -> np.ndarray:
        """Boolean mask of finished requests."""
        return self.requests["status"] == "finished"

    def metric(self, name: str) -> np.ndarray:
        """Values of a per-request metric over the requests where it is defined."""
        col = self.requests[name]
        mask = self.finished & ~np.isnan(col)
        return col[mask]

    # ------------------------------------------------------------------ summaries
    def span_s(self) -> float:
        """From the first arrival to the last finish."""
        fin = self.requests["finish_at"][self.finished]
        if not len(fin):
            return 0.0
        return float(fin.max() - self.requests["arrival_at"].min())

    def headline(self) -> dict[str, Any]:
        """The JSON object ``servoir simulate --json`` prints (no wall time)."""
        r = self.requests
        fin = self.finished
        span = self.span_s()
        out_tokens = float(r["num_output_tokens"][fin].sum())
        metrics = {}
        for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
            v = self.metric(name)
            metrics[name] = _stats(v)
        head: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "num_requests": int(len(r["status"])),
            "num_finished": int(fin.sum()),
            "num_rejected": int((r["status"] == "rejected").sum()),
            "num_unfinished": int((r["status"] == "unfinished").sum()),
            "num_preemptions": int(r["num_preemptions"].sum()),
            "throughput_rps": float(fin.sum() / span) if span > 0 else 0.0,
            "output_tokens_per_s": out_tokens / span if span > 0 else 0.0,
            "metrics": metrics,
        }
        slo = self.meta.get("slo") or {}
        if slo.get("ttft_s") is not None or slo.get("tpot_s") is not None:
            ok = self.slo_mask()
            n_req = len(r["status"]) - head["num_rejected"]
            head["slo_attainment"] = float(ok.sum() / n_req) if n_req else 0.0
            head["goodput_rps"] = float(ok.sum() / span) if span > 0 else 0.0
        for key in ("mean_imbalance_tokens", "barrier_idle_frac",  # DP-attention runs
                    "mean_imbalance_tokens_before_last_arrival",
                    "barrier_idle_frac_before_last_arrival"):
            if key in self.meta:
                head[key] = float(self.meta[key])
        head["queue_slope_per_s"] = self.queue_slope_per_s()
        head["sim_events"] = int(self.meta.get("sim_events", 0))
        head["config_digest"] = self.meta.get("config_digest", "")
        return head

    def queue_slope_per_s(self, num_points: int = 1000) -> float:
        """Least-squares slope (requests per second) of the waiting queue, second half of the run.

        The number of waiting requests summed over instances (a step function from
        ``series``) is sampled on ``num_points`` uniform times over the second half of the
        arrival window ``[first + (last - first) / 2, last]`` (first and last arrival), and a
        straight line is fitted by least squares. The window ends at the last arrival because
        every queue drains once arrivals stop, stable or not. A run is *stable* (issue #8) when
        this slope is below 1% of the arrival rate. ``0.0`` without series or arrivals.
        """
        arr = self.requests["arrival_at"]
        if len(arr) < 2 or not self.series:
            return 0.0
        t0, t1 = float(arr.min()), float(arr.max())
        if not t1 > t0:
            return 0.0
        grid = np.linspace(t0 + (t1 - t0) / 2, t1, num_points)
        total = np.zeros(num_points)
        for s in self.series:
            if not len(s.time_at):
                continue
            idx = np.searchsorted(s.time_at, grid, side="right") - 1
            total += np.where(idx >= 0, s.num_waiting[np.maximum(idx, 0)], 0)
        x = grid - grid.mean()
        return float((x * (total - total.mean())).sum() / (x * x).sum())

    def slo_mask(self) -> np.ndarray:
        """Requests that finished and met every SLO set (a one-token output meets TPOT)."""
        r = self.requests
        slo = self.meta.get("slo") or {}
        ok = self.finished.copy()
        if slo.get("ttft_s") is not None:
            ok &= r["ttft_s"] <= slo["ttft_s"]
        if slo.get("tpot_s") is not None:
            ok &= np.isnan(r["tpot_s"]) | (r["tpot_s"] <= slo["tpot_s"])
        return ok

    def summary(self, confidence: float = 0.95) -> Any:
        """A tidy pandas frame ``metric, stat, value, ci_low, ci_high, n``.

        The CI is a Student-t interval on the mean of per-request values; requests in one run
        are correlated, so use replications (``servoir.analysis.stats.replication_ci``) for
        claims about the mean. Quantiles carry no CI.
        """
        import pandas as pd  # deferred: pandas costs ~0.6 s to import

        from servoir.analysis.stats import summarize

        rows = []
        for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
            s = summarize(self.metric(name), confidence)
            rows.append((name, "mean", s["mean"], s["ci_low"], s["ci_high"], s["n"]))
            for q in ("p50", "p90", "p99"):
                rows.append((name, q, s[q], np.nan, np.nan, s["n"]))
        h = self.headline()
        for key in ("throughput_rps", "output_tokens_per_s", "num_preemptions", "num_rejected"):
            rows.append((key, "value", float(h[key]), np.nan, np.nan, h["num_requests"]))
        for key in ("slo_attainment", "goodput_rps"):
            if key in h:
                rows.append((key, "value", h[key], np.nan, np.nan, h["num_requests"]))
        return pd.DataFrame(rows, columns=["metric", "stat", "value", "ci_low", "ci_high", "n"])

    # ------------------------------------------------------------------ export
    def to_pandas(self) -> Any:
        """The per-request table as a pandas DataFrame."""
        import pandas as pd  # deferred heavy import

        return pd.DataFrame(self.requests)

    def to_arrow(self) -> Any:
        """The per-request table as a pyarrow Table."""
        import pyarrow as pa  # deferred heavy import

        return pa.table(self.requests)

    def series_frame(self) -> Any:
        """All instances' series in one long pandas frame (``instance`` column)."""
        import pandas as pd

        frames = []
        for k, s in enumerate(self.series):
            frames.append(pd.DataFrame({
                "instance": k, "time_at": s.time_at, "num_running": s.num_running,
                "num_waiting": s.num_waiting, "kv_used_blocks": s.kv_used_blocks,
                "kv_used_frac": s.kv_used_blocks / s.kv_total_blocks}))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def write(self, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
        """Write ``requests.<fmt>``, ``series.<fmt>`` and ``summary.json`` into ``out_dir``."""
        import json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame in (("requests", self.to_pandas()), ("series", self.series_frame())):
            p = out / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(p, index=False)
            elif fmt == "csv":
                frame.to_csv(p, index=False)
            else:
                raise ValueError(f"unknown format '{fmt}'; valid: parquet, csv")
            paths.append(p)
        p = out / "summary.json"
        p.write_text(json.dumps({**self.headline(), "meta": _jsonable(self.meta)}, indent=2))
        paths.append(p)
        return paths


def _stats(v: np.ndarray) -> dict[str, float | None]:
    if not len(v):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    q = quantiles(v, (0.5, 0.9, 0.99))
    return {"mean": float(v.mean()), "p50": q[0], "p90": q[1], "p99": q[2]}


def quantiles(v: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.quantile(v, qs)`` (its default linear method, bit for bit: tested) from one sort.

    ``np.quantile`` loads ``numpy.ma`` on its first call, about 5 ms, which is more than the
    whole headline costs on a short run; this is the same arithmetic without it."""
    s = np.sort(np.asarray(v, dtype=np.float64))
    n = len(s)
    if np.isnan(s[-1]):  # NaN sorts last; numpy's quantiles are then NaN
        return [math.nan] * len(qs)
    out = []
    for q in qs:
        h = (n - 1) * q
        lo = int(h)
        hi = min(lo + 1, n - 1)
        t = h - lo
        a, b = float(s[lo]), float(s[hi])
        # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly.
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)

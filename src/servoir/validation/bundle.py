"""Real-engine validation bundles: engine flags, arrival schedule, per-layer profiles.

A bundle is a folder as shipped in ``servoir/data/validation`` (LLMServingSim's vLLM 0.19 runs):
``vllm/meta.json`` (engine flags; resolved KV blocks when recorded), ``workload.csv`` (the arrival
schedule), ``perf/bf16/tp*/`` (per-layer latency tables profiled on the same GPU with the same
vLLM), and the measurements ``vllm/requests.jsonl`` and ``vllm/timeseries.csv``.

Honest fitting: :func:`load_bundle` reads the flags, the schedule and the profiles only. The
measurements are read by :func:`measured_metrics` and :func:`measured_timeseries`, which the
comparison alone calls (a test checks that predictions do not change when they are corrupted).
"""

from __future__ import annotations

import csv
import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servoir.errors import InputError
from servoir.workload import Workload
from servoir.workload.readers import read_trace

BUNDLES_DIR = Path(__file__).resolve().parent.parent / "data" / "validation"
# Hugging Face names in the bundles -> servoir's model and GPU names.
MODELS = {"meta-llama/Llama-3.1-8B": "llama-3.1-8b", "Qwen/Qwen3-32B": "qwen3-32b",
          "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3-30b-a3b"}
GPUS = {"RTX4090": "rtx4090", "RTXPRO6000": "rtxpro6000"}
VLLM_DEFAULT_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class Bundle:
    """One real run's inputs: what a simulator may know before predicting it."""

    name: str
    path: Path
    model: str
    gpu: str
    tp: int
    dp: int
    expert_parallel: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    gpu_memory_utilization: float
    num_gpu_blocks: int | None  # resolved by vLLM and recorded in meta.json (an engine flag)
    workload: Workload

    def perf_dir(self, tp: int | None = None) -> Path:
        """Folder of the per-layer tables for a tensor-parallel degree (default: the run's)."""
        return self.path / "perf" / "bf16" / f"tp{tp or self.tp}"


def shipped_bundles() -> list[str]:
    """Names of the bundles shipped with the package."""
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "vllm" / "meta.json").is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A bundle folder from a shipped name or a path."""
    p = Path(name_or_path)
    if (p / "vllm" / "meta.json").is_file():
        return p
    q = BUNDLES_DIR / str(name_or_path)
    if (q / "vllm" / "meta.json").is_file():
        return q
    raise InputError(f"not a validation bundle (no vllm/meta.json); shipped: "
                     f"{', '.join(shipped_bundles())}", file=str(name_or_path))


def load_bundle(name_or_path: str | Path) -> Bundle:
    """Engine flags, hardware, and arrival schedule of a bundle (no measurements)."""
    path = resolve(name_or_path)
    meta_path = path / "vllm" / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        kw = meta["engine_kwargs"]
        hf_model = kw["model"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot read engine flags: {e}", file=str(meta_path)) from e
    if hf_model not in MODELS:
        raise InputError(f"unknown model '{hf_model}'; known: {', '.join(MODELS)}",
                         file=str(meta_path), field="engine_kwargs.model")
    hw, hw_source = _hardware(path)
    if hw not in GPUS:
        raise InputError(f"unknown hardware '{hw}'; known: {', '.join(GPUS)}", file=hw_source)
    kv = meta.get("kv_cache") or {}

    def num(d: dict[str, Any], key: str, default: float, kind: type = int) -> Any:
        try:
            return kind(d.get(key) or default)
        except (TypeError, ValueError):
            raise InputError(f"not a number: {d.get(key)!r}", file=str(meta_path),
                             field=key) from None

    # The schedule is the trace reader's LLMServingSim format (arrival_time_ns, input_toks,
    # output_toks): row-precise errors, stable re-sort of out-of-order rows.
    workload = read_trace(path / "workload.csv")
    if len(workload) == 0:
        raise InputError("no requests in the arrival schedule", file=str(path / "workload.csv"))
    blocks = kv.get("num_gpu_blocks")
    return Bundle(
        name=path.name, path=path, model=MODELS[hf_model], gpu=GPUS[hw],
        tp=num(kw, "tensor_parallel_size", 1), dp=num(kw, "data_parallel_size", 1),
        expert_parallel=bool(kw.get("enable_expert_parallel")),
        max_num_seqs=num(kw, "max_num_seqs", 256),
        max_num_batched_tokens=num(kw, "max_num_batched_tokens", 8192),
        block_size=num(kv, "block_size", 16),
        gpu_memory_utilization=num(kv, "gpu_memory_utilization",
                                   VLLM_DEFAULT_MEMORY_UTILIZATION, float),
        num_gpu_blocks=None if blocks is None else num(kv, "num_gpu_blocks", 0),
        workload=workload,
    )


def _hardware(path: Path) -> tuple[str, str]:
    """The bundle's GPU name and where it was read: the cluster description (``config.json``:
    ``nodes[].instances[].hardware``), else the profile's ``perf/bf16/meta.yaml``
    (``hardware``), else the folder name's prefix (``RTX4090_...``), so a bundle copied to any
    folder name still replays."""
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            names = {inst["hardware"] for node in json.loads(cfg.read_text())["nodes"]
                     for inst in node["instances"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read the cluster description: {e}", file=str(cfg),
                             field="nodes[].instances[].hardware") from e
        if len(names) != 1:
            raise InputError(f"expected one GPU kind, found {sorted(map(str, names))}",
                             file=str(cfg), field="nodes[].instances[].hardware")
        return str(names.pop()), str(cfg)
    meta = path / "perf" / "bf16" / "meta.yaml"
    if meta.is_file():
        import yaml

        try:
            hw = (yaml.safe_load(meta.read_text()) or {}).get("hardware")
        except (OSError, yaml.YAMLError, AttributeError) as e:
            raise InputError(f"cannot read the profile description: {e}", file=str(meta),
                             field="hardware") from e
        if hw:
            return str(hw), str(meta)
    return path.name.split("_", 1)[0], str(path)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file, ``.csv`` or xz-compressed ``.csv.xz``."""
    if not path.exists() and path.with_suffix(path.suffix + ".xz").exists():
        path = path.with_suffix(path.suffix + ".xz")
    try:
        opener: Any = lzma.open if path.suffix == ".xz" else open
        with opener(path, "rt", newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"cannot read: {e}", file=str(path)) from e


# ---------------------------------------------------------------------- measurements (comparison only)
def measured_metrics(bundle: Bundle) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT and E2E of the real run (LLMServingSim's definitions: TTFT and E2E
    from ``queued_ts``, TPOT = decode time / (output - 1)). For the comparison only."""
    path = bundle.path / "vllm" / "requests.jsonl"
    recs = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e.msg}", file=str(path), line=i) from None
    q = np.array([r["queued_ts"] for r in recs])
    first = np.array([r["first_token_ts"] for r in recs])
    last = np.array([r["last_token_ts"] for r in recs])
    out = np.array([r["output_toks"] for r in recs], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (last - first) / (out - 1), np.nan)
    return {"ttft_s": first - q, "tpot_s": tpot[~np.isnan(tpot)], "e2e_s": last - q,
            "span_s": np.array([last.max() - q.min()])}


def measured_timeseries(bundle: Bundle) -> dict[str, np.ndarray]:
    """The real run's per-second running/waiting requests. For the comparison only."""
    rows = read_csv(bundle.path / "vllm" / "timeseries.csv")
    return {k: np.array([float(r[k]) for r in rows]) for k in ("t", "running", "waiting")}

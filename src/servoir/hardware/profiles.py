"""Readers and interpolators for the shipped kernel-profile tables (used by ``fit.py`` only).

Imports pandas; never imported at ``import servoir.hardware`` time.

Tables (``servoir/data/profiles``; sources and licences in the READMEs there):

- ``vidur_mlp/<gpu>_<model>_mlp.csv``: Vidur's per-layer non-attention op times (ms, one GPU,
  one layer) vs ``num_tokens`` and TP.
- ``aiconfigurator_vllm_ops/<gpu>_sxm_*``: vLLM 0.14 kernel tables: bf16 GEMM (m, n, k),
  decode and prefill attention per layer, custom all-reduce. The all-reduce ``message_size`` is
  a count of **elements** (bf16, so bytes = 2 x size): AIConfigurator's collector
  (``collector/collect_all_reduce.py``) allocates ``torch.ones([size // 4096, 4096])`` for it,
  and the implied bandwidth checks out (A100, 2 GPUs, 2^29 elements in 5.39 ms: 199 GB/s of
  bf16, near NVLink3's 300 GB/s one-way; read as bytes it would be a low 100 GB/s).
- ``vidur_baseline/*.csv.xz``: Vidur's own A100 profiles for Llama-3-70B at TP2 (attention) and
  the A100 DGX network (all-reduce ``size`` is in **bytes**: Vidur passes
  ``num_tokens * embedding_dim * 2``).
- ``splitwise_perf_model/perf_model.csv``: measured whole-iteration times (validation only).
"""

from __future__ import annotations

import bisect
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

VIDUR_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)

# Vidur table file stems per (model, gpu).
VIDUR_MLP_FILES = {
    ("llama-2-7b", "a100"): "a100_Llama-2-7b-hf_mlp.csv",
    ("llama-2-70b", "a100"): "a100_Llama-2-70b-hf_mlp.csv",
    ("llama-3-8b", "a100"): "a100_Meta-Llama-3-8B_mlp.csv",
    ("llama-3-70b", "a100"): "a100_Meta-Llama-3-70B_mlp.csv",
    ("llama-2-7b", "h100"): "h100_Llama-2-7b-hf_mlp.csv",
    ("llama-2-70b", "h100"): "h100_Llama-2-70b-hf_mlp.csv",
}
AIC_GPUS = ("a100", "h100", "h200")


def profiles_dir() -> Path:
    """Directory of the shipped profile tables."""
    return Path(str(resources.files("servoir") / "data" / "profiles"))


def aic_path(gpu: str, table: str) -> Path:
    """Path of an AIConfigurator table (``gemm``, ``allreduce``, ``generation_attention`` ...)."""
    return profiles_dir() / "aiconfigurator_vllm_ops" / f"{gpu}_sxm_{table}_bf16.csv"


@cache
def vidur_mlp_layer_ms(model: str, gpu: str, tp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vidur MLP table for one (model, gpu, tp): (num_tokens, per-layer ms, embedding ms).

    The per-layer time is the sum of the medians of the ops in ``VIDUR_OPS``; duplicate rows
    (same tokens) are averaged.
    """
    path = profiles_dir() / "vidur_mlp" / VIDUR_MLP_FILES[(model, gpu)]
    df = pd.read_csv(path)
    df = df[df["num_tensor_parallel_workers"] == tp]
    layer = sum(df[f"time_stats.{op}.median"] for op in VIDUR_OPS)
    out = (
        pd.DataFrame({"n": df["num_tokens"], "layer": layer, "emb": df["time_stats.emb.median"]})
        .groupby("n", sort=True)
        .mean()
    )
    return out.index.to_numpy(np.int64), out["layer"].to_numpy(), out["emb"].to_numpy()


def _segment(grid: np.ndarray, x: float) -> tuple[int, float]:
    """Left index and weight of ``x`` in ``grid`` (weight > 1 extrapolates past the end)."""
    i = bisect.bisect_right(grid.tolist(), x) - 1
    i = min(max(i, 0), len(grid) - 2)
    w = (x - grid[i]) / (grid[i + 1] - grid[i])
    return i, max(w, 0.0)  # below the first point: flat (tiny kernels sit on a latency floor)


class GemmTable:
    """Trilinear interpolation of bf16 GEMM latency over the (m, n, k) grid.

    Linear (not log) in each dimension: at large sizes latency is close to proportional to each
    dimension, so linear interpolation and end-segment extrapolation stay physical. Grid holes
    (a few missing rows) are filled from the neighbouring m along the same (n, k).
    """

    def __init__(self, gpu: str) -> None:
        df = pd.read_csv(aic_path(gpu, "gemm")).groupby(["m", "n", "k"])["latency_ms"].mean()
        self.m = np.array(sorted(df.index.get_level_values(0).unique()), dtype=float)
        self.n = np.array(sorted(df.index.get_level_values(1).unique()), dtype=float)
        self.k = np.array(sorted(df.index.get_level_values(2).unique()), dtype=float)
        full = pd.MultiIndex.from_product([self.m, self.n, self.k], names=["m", "n", "k"])
        df.index = df.index.set_levels([lv.astype(float) for lv in df.index.levels])
        cube = df.reindex(full).to_numpy().reshape(len(self.m), len(self.n), len(self.k))
        filled = pd.DataFrame(cube.reshape(len(self.m), -1)).ffill().bfill().to_numpy()
        self.t = filled.reshape(cube.shape) * 1e-3  # seconds

    def __call__(self, m: float, n: float, k: float) -> float:
        """Latency in seconds of an (m x k) @ (k x n) bf16 GEMM."""
        (i, wi), (j, wj), (q, wq) = _segment(self.m, m), _segment(self.n, n), _segment(self.k, k)
        c = self.t[i : i + 2, j : j + 2, q : q + 2]
        c = c[0] * (1 - wi) + c[1] * wi
        c = c[0] * (1 - wj) + c[1] * wj
        return float(c[0] * (1 - wq) + c[1] * wq)


@cache
def gemm_table(gpu: str) -> GemmTable:
    """Cached ``GemmTable`` for one GPU."""
    return GemmTable(gpu)


class AllReduceTable:
    """All-reduce latency vs message bytes for a given GPU count (piecewise linear)."""

    def __init__(self, sizes_bytes: np.ndarray, seconds: np.ndarray) -> None:
        order = np.argsort(sizes_bytes)
        self.x, self.y = np.asarray(sizes_bytes, float)[order], np.asarray(seconds)[order]

    def __call__(self, num_bytes: float) -> float:
        """Latency in seconds (flat below the smallest size, linear beyond the largest)."""
        x, y = self.x, self.y
        if num_bytes <= x[-1]:
            return float(np.interp(num_bytes, x, y))
        slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        return float(y[-1] + slope * (num_bytes - x[-1]))


@cache
def aic_allreduce(gpu: str, num_gpus: int) -> AllReduceTable:
    """vLLM custom all-reduce under CUDA graphs (``vllm_graph``); sizes converted to bytes."""
    df = pd.read_csv(aic_path(gpu, "allreduce"))
    df = df[(df["backend"] == "vllm_graph") & (df["num_gpus"] == num_gpus)]
    g = df.groupby("message_size")["latency_ms"].mean()
    return AllReduceTable(g.index.to_numpy() * 2.0, g.to_numpy() * 1e-3)


@cache
def vidur_allreduce(num_gpus: int) -> AllReduceTable:
    """Vidur's A100 DGX all-reduce (single node: devices_per_node == num_workers); bytes."""
    df = pd.read_csv(profiles_dir() / "vidur_baseline" / "all_reduce.csv.xz", compression="xz")
    df = df[(df["num_workers"] == num_gpus) & (df["devices_per_node"] == num_gpus)]
    g = df.groupby("size")["time_stats.all_reduce.median"].mean()
    return AllReduceTable(g.index.to_numpy(float), g.to_numpy() * 1e-3)


def _pick_heads(
    df: pd.DataFrame, heads: int, kv_heads: int, by_kv: bool
) -> tuple[pd.DataFrame, float]:
    """Rows for the nearest available (heads, kv_heads) and the factor to scale the slope by.

    Decode attention streams the KV cache, so its slope scales with KV heads (``by_kv``);
    prefill attention is FLOP-bound and scales with query heads.
    """
    combos = set(zip(df["num_heads"], df["num_key_value_heads"], strict=True))
    if (heads, kv_heads) in combos:
        pick = (heads, kv_heads)
    else:  # nearest query-head count, then the largest KV-head count not above the target
        hs = sorted({h for h, _ in combos}, key=lambda h: (abs(h - heads), -h))
        h = hs[0]
        kvs = sorted(kv for hh, kv in combos if hh == h)
        kv = max([x for x in kvs if x <= kv_heads] or kvs[:1])
        pick = (h, kv)
    rows = df[(df["num_heads"] == pick[0]) & (df["num_key_value_heads"] == pick[1])]
    scale = kv_heads / pick[1] if by_kv else heads / pick[0]
    return rows, scale


def relative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares minimising relative error: solves (X / y) c ~ 1, coefficients >= 0.

    Columns are scaled to unit maximum first so NNLS is well conditioned.
    """
    a = x / y[:, None]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-300)
    coef, _ = nnls(a / scale, np.ones(len(y)))
    return coef / scale


def rel_errors(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean and max absolute relative error and the point count."""
    r = np.abs(np.asarray(pred) / np.asarray(y) - 1.0)
    return {"mean_abs_rel_err": float(r.mean()), "max_abs_rel_err": float(r.max()), "n": len(r)}


def fit_decode_attention_aic(gpu: str, heads: int, kv_heads: int) -> tuple[np.ndarray, dict]:
    """Per-layer decode attention: ``seconds = a + b*batch + c*batch*kv_len`` (relative LS)."""
    df = pd.read_csv(aic_path(gpu, "generation_attention"))
    rows, scale = _pick_heads(df, heads, kv_heads, by_kv=True)
    b, kv = rows["batch_size"].to_numpy(float), rows["kv_len"].to_numpy(float)
    y = rows["latency_ms"].to_numpy() * 1e-3
    x = np.c_[np.ones_like(b), b, b * kv]
    coef = relative_lstsq(x, y)
    err = rel_errors(x @ coef, y)
    coef = coef * np.array([1.0, 1.0, scale])
    return coef, err


def fit_prefill_attention_aic(gpu: str, heads: int, kv_heads: int) -> tuple[np.ndarray, dict]:
    """Per-layer causal prefill attention: ``seconds = a + b*batch*isl + c*batch*isl*(isl+1)/2``.

    Returns ``(a, c, b)``: constant, per query-key pair, per query token.
    """
    df = pd.read_csv(aic_path(gpu, "context_attention"))
    rows, scale = _pick_heads(df, heads, kv_heads, by_kv=False)
    b, s = rows["batch_size"].to_numpy(float), rows["isl"].to_numpy(float)
    y = rows["latency_ms"].to_numpy() * 1e-3
    x = np.c_[np.ones_like(b), b * s * (s + 1) / 2, b * s]
    coef = relative_lstsq(x, y)
    err = rel_errors(x @ coef, y)
    return coef * np.array([1.0, scale, scale]), err


def _vidur_attention() -> pd.DataFrame:
    return pd.read_csv(profiles_dir() / "vidur_baseline" / "attention.csv.xz", compression="xz")


def fit_decode_attention_vidur() -> tuple[np.ndarray, dict]:
    """Vidur A100 70B-class TP2 decode attention: ``a + b*batch + c*batch*kv``."""
    df = _vidur_attention()
    df = df[~df["is_prefill"].astype(bool)]
    b, kv = df["batch_size"].to_numpy(float), df["kv_cache_size"].to_numpy(float)
    y = df["time_stats.attn_decode.median"].to_numpy() * 1e-3
    x = np.c_[np.ones_like(b), b, b * kv]
    coef = relative_lstsq(x, y)
    return coef, rel_errors(x @ coef, y)


def fit_prefill_attention_vidur() -> tuple[np.ndarray, dict]:
    """Vidur A100 70B-class TP2 prefill: ``a + c*(chunk*kv + chunk*(chunk+1)/2) + b*chunk``."""
    df = _vidur_attention()
    df = df[df["is_prefill"].astype(bool)]
    c, kv = df["prefill_chunk_size"].to_numpy(float), df["kv_cache_size"].to_numpy(float)
    y = df["time_stats.attn_prefill.median"].to_numpy() * 1e-3
    x = np.c_[np.ones_like(c), c * kv + c * (c + 1) / 2, c]
    coef = relative_lstsq(x, y)
    return coef, rel_errors(x @ coef, y)


@cache
def splitwise_table() -> pd.DataFrame:
    """Splitwise measured iterations, averaged over repeats; ms converted to seconds.

    Drops the ``h100-80gb-pcap`` rows (derived, not measured) and the anomalous TP2 batch-64
    rows (see the table's README).
    """
    df = pd.read_csv(profiles_dir() / "splitwise_perf_model" / "perf_model.csv")
    df = df[(df["model"] == "llama2-70b") & (df["hardware"] != "h100-80gb-pcap")]
    df = df[~((df["tensor_parallel"] == 2) & (df["batch_size"] == 64))]
    keys = ["hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    g = df.groupby(keys, as_index=False)[["prompt_time", "token_time"]].mean()
    g["prompt_time"] *= 1e-3
    g["token_time"] *= 1e-3
    g["gpu"] = g["hardware"].map({"a100-80gb": "a100", "h100-80gb": "h100"})
    return g

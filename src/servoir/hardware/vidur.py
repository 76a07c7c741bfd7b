"""Vidur's execution-time model, rebuilt from Vidur's own profiles (for ``engine.preset=vidur_v0``).

Vidur 0.0.26 (microsoft/vidur, MIT; Agrawal et al., MLSys 2024) predicts each pipeline stage's
time from per-operator profiles (``vidur/execution_time_predictor/``,
``vidur/entities/execution_time.py``). Per layer, in milliseconds, with ``n8`` the batch's query
tokens rounded up to a multiple of 8:

    AR     = all_reduce(n8) + 0.02                       (NCCL CPU launch overhead)
    attn   = pre_proj(n8) + post_proj(n8) + rope(n8) + input_layernorm(n8) + AR
             + decode_attn + prefill_attn
    mlp    = up_proj(n8) + down_proj(n8) + act(n8) + post_attention_layernorm(n8) + AR
    layer  = attn + mlp + add(n8)
    stage  = layers_per_stage * layer + (send_recv(n8) on every stage but the last)

``decode_attn = attn_decode(b, ceil256(int(mean(kv))))`` times 1.1 when ``b > 1`` (Vidur's
GQA batching overhead), over the ``b`` decoding requests, ``kv = processed + 1``.
``prefill_attn`` sums ``attn_prefill(ceil256(kv), ceil32(q))`` over prefilling requests,
``kv = processed + q`` (for a fresh prompt ``(ceil256(P), ceil32(P))``: Vidur's profile key
counts the prompt as prior context too, which we reproduce rather than "fix").

Vidur fits random forests to the profile medians and tabulates them on a grid. Here the same
medians are interpolated (piecewise linear; held flat beyond the profiled range, as a tree
ensemble does) onto the same grid, ahead of time: ``build_tables()`` writes the ``.npz`` shipped
next to this module, ``load_tables()`` reads it at run time (numpy only, milliseconds).
The shipped table covers Llama-3-70B on A100 at TP 2 (the only TP Vidur's attention profile has).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from servoir.errors import InputError
from servoir.hardware.models import ModelSpec

HERE = Path(__file__).parent
PROFILES = HERE.parent / "data" / "profiles" / "vidur_baseline"
SHIPPED = {("llama-3-70b", "a100", 2): HERE / "vidur_llama-3-70b_a100_tp2.npz"}

MAX_TOKENS = 4096  # Vidur's prediction grid for linear ops (prefill chunk <= 4096)
MAX_BATCH = 128
KV_GRANULARITY = 256
KV_MAX = 8192
NCCL_LAUNCH_MS = 0.02
DECODE_BATCHING_OVERHEAD = 0.1
LINEAR_OPS = ("attn_pre_proj", "attn_post_proj", "attn_rope", "input_layernorm", "mlp_up_proj",
              "mlp_down_proj", "mlp_act", "post_attention_layernorm", "add")


def _interp_flat(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation, constant outside ``[xp[0], xp[-1]]``."""
    order = np.argsort(xp)
    return np.interp(x, xp[order], fp[order])


def _by_size(df: Any, col: str, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Median time per message size, as tokens (bytes / hidden / 2 bytes), averaged over ranks."""
    g = df.groupby("size")[col].mean()
    return g.index.to_numpy() / hidden / 2, g.to_numpy()


def build_tables(profile_dir: Path = PROFILES, hidden: int = 8192, q_heads: int = 64,
                 kv_heads: int = 8, tp: int = 2, block_size: int = 16) -> dict[str, np.ndarray]:
    """Tabulate Vidur's operator medians on Vidur's prediction grid (milliseconds).

    Returns ``linear_ms[n8 // 8]`` (all token-linear ops of one layer plus its two all-reduces),
    ``send_recv_ms[n8 // 8]``, ``decode_ms[b, kv // 256]`` (b = 0..128, kv = 0..8192) and
    ``prefill_ms[kv // 256, q // 32]``.
    """
    import pandas as pd  # offline build only

    mlp = pd.read_csv(profile_dir / "mlp.csv.xz").drop_duplicates()
    mlp = mlp[mlp["num_tensor_parallel_workers"] == tp]
    if mlp.empty:
        raise InputError(f"no TP {tp} rows in Vidur's MLP profile", file=str(profile_dir))
    n8 = np.arange(0, MAX_TOKENS + 8, 8, dtype=np.float64)
    n8[0] = 1.0  # index 0 is unused (a batch has at least one token)
    toks = mlp["num_tokens"].to_numpy(dtype=np.float64)
    linear = np.zeros_like(n8)
    for op in LINEAR_OPS:
        linear += _interp_flat(n8, toks, mlp[f"time_stats.{op}.median"].to_numpy())
    ar = pd.read_csv(profile_dir / "all_reduce.csv.xz").drop_duplicates()
    ar = ar[(ar["num_workers"] == tp) & (ar["devices_per_node"] == tp)
            & (ar["collective"] == "all_reduce")]
    x, y = _by_size(ar, "time_stats.all_reduce.median", hidden)
    linear += 2 * (_interp_flat(n8, x, y) + NCCL_LAUNCH_MS)
    sr = pd.read_csv(profile_dir / "send_recv.csv.xz").drop_duplicates()
    sr = sr[(sr["collective"] == "send_recv") & (sr["devices_per_node"] == 2)]
    x, y = _by_size(sr, "time_stats.send_recv.median", hidden)
    send_recv = _interp_flat(n8, x, y)

    att = pd.read_csv(profile_dir / "attention.csv.xz").drop_duplicates()
    att = att[(att["n_embd"] == hidden) & (att["n_q_head"] == q_heads)
              & (att["n_kv_head"] == kv_heads) & (att["block_size"] == block_size)
              & (att["num_tensor_parallel_workers"] == tp)]
    dec = att[att["prefill_chunk_size"] == 0]
    pre = att[att["prefill_chunk_size"] > 0]
    kv_grid = np.arange(0, KV_MAX + 1, KV_GRANULARITY, dtype=np.float64)
    decode = np.zeros((MAX_BATCH + 1, len(kv_grid)))
    per_b = {b: _line(g, "kv_cache_size", "time_stats.attn_decode.median")
             for b, g in dec.groupby("batch_size")}
    bs = np.array(sorted(per_b), dtype=np.float64)
    at_b = np.array([_interp_flat(kv_grid, *per_b[b]) for b in sorted(per_b)])
    for b in range(1, MAX_BATCH + 1):
        decode[b] = [_interp_flat(np.array([b], dtype=np.float64), bs, at_b[:, j])[0]
                     for j in range(len(kv_grid))]
    q_grid = np.arange(0, MAX_TOKENS + 1, 32, dtype=np.float64)
    per_q = {q: _line(g, "kv_cache_size", "time_stats.attn_prefill.median")
             for q, g in pre.groupby("prefill_chunk_size")}
    qs = np.array(sorted(per_q), dtype=np.float64)
    at_q = np.array([_interp_flat(kv_grid, *per_q[q]) for q in sorted(per_q)])
    prefill = np.array([[_interp_flat(np.array([q]), qs, at_q[:, j])[0] for q in q_grid]
                        for j in range(len(kv_grid))])
    return {"linear_ms": linear, "send_recv_ms": send_recv, "decode_ms": decode,
            "prefill_ms": prefill}


def _line(g: Any, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    s = g.groupby(x)[y].mean()
    return s.index.to_numpy(dtype=np.float64), s.to_numpy(dtype=np.float64)


def write_tables(path: Path = SHIPPED[("llama-3-70b", "a100", 2)]) -> Path:
    """Rebuild the shipped table from the shipped profiles (``python -m servoir.hardware.vidur``)."""
    np.savez_compressed(path, **build_tables())
    return path


@cache
def load_tables(model: str, gpu: str, tp: int) -> dict[str, np.ndarray]:
    """The shipped tables for ``(model, gpu, tp)``; a clear error for any other pair."""
    path = SHIPPED.get((model, gpu, tp))
    if path is None:
        valid = ", ".join(f"{m}/{g}/tp{t}" for m, g, t in SHIPPED)
        raise InputError(f"engine.preset=vidur_v0 needs Vidur's profiles; they exist for "
                         f"{valid}, not {model}/{gpu}/tp{tp}", field="engine.preset")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


class VidurStageTime:
    """Stage times of Vidur's model for one (model, GPU, TP) and pipeline depth, in seconds.

    Methods are called once per batch; lookups are list indexing (pure Python, no numpy).
    """

    def __init__(self, spec: ModelSpec, gpu: str, tp: int, pp: int) -> None:
        t = load_tables(spec.name, gpu, tp)
        if spec.num_layers % pp:
            raise InputError(f"{spec.num_layers} layers do not split into {pp} stages",
                             field="hardware.pp")
        self.layers = spec.num_layers // pp
        self.pp = pp
        self.linear = t["linear_ms"].tolist()
        self.send_recv = t["send_recv_ms"].tolist()
        self.decode = t["decode_ms"].tolist()
        self.prefill = t["prefill_ms"].tolist()
        self.n_max = len(self.linear) - 1
        self.kv_max = len(self.decode[0]) - 1
        self._decode_cache: dict[int, tuple[float, ...]] = {}

    def _stages(self, n: int, attn_ms: float) -> tuple[float, ...]:
        i = min((n + 7) // 8, self.n_max)
        body = self.layers * (self.linear[i] + attn_ms)
        last = body * 1e-3
        first = (body + self.send_recv[i]) * 1e-3
        return (first,) * (self.pp - 1) + (last,)

    def decode_stages(self, b: int, mean_kv: int) -> tuple[float, ...]:
        """Per-stage times of a decode batch of ``b`` requests with mean KV ``mean_kv``."""
        j = min(-(-mean_kv // KV_GRANULARITY), self.kv_max)
        key = b << 16 | j  # an int key: no tuple per call (b <= 2**47, j < 2**16)
        out = self._decode_cache.get(key)
        if out is None:
            attn = self.decode[min(b, MAX_BATCH)][j]
            if b > 1:
                attn *= 1 + DECODE_BATCHING_OVERHEAD
            out = self._decode_cache[key] = self._stages(b, attn)
        return out

    def prefill_stages(self, prompts: list[int]) -> tuple[float, ...]:
        """Per-stage times of a prefill batch of fresh prompts (no cached prefix)."""
        attn = 0.0
        kv_cap = len(self.prefill) - 1
        for p in prompts:
            attn += self.prefill[min(-(-p // KV_GRANULARITY), kv_cap)][min(-(-p // 32), 128)]
        return self._stages(sum(prompts), attn)


def vidur_num_blocks(spec: ModelSpec, tp: int, pp: int, memory_bytes: int = 80 * 2**30,
                     margin: float = 0.1, max_tokens: int = MAX_TOKENS,
                     block_size: int = 16) -> int:
    """KV blocks per replica as Vidur's memory planner computes them (weights only, no
    activations or embeddings; ``gpu_memory_utilization`` is not used by Vidur)."""
    per_layer = (spec.hidden_size * spec.head_dim * (spec.num_heads + 2 * spec.num_kv_heads) // tp
                 + spec.hidden_size * spec.head_dim * spec.num_heads // tp
                 + 3 * spec.hidden_size * spec.intermediate_size // tp)
    params = spec.num_layers // pp * per_layer * 2
    avail = memory_bytes * (1 - margin) - params
    kv_per_token = 2 * 2 * spec.head_dim * max(1, spec.num_kv_heads // tp) * spec.num_layers // pp
    tokens = int(avail // kv_per_token)
    return (max_tokens // block_size) * (tokens // max_tokens)


if __name__ == "__main__":  # pragma: no cover
    print(write_tables())

"""Fit latency coefficients from the shipped profiles, or from a user's own iteration CSV.

``fit_all()`` fits every shipped (model, GPU, TP) pair and, with ``write=True``, rewrites
``coefficients.json`` (run ``python -m servoir.hardware.fit``). The simulator never refits at
start-up; it loads the JSON.

How a pair is fitted (all kernel tables are per layer, one GPU):

- **token_time** knots: per-layer non-attention time x layers + embedding + two TP all-reduces
  per layer of ``n * hidden * 2`` bytes. The per-layer time comes from Vidur's MLP table
  (source ``vidur_mlp``) where one exists for the model and GPU; otherwise from the
  AIConfigurator bf16 GEMM table at the layer's GEMM shapes (QKV, O, gate/up, down at ``tp``;
  ``m`` = tokens) plus a bandwidth model of the norms/rope/activation kernels (source
  ``roofline+gemm``). MoE layers (Mixtral, Qwen3-MoE) run ``E_act = E (1 - (1 - k/E)^n)``
  expected distinct experts, each a GEMM of ``n k / E_act`` tokens (an approximation of vLLM's
  fused MoE kernel: it reads every touched expert once and is compute-bound at large ``n``).
  Knots beyond a table's last token count extend a straight-line fit of its top half.
- **kv_coef_s / seq_coef_s**: AIConfigurator decode attention, ``a + b*batch + c*batch*kv``
  per layer at the GPU's query/KV heads (slope scaled by KV heads where the exact head count is
  not in the table), times layers. **prefill_attn_coef_s**: context attention,
  ``a + b*batch*isl + c*batch*isl*(isl+1)/2``, scaled by query heads where needed; the
  per-query-token ``b`` x layers joins ``token_time`` (decode tokens are queries too).
- **overhead_s**: the attention kernels' constant ``a`` x layers + the LM head at one sequence
  + ``FRAMEWORK_OVERHEAD_S``; the LM head's per-sequence slope goes to ``seq_coef_s``.
- Llama-3-70B on A100 at TP2 (Vidur's baseline configuration) takes attention and all-reduce
  from Vidur's own profiles instead (source ``vidur_mlp+vidur_attention+vidur_allreduce``).
- Splitwise's measured Llama-2-70B iterations (A100/H100, TP 2/4/8) validate the result; the
  error is reported, not fitted away: Splitwise measured an older, eager-mode stack whose decode
  iterations run ~1.6x the kernel sums; ``splitwise_overhead_gap_s`` reports the extra constant
  that would absorb it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from servoir.errors import InputError
from servoir.hardware import profiles as pr
from servoir.hardware.capacity import kv_capacity_tokens
from servoir.hardware.gpus import get_gpu
from servoir.hardware.latency import (
    COEFFICIENTS_FILE,
    FORMAT_VERSION,
    FRAMEWORK_OVERHEAD_S,
    TOKEN_KNOTS,
    LatencyModel,
    pair_key,
    validate_tp,
)
from servoir.hardware.models import ModelSpec, get_model

__all__ = ["FitReport", "fit_all", "fit_pair", "fit_profile_csv", "shipped_pairs"]

SHIPPED_MODELS = (
    "llama-2-7b", "llama-3-8b", "llama-2-70b", "llama-3-70b",
    "mixtral-8x7b", "qwen3-32b", "qwen3-30b-a3b",
)  # fmt: skip
SHIPPED_GPUS = ("a100", "h100", "h200")
SHIPPED_TPS = (1, 2, 4, 8)
ELEMENTWISE_BW_EFFICIENCY = 0.5
"""Fraction of peak HBM bandwidth the norm/rope/activation kernels reach (Vidur's A100 tables
show 45-60% at 4096 tokens)."""
ELEMENTWISE_FLOOR_S = 4e-6
"""Latency floor of one small elementwise kernel; five per layer."""


@dataclass(frozen=True)
class FitReport:
    """Result of fitting one pair: the latency model and its error against the profile points.

    ``errors`` maps a check name (``mlp``, ``decode_attn``, ``prefill_attn``,
    ``splitwise_token_time``, ``splitwise_prompt_time``, ``gemm_vs_vidur_mlp``, ``profile``) to
    ``{"mean_abs_rel_err", "max_abs_rel_err", "n"}``.
    """

    latency: LatencyModel
    errors: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``"<model>/<gpu>/tp<tp>"``."""
        return pair_key(self.latency.model, self.latency.gpu, self.latency.tp)

    @property
    def coefficients(self) -> dict[str, Any]:
        """The JSON entry (coefficients plus the ``fit`` metrics)."""
        return self.latency.to_dict()


def shipped_pairs() -> list[tuple[str, str, int]]:
    """Pairs ``fit_all`` covers: every shipped model x GPU x TP whose weights fit."""
    out = []
    for m in SHIPPED_MODELS:
        spec = get_model(m)
        for g in SHIPPED_GPUS:
            for tp in SHIPPED_TPS:
                try:
                    validate_tp(spec, tp)
                    kv_capacity_tokens(m, g, tp)
                except InputError:
                    continue
                out.append((m, g, tp))
    return out


def _gemm_layer_s(spec: ModelSpec, gpu: str, tp: int, n: int) -> float:
    """Per-layer non-attention time at ``n`` tokens from the GEMM table + elementwise model."""
    gemm = pr.gemm_table(gpu)
    h, hd = spec.hidden_size, spec.head_dim
    kvh = max(spec.num_kv_heads // tp, 1)
    q = spec.num_heads // tp * hd
    t = gemm(n, q + 2 * kvh * hd, h) + gemm(n, h, q)
    if spec.is_moe:
        e, k, w = spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size // tp
        active = e * (1.0 - (1.0 - k / e) ** n)
        m = n * k / active
        t += gemm(n, e, h) + active * (gemm(m, 2 * w, h) + gemm(m, h, w))
        width = w * k
    else:
        w = spec.intermediate_size // tp
        t += gemm(n, 2 * w, h) + gemm(n, h, w)
        width = w
    bw = get_gpu(gpu).hbm_bandwidth_bytes_per_s * ELEMENTWISE_BW_EFFICIENCY
    elementwise_bytes = n * 2 * (10 * h + 2 * (q + kvh * hd) + 3 * width)
    return t + max(5 * ELEMENTWISE_FLOOR_S, elementwise_bytes / bw)


def _knot_values(ns: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Profile values at ``TOKEN_KNOTS``: interpolated inside, straight-line fit beyond."""
    knots = np.array(TOKEN_KNOTS, dtype=float)
    out = np.interp(knots, ns, vals)
    beyond = knots > ns[-1]
    if beyond.any():
        top = ns >= ns[-1] / 2
        slope, icpt = np.polyfit(ns[top].astype(float), vals[top], 1)
        out[beyond] = icpt + slope * knots[beyond]
    return np.maximum.accumulate(out)


def _piecewise(knots: np.ndarray, vals: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate the ``LatencyModel.token_time`` rule (flat below, extended beyond) on arrays."""
    knots, vals, x = (np.asarray(a, dtype=float) for a in (knots, vals, x))
    i = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    slope = np.diff(vals) / np.diff(knots)
    return np.where(x <= knots[0], vals[0], vals[i] + slope[i] * (x - knots[i]))


def _allreduce_s(spec: ModelSpec, gpu: str, tp: int, vidur: bool) -> np.ndarray:
    """Two all-reduces per layer at each knot (zeros at TP1)."""
    if tp == 1:
        return np.zeros(len(TOKEN_KNOTS))
    table = pr.vidur_allreduce(tp) if vidur else pr.aic_allreduce(gpu, tp)
    nbytes = [n * spec.hidden_size * 2 for n in TOKEN_KNOTS]
    return np.array([2 * spec.num_layers * table(b) for b in nbytes])


def _lm_head(spec: ModelSpec, gpu: str, tp: int) -> tuple[float, float]:
    """LM head GEMM on one row per sequence: (time at 1 sequence, slope per extra sequence)."""
    gemm = pr.gemm_table(gpu)
    seqs = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256], dtype=float)
    t = np.array([gemm(s, spec.vocab_size / tp, spec.hidden_size) for s in seqs])
    slope = float(np.polyfit(seqs, t, 1)[0])
    return float(t[0]), max(slope, 0.0)


def fit_pair(model: str, gpu: str, tp: int) -> FitReport:
    """Fit one (model, GPU, TP) pair from the shipped tables (see the module docstring)."""
    spec = get_model(model)
    validate_tp(spec, tp)
    layers, errors = spec.num_layers, {}
    vidur_pair = (spec.name, gpu) in pr.VIDUR_MLP_FILES
    vidur_attn = (spec.name, gpu, tp) == ("llama-3-70b", "a100", 2)
    knots = np.array(TOKEN_KNOTS, dtype=float)
    gemm_knots = np.array([layers * _gemm_layer_s(spec, gpu, tp, int(n)) for n in knots])
    if vidur_pair:
        ns, layer_ms, emb_ms = pr.vidur_mlp_layer_ms(spec.name, gpu, tp)
        prof = (layers * layer_ms + emb_ms) * 1e-3
        compute = _knot_values(ns, prof)
        errors["mlp"] = pr.rel_errors(_piecewise(knots, compute, ns), prof)
        errors["gemm_vs_vidur_mlp"] = pr.rel_errors(np.interp(ns, knots, gemm_knots), prof)
        source = "fit:vidur_mlp"
    else:
        compute = np.maximum.accumulate(gemm_knots)
        source = "fit:roofline+gemm"
    heads, kvh = spec.num_heads // tp, max(spec.num_kv_heads // tp, 1)
    if vidur_attn:
        dec, errors["decode_attn"] = pr.fit_decode_attention_vidur()
        pre, errors["prefill_attn"] = pr.fit_prefill_attention_vidur()
        source += "+vidur_attention+vidur_allreduce"
    else:
        dec, errors["decode_attn"] = pr.fit_decode_attention_aic(gpu, heads, kvh)
        pre, errors["prefill_attn"] = pr.fit_prefill_attention_aic(gpu, heads, kvh)
        source += "+aiconfigurator_attention" + ("+aiconfigurator_allreduce" if tp > 1 else "")
    # Every token (prefill or decode) is a query row of the attention kernel: its per-token
    # cost joins token_time, and the decode per-sequence term keeps only what exceeds it.
    token_time = compute + _allreduce_s(spec, gpu, tp, vidur_attn) + layers * pre[2] * knots
    token_time = np.maximum.accumulate(token_time)
    lm1, lm_slope = _lm_head(spec, gpu, tp)
    lm = LatencyModel(
        model=spec.name,
        gpu=gpu,
        tp=tp,
        token_knots=TOKEN_KNOTS,
        token_time_s=tuple(float(v) for v in token_time),
        seq_coef_s=float(layers * max(dec[1] - pre[2], 0.0) + lm_slope),
        kv_coef_s=float(layers * dec[2]),
        prefill_attn_coef_s=float(layers * pre[1]),
        overhead_s=float(FRAMEWORK_OVERHEAD_S + layers * max(dec[0], pre[0]) + lm1 - lm_slope),
        p2p_bytes_per_token=spec.hidden_size * 2,
        p2p_bytes_per_s=get_gpu(gpu).interconnect_bytes_per_s,
        source=source,
    )
    extra: dict[str, Any] = {}
    if spec.name == "llama-2-70b" and gpu in ("a100", "h100") and tp in (2, 4, 8):
        extra = _splitwise_check(lm, errors)
    fit = {"errors": errors, **extra}
    return FitReport(_with_fit(lm, fit), errors)


def _with_fit(lm: LatencyModel, fit: dict[str, Any]) -> LatencyModel:
    return LatencyModel.from_dict({**lm.to_dict(), "fit": fit})


def splitwise_points(gpu: str, tp: int) -> Any:
    """Splitwise rows for Llama-2-70B on ``gpu`` at ``tp`` (a pandas DataFrame)."""
    df = pr.splitwise_table()
    return df[(df["gpu"] == gpu) & (df["tensor_parallel"] == tp)]


def predict_splitwise(lm: LatencyModel, row: Any) -> tuple[float, float]:
    """Model's (prompt_time, token_time) for one Splitwise row.

    Prompt: one iteration prefilling ``batch x prompt`` tokens. Token: a decode iteration of
    ``batch`` sequences at the mean KV length ``prompt + token_size / 2``.
    """
    b, p, t = int(row.batch_size), int(row.prompt_size), int(row.token_size)
    prompt = lm.step_time(b * p, b, 0, b * p * (p + 1) / 2)
    token = lm.step_time(b, b, int(b * (p + t / 2)), 0.0)
    return prompt, token


def _splitwise_check(lm: LatencyModel, errors: dict[str, Any]) -> dict[str, Any]:
    rows = splitwise_points(lm.gpu, lm.tp)
    pred = np.array([predict_splitwise(lm, r) for r in rows.itertuples()])
    errors["splitwise_prompt_time"] = pr.rel_errors(pred[:, 0], rows["prompt_time"].to_numpy())
    errors["splitwise_token_time"] = pr.rel_errors(pred[:, 1], rows["token_time"].to_numpy())
    gap = float(np.median(rows["token_time"].to_numpy() - pred[:, 1]))
    return {"splitwise_overhead_gap_s": gap}


def fit_all(write: bool = False, path: str | Path | None = None) -> list[FitReport]:
    """Fit every shipped pair; with ``write=True`` rewrite ``coefficients.json`` (or ``path``)."""
    reports = [fit_pair(m, g, tp) for m, g, tp in shipped_pairs()]
    if write:
        write_coefficients(reports, path)
    return reports


def coefficients_document(reports: list[FitReport]) -> dict[str, Any]:
    """The ``coefficients.json`` document for ``reports``."""
    return {
        "format": FORMAT_VERSION,
        "generated_by": "servoir.hardware.fit.fit_all",
        "pairs": {r.key: r.coefficients for r in reports},
    }


def write_coefficients(reports: list[FitReport], path: str | Path | None = None) -> Path:
    """Write ``coefficients.json`` (default: the packaged file) and return its path."""
    if path is None:
        path = Path(str(resources.files("servoir.hardware").joinpath(COEFFICIENTS_FILE)))
    path = Path(path)
    path.write_text(json.dumps(coefficients_document(reports), indent=1) + "\n")
    return path


PROFILE_COLUMNS = ("num_tokens", "num_seqs", "decode_kv_tokens", "step_time_s")


def _read_profile_csv(path: Path) -> np.ndarray:
    """Rows of (num_tokens, num_seqs, decode_kv_tokens, prefill_attn_work, step_time_s)."""
    name = str(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise InputError(f"cannot read profile: {exc}", file=name) from None
    with handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        for col in PROFILE_COLUMNS:
            if col not in header:
                raise InputError(f"missing column; need {', '.join(PROFILE_COLUMNS)} "
                                 "(optional prefill_attn_work)", file=name, line=1, field=col)  # fmt: skip
        cols = [*PROFILE_COLUMNS[:3], "prefill_attn_work", PROFILE_COLUMNS[3]]
        idx = {c: header.index(c) for c in cols if c in header}
        rows = []
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not v.strip() for v in rec):
                continue
            rows.append([_cell(rec, idx, c, name, lineno) for c in cols])
    if len(rows) < 3:
        raise InputError(f"need at least 3 measurement rows, got {len(rows)}", file=name)
    return np.array(rows, dtype=float)


def _cell(rec: list[str], idx: dict[str, int], col: str, name: str, lineno: int) -> float:
    if col not in idx:
        return 0.0
    i = idx[col]
    text = rec[i].strip() if i < len(rec) else ""
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"expected a number, got {text!r}", file=name, line=lineno,
                         field=col) from None  # fmt: skip
    positive = col in ("num_tokens", "num_seqs", "step_time_s")
    if not math.isfinite(v) or v < 0 or (positive and v <= 0):
        kind = "positive" if positive else "non-negative"
        raise InputError(f"must be a finite {kind} number, got {text!r}", file=name,
                         line=lineno, field=col)  # fmt: skip
    if col in ("num_tokens", "num_seqs", "decode_kv_tokens") and v != int(v):
        raise InputError(f"must be an integer, got {text!r}", file=name, line=lineno, field=col)
    return v


def _data_knots(n: np.ndarray) -> list[int]:
    """Knots from ``TOKEN_KNOTS`` inside the data's token range, each segment holding data."""
    lo, hi = int(n.min()), int(n.max())
    cand = sorted({lo, hi, *(k for k in TOKEN_KNOTS if lo < k < hi)})
    knots = [cand[0]]
    for k in cand[1:]:
        if ((n > knots[-1]) & (n <= k)).any():
            knots.append(k)
    if len(knots) < 2:
        raise InputError("profile needs at least two distinct num_tokens values",
                         field="num_tokens")  # fmt: skip
    return knots


def fit_profile_csv(
    path: str | Path, model: str = "custom", gpu: str = "custom", tp: int = 1
) -> FitReport:
    """Fit a latency model to whole-iteration measurements in a CSV file.

    Format: a header line, then one row per measured iteration, comma separated::

        num_tokens,num_seqs,decode_kv_tokens,prefill_attn_work,step_time_s
        1,1,1024,0,0.0071
        2048,1,0,2098176,0.152

    ``num_tokens`` counts every token processed (prefill plus one per decode sequence),
    ``num_seqs`` the sequences in the batch, ``decode_kv_tokens`` the KV tokens the decode
    sequences attend, ``prefill_attn_work`` (optional, default 0) the causal query-key pairs of
    the prefill chunks (:func:`servoir.hardware.prefill_attention_work`), ``step_time_s`` the
    measured iteration time in seconds. Vary ``num_tokens`` across the range you will
    simulate; the fit is non-negative least squares on relative error, with ``token_time``
    knots at the ``TOKEN_KNOTS`` inside the data's range (``overhead_s`` is folded into
    ``token_time``, so it is 0). Bad rows raise ``InputError`` naming file, line and column.
    """
    from scipy.optimize import nnls

    path = Path(path)
    data = _read_profile_csv(path)
    n, seqs, kv, work, y = data.T
    knots = _data_knots(n)
    kn = np.array(knots, dtype=float)
    hats = np.empty((len(n), len(knots)))
    for j in range(len(knots)):
        e = np.zeros(len(knots))
        e[j] = 1.0
        hats[:, j] = _piecewise(kn, e, n)
    x = np.c_[hats, seqs, kv, work]
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
    coef, _ = nnls(x / scale / y[:, None], np.ones(len(y)))
    coef = coef / scale
    tt = np.maximum.accumulate(coef[: len(knots)])
    lm = LatencyModel(model=model, gpu=gpu, tp=tp, token_knots=tuple(knots),
                      token_time_s=tuple(float(v) for v in tt), seq_coef_s=float(coef[-3]),
                      kv_coef_s=float(coef[-2]), prefill_attn_coef_s=float(coef[-1]),
                      overhead_s=0.0, source=f"fit:profile_csv:{path.name}")  # fmt: skip
    pred = np.array([lm.step_time(int(a), int(b), int(c), float(d)) for a, b, c, d in data[:, :4]])
    errors = {"profile": pr.rel_errors(pred, y)}
    return FitReport(_with_fit(lm, {"errors": errors}), errors)


def main() -> None:
    """Refit every shipped pair, rewrite ``coefficients.json`` and print the errors."""
    reports = fit_all(write=True)
    for r in reports:
        errs = "  ".join(f"{k}={v['mean_abs_rel_err']:.3f}/{v['max_abs_rel_err']:.3f}"
                         for k, v in r.errors.items())  # fmt: skip
        print(f"{r.key:28s} {r.latency.source:60s} {errs}")


if __name__ == "__main__":
    main()

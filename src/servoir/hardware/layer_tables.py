"""Latency models from per-layer tables profiled with vLLM 0.19 (LLMServingSim's profiler format).

A profile folder ``perf/bf16/tp<N>/`` holds, in microseconds per layer per GPU for one engine
step: ``dense.csv`` (token-parallel ops vs tokens), ``per_sequence.csv`` (lm_head, sampler vs
sequences), ``attention.csv`` (FlashAttention over prefill chunk, cached prefill KV, decode count
and decode KV) and, for MoE models, ``moe.csv`` (the expert block vs tokens and activated
experts). One iteration of a model with ``L`` layers is composed as vLLM runs it:

    embedding(T) + L * [2 layernorm + qkv [+ qk_norm] + rope + attention + o_proj
                        + MLP (gate_up + act + down) or MoE + TP all-reduces]
    + final_layernorm(T) + lm_head(S) + sampler(S)

with ``T`` the tokens in the step and ``S`` its sequences. Token-parallel parts become the
piecewise-linear ``token_time(T)`` of :class:`~servoir.hardware.latency.LatencyModel` (knots at
the profiled token counts). Attention is fitted by least squares (relative error) on every
profiled shape, per regime (decode, prefill, mixed; see :func:`_attention_fit`): steps that mix
prefill chunks with decodes read the decode KV at their own rate (FlashAttention's varlen path
is slower there); the per-token part joins ``token_time``.
The per-sequence ops are fitted as ``overhead + a * S``.

Communication not in the tables (they profile one GPU with TP-sharded shapes): two ring
all-reduces per layer for TP > 1, and for expert parallelism an all-gather (dispatch) and a
reduce-scatter (combine) of the step's hidden states across the ranks, each
``latency + bytes / bandwidth`` on the GPU's interconnect.
Inputs are the tables and the hardware spec only; no measured request timing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servoir.errors import InputError
from servoir.hardware.gpus import GpuSpec
from servoir.hardware.latency import LatencyModel
from servoir.hardware.models import ModelSpec

US = 1e-6


def _read(path: Path) -> dict[str, np.ndarray]:
    from servoir.validation.bundle import read_csv  # csv/xz reader; no pandas needed

    rows = read_csv(path)
    if not rows:
        raise InputError("empty profile table", file=str(path))
    cols: dict[str, list[object]] = {k: [] for k in rows[0]}
    for r in rows:
        for k, v in r.items():
            cols[k].append(v)
    out: dict[str, np.ndarray] = {}
    for k, v in cols.items():
        try:
            out[k] = np.array(v, dtype=np.float64)
        except ValueError:
            out[k] = np.array(v, dtype=object)
    return out


def _op_curve(dense: dict[str, np.ndarray], op: str, knots: np.ndarray) -> np.ndarray:
    m = dense["layer"] == op
    if not m.any():
        raise InputError(f"profile has no '{op}' rows", field="dense.layer")
    x, y = dense["tokens"][m], dense["time_us"][m]
    order = np.argsort(x)
    return np.interp(knots, x[order], y[order])


def _lsq_rel(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares on relative error; returns (coefficients, mean |relative error|)."""
    w = 1 / t
    coef, *_ = np.linalg.lstsq(x * w[:, None], t * w, rcond=None)
    return coef, float(np.mean(np.abs(x @ coef / t - 1)))


def _attention_fit(att: dict[str, np.ndarray], max_tokens: int) -> dict[str, float]:
    """Attention per layer (microseconds), fitted per regime on the shapes a step can have.

    Decode (no prefill chunk): ``const + per_seq * n + kv * K`` (K = decode KV tokens, n =
    decodes). Prefill (no decodes): ``const + prefill_const + per_token * c + work * W`` (W =
    query-key pairs of the chunk). Mixed: the prefill part plus the decode part at its own KV
    rate plus a fixed extra.
    """
    pc, kp, nd, kd, t = (att[k] for k in ("prefill_chunk", "kv_prefill", "n_decode",
                                          "kv_decode", "time_us"))
    ok = (t > 0) & (pc <= max_tokens)
    kv = nd * (kd + 1)
    work = pc * kp + pc * (pc + 1) / 2
    dec = ok & (pc == 0) & (nd >= 1) & (kd >= 64)
    (c_d, s_d, b_d), e_d = _lsq_rel(np.column_stack([np.ones(dec.sum()), nd[dec], kv[dec]]),
                                    t[dec])
    pre = ok & (nd == 0) & (pc >= 64)
    (c_p, p_t, w_p), e_p = _lsq_rel(np.column_stack([np.ones(pre.sum()), pc[pre], work[pre]]),
                                    t[pre])
    mix = ok & (pc >= 64) & (nd >= 1) & (kd >= 64)
    base = c_p + p_t * pc[mix] + w_p * work[mix] + s_d * nd[mix]
    (m0, b_m), e_m = _lsq_rel(np.column_stack([np.ones(mix.sum()), kv[mix]]), t[mix] - base)
    resid = base + m0 + b_m * kv[mix]
    e_m = float(np.mean(np.abs(resid / t[mix] - 1)))
    return {"const": c_d, "per_seq": s_d, "kv": b_d, "prefill_const": c_p - c_d,
            "per_token": p_t, "work": w_p, "mixed": m0, "kv_mixed": b_m,
            "err_decode": e_d, "err_prefill": e_p, "err_mixed": e_m,
            "n": int(dec.sum() + pre.sum() + mix.sum())}


def _linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.column_stack([np.ones_like(x), x])
    (c0, c1), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(c0), float(c1)


def fit_layer_tables(perf_dir: Path, spec: ModelSpec, gpu: GpuSpec, tp: int, ep: int = 1,
                     max_tokens: int = 2048) -> LatencyModel:
    """A :class:`LatencyModel` for ``spec`` on ``gpu`` at ``tp`` from a profile folder.

    ``ep`` > 1 models expert parallelism across that many ranks (MoE models only).
    """
    dense = _read(perf_dir / "dense.csv")
    per_seq = _read(perf_dir / "per_sequence.csv")
    att = _read(perf_dir / "attention.csv")
    grid = np.unique(dense["tokens"])
    knots = grid[grid <= max(max_tokens, 1)].astype(int)
    if len(knots) < 2:
        raise InputError("dense table needs two token counts", file=str(perf_dir))
    k = knots.astype(np.float64)
    ops = ["layernorm", "layernorm", "qkv_proj", "rotary_emb", "o_proj"]
    if (dense["layer"] == "qk_norm").any():
        ops.append("qk_norm")
    layer = sum(_op_curve(dense, op, k) for op in ops)
    if spec.is_moe:
        layer = layer + _moe_curve(_read(perf_dir / "moe.csv"), spec, k, ep)
        # vLLM's default expert-parallel exchange without DeepEP: all-gather the step's hidden
        # states across the ranks (dispatch) and reduce-scatter the outputs (combine); each
        # rank receives the other ranks' tokens, (ep - 1) * T * hidden * 2 bytes, per phase.
        layer = layer + 2 * (gpu.collective_latency_s
                             + (ep - 1) * k * spec.hidden_size * 2
                             / gpu.interconnect_bytes_per_s) / US
    else:
        layer = layer + sum(_op_curve(dense, op, k) for op in ("gate_up_proj", "act_fn",
                                                                   "down_proj"))
    if tp > 1:
        layer = layer + 2 * _collective_us(k * spec.hidden_size * 2, gpu, tp)
    a = _attention_fit(att, max_tokens)
    layer = layer + a["per_token"] * k
    once = _op_curve(dense, "embedding", k) + _op_curve(dense, "final_layernorm", k)
    token_us = spec.num_layers * layer + once
    token_us = np.maximum.accumulate(token_us)  # keep token_time non-decreasing
    s = per_seq["sequences"]
    head = np.zeros_like(s)
    for op in ("lm_head", "sampler"):
        m = per_seq["layer"] == op
        head[m] = per_seq["time_us"][m]
    seq_x = np.unique(s)
    seq_y = np.array([head[s == v].sum() for v in seq_x])
    head0, head1 = _linear(seq_x, seq_y)
    L = spec.num_layers
    alpha = _skew_alpha(perf_dir)
    return LatencyModel(
        model=spec.name, gpu=gpu.name, tp=tp,
        token_knots=tuple(int(v) for v in knots),
        token_time_s=tuple(float(v) * US for v in token_us),
        seq_coef_s=(L * a["per_seq"] + head1) * US,
        kv_coef_s=max(L * a["kv"], 0.0) * US,
        prefill_attn_coef_s=max(L * a["work"], 0.0) * US,
        overhead_s=(L * a["const"] + head0) * US,
        mixed_kv_coef_s=max(L * a["kv_mixed"], 0.0) * US,
        mixed_overhead_s=L * a["mixed"] * US,
        prefill_overhead_s=L * a["prefill_const"] * US,
        skew_alpha=alpha,
        source="fit:vllm0.19_layer_tables",
        fit={"attention_err_decode": a["err_decode"], "attention_err_prefill": a["err_prefill"],
             "attention_err_mixed": a["err_mixed"], "attention_points": a["n"],
             "attention_per_token_us": a["per_token"], "profile": perf_dir.name, "ep": ep},
    )


def _skew_alpha(perf_dir: Path) -> float:
    """The profiler's decode-skew coefficient: mean of its per-bucket fits for pure-decode
    shapes (weighted by samples), 0 where its ``meta.yaml`` disables the skew fit."""
    meta = perf_dir.parent / "meta.yaml"
    if meta.exists():
        import yaml

        try:
            cfg = yaml.safe_load(meta.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", file=str(meta),
                             line=mark.line + 1 if mark else None) from None
        if not (cfg.get("skew_fit") or {}).get("enabled", False):
            return 0.0
    path = perf_dir / "skew_fit.csv"
    if not path.exists():
        return 0.0
    t = _read(path)
    m = (t["pc"] == 0) & (t["kp_label"] == "kp=0")
    if not m.any():
        return 0.0
    w = t["n_samples"][m]
    return float((t["alpha"][m] * w).sum() / w.sum())


def _collective_us(bytes_: np.ndarray, gpu: GpuSpec, ranks: int) -> np.ndarray:
    """One ring collective over ``ranks`` GPUs: latency + 2 (r-1)/r of the bytes over the link."""
    return (gpu.collective_latency_s
            + 2 * (ranks - 1) / ranks * bytes_ / gpu.interconnect_bytes_per_s) / US


def _moe_curve(moe: dict[str, np.ndarray], spec: ModelSpec, tokens: np.ndarray,
               ep: int, routed: np.ndarray | None = None) -> np.ndarray:
    """The MoE block per layer on one rank: its local experts over the tokens routed to them.

    With ``ep`` ranks each holds ``E / ep`` experts; the ``ep * T`` tokens of a step (every rank
    runs ``T``) make ``T * k`` local expert assignments in expectation, hitting
    ``E/ep * (1 - (1 - k/E)^(ep*T))`` distinct local experts (each token picks ``k`` of ``E``).
    The table is read at ``T`` tokens and that many activated experts (bilinear). ``routed``:
    the tokens of all ranks when they differ (default ``ep * T``).
    """
    e, k = spec.num_experts, spec.experts_per_token
    local = e / ep
    active = local * (1 - (1 - k / e) ** (ep * tokens if routed is None else routed))
    rows = np.unique(moe["activated_experts"])
    curves = []
    for r in rows:
        m = moe["activated_experts"] == r
        x, y = moe["tokens"][m], moe["time_us"][m]
        o = np.argsort(x)
        curves.append(np.interp(tokens, x[o], y[o]))
    table = np.array(curves)  # [activated rows, tokens]
    out = np.empty_like(tokens)
    for j in range(len(tokens)):
        out[j] = np.interp(active[j], rows, table[:, j])
    return out


class TableLatency:
    """A :class:`LatencyModel` for pure-decode steps plus table lookups for steps with prefill.

    Pure-decode iterations (no prefill work) use the fitted linear model exactly (the engine's
    decode stretches need step time linear in decode KV). Iterations with prefill chunks are
    single events, so they may cost any function of their shape: attention is read from the
    profile as ``P(chunk tokens, cached prefill KV)`` (pure prefill rows) plus
    ``D(decodes, mean decode KV)``, the extra the decodes cost inside a mixed (varlen) batch,
    both interpolated bilinearly on the profile grid (clamped at its edges). The decode count
    of a mixed step is ``sequences - 1`` (one prefill chunk; a second chunk is rare).
    """

    def __init__(self, base: LatencyModel, dense_knots: np.ndarray, dense_us: np.ndarray,
                 layers: int, head: tuple[float, float], p_axes: tuple[np.ndarray, np.ndarray],
                 p_us: np.ndarray, d_axes: tuple[np.ndarray, np.ndarray], d_us: np.ndarray,
                 dec_lines: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.base = base
        self.model, self.gpu, self.tp = base.model, base.gpu, base.tp
        self.kv_coef_s = base.kv_coef_s
        self.skew_alpha = base.skew_alpha
        self.skew_time = base.skew_time
        self.source = base.source + "+attention_tables"
        self.fit = base.fit
        self._dense_knots = dense_knots.astype(np.float64)
        self._dense_us = dense_us
        self._layers = layers
        self._head = head
        self._p_axes, self._p_us = p_axes, p_us
        self._d_axes, self._d_us = d_axes, d_us  # per chunk size: [(pc, axes, grid)]
        # Pure-decode attention per profiled decode count n: c0[n] + c1[n] * K (microseconds
        # per layer, K = attended decode KV tokens), linear in n between the profiled counts.
        self._dec = dec_lines
        self._moe: tuple[dict[str, np.ndarray], ModelSpec, int] | None = None
        self._kv_memo: dict[int, float] = {}  # kv_coef by batch size
        self._ep_memo: dict[tuple[int, int], float] = {}  # ep_moe_adjust by (own, all) tokens

    def ep_moe_adjust(self, own_tokens: int, all_tokens: int) -> float:
        """Seconds to add to a rank's step when the expert-parallel ranks run unequal token
        counts (0 when they are equal, or without expert parallelism).

        :meth:`step_time` charges a rank's MoE blocks as if every rank ran ``own_tokens``. With
        vLLM's default exchange every rank's local experts work on the tokens of *all* ranks
        (``all_tokens``), i.e. ``all_tokens / ep`` tokens' worth of local assignments; a lock-step
        group (the step lasts as long as its slowest rank) passes the ranks' total here.
        """
        if self._moe is None or own_tokens <= 0:
            return 0.0
        key = (own_tokens, all_tokens)  # a lock-step group asks this every step: memoised
        out = self._ep_memo.get(key)
        if out is None:
            moe, spec, ep = self._moe
            fair = _moe_curve(moe, spec, np.array([all_tokens / ep]), ep,
                              np.array([float(all_tokens)]))[0]
            own = _moe_curve(moe, spec, np.array([float(own_tokens)]), ep)[0]
            out = self._ep_memo[key] = self._layers * float(fair - own) * US
        return out

    def _dec_line(self, n: int) -> tuple[float, float]:
        ns, c0, c1 = self._dec  # type: ignore[misc]
        return float(np.interp(n, ns, c0)), float(np.interp(n, ns, c1))

    def kv_coef(self, num_seqs: int) -> float:
        """Seconds per attended decode-KV token of a pure-decode step of ``num_seqs``."""
        if self._dec is None:
            return self.kv_coef_s
        out = self._kv_memo.get(num_seqs)  # every decode stretch asks: memoised per batch size
        if out is None:
            out = self._kv_memo[num_seqs] = self._layers * self._dec_line(num_seqs)[1] * US
        return out

    def _decode_extra(self, pc: float, nd: int, kd: float) -> float:
        """The decodes' extra in a mixed step, linear between the profiled chunk sizes."""
        tables = self._d_us
        pcs = self._d_axes
        if pc <= pcs[0]:
            return _bilinear(tables[0][0], tables[0][1], nd, kd)
        if pc >= pcs[-1]:
            return _bilinear(tables[-1][0], tables[-1][1], nd, kd)
        i = int(np.searchsorted(pcs, pc, side="right")) - 1
        f = (pc - pcs[i]) / (pcs[i + 1] - pcs[i])
        lo = _bilinear(tables[i][0], tables[i][1], nd, kd)
        hi = _bilinear(tables[i + 1][0], tables[i + 1][1], nd, kd)
        return (1 - f) * lo + f * hi

    def token_time(self, num_tokens: int) -> float:
        """Token-parallel time of the base model."""
        return self.base.token_time(num_tokens)

    def p2p_time(self, num_tokens: int) -> float:
        """Pipeline hop of the base model."""
        return self.base.p2p_time(num_tokens)

    def step_time(self, num_tokens: int, num_seqs: int, decode_kv_tokens: int,
                  prefill_attn_work: float) -> float:
        """Seconds of one iteration."""
        if prefill_attn_work <= 0:
            if self._dec is None or num_seqs <= 0:
                return self.base.step_time(num_tokens, num_seqs, decode_kv_tokens, 0.0)
            c0, c1 = self._dec_line(num_seqs)
            return (self._dense(num_tokens) + self._head[0] + self._head[1] * num_seqs
                    + self._layers * (c0 + c1 * decode_kv_tokens)) * US
        nd = num_seqs - 1 if decode_kv_tokens > 0 else 0
        pc = max(num_tokens - nd, 1)
        kp = max((prefill_attn_work - pc * (pc + 1) / 2) / pc, 0.0)
        attn = _bilinear(self._p_axes, self._p_us, pc, kp)
        if nd > 0:
            attn += self._decode_extra(pc, nd, decode_kv_tokens / nd)
        head = self._head[0] + self._head[1] * num_seqs
        return (self._dense(num_tokens) + self._layers * attn + head) * US

    def _dense(self, num_tokens: int) -> float:
        """Token-parallel microseconds (dense ops, norms, communication) of a step."""
        k, u = self._dense_knots, self._dense_us
        if num_tokens > k[-1]:  # extend the last segment
            return float(u[-1] + (u[-1] - u[-2]) / (k[-1] - k[-2]) * (num_tokens - k[-1]))
        return float(np.interp(num_tokens, k, u))


def _bilinear(axes: tuple[np.ndarray, np.ndarray], values: np.ndarray, x: float,
              y: float) -> float:
    ax, ay = axes
    x = min(max(x, ax[0]), ax[-1])
    y = min(max(y, ay[0]), ay[-1])
    i = min(max(int(np.searchsorted(ax, x, side="right")) - 1, 0), len(ax) - 2)
    j = min(max(int(np.searchsorted(ay, y, side="right")) - 1, 0), len(ay) - 2)
    fx = (x - ax[i]) / (ax[i + 1] - ax[i])
    fy = (y - ay[j]) / (ay[j + 1] - ay[j])
    v = values
    return float((1 - fx) * (1 - fy) * v[i, j] + fx * (1 - fy) * v[i + 1, j]
                 + (1 - fx) * fy * v[i, j + 1] + fx * fy * v[i + 1, j + 1])


def _grid(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                 np.ndarray]:
    """Scattered (x, y, z) -> full grid on the observed axes; holes filled from the nearest
    observed cell along y, then along x (the profile grids are products with a few holes)."""
    ax, ay = np.unique(x), np.unique(y)
    g = np.full((len(ax), len(ay)), np.nan)
    sums = np.zeros_like(g)
    cnt = np.zeros_like(g)
    np.add.at(sums, (np.searchsorted(ax, x), np.searchsorted(ay, y)), z)
    np.add.at(cnt, (np.searchsorted(ax, x), np.searchsorted(ay, y)), 1)
    ok = cnt > 0
    g[ok] = sums[ok] / cnt[ok]
    for arr in (g, g.T):
        for row in arr:
            have = np.flatnonzero(~np.isnan(row))
            if len(have):
                row[:] = np.interp(np.arange(len(row)), have, row[have])
    return (ax.astype(np.float64), ay.astype(np.float64)), g


def table_latency(perf_dir: Path, spec: ModelSpec, gpu: GpuSpec, tp: int, ep: int = 1,
                  max_tokens: int = 2048) -> TableLatency:
    """The fitted linear model plus the profile's attention tables (see :class:`TableLatency`)."""
    base = fit_layer_tables(perf_dir, spec, gpu, tp, ep, max_tokens)
    att = _read(perf_dir / "attention.csv")
    pc, kp, nd, kd, t = (att[k] for k in ("prefill_chunk", "kv_prefill", "n_decode",
                                          "kv_decode", "time_us"))
    pre = (nd == 0) & (pc > 0)
    p_axes, p_us = _grid(pc[pre], kp[pre], t[pre])
    # Decode extra inside mixed batches: t(pc, 0, nd, kd) - P(pc, 0), averaged over chunk sizes
    # a step typically carries (a quarter of the budget and up).
    # Decode extra inside mixed batches, t(pc, 0, nd, kd) - P(pc, 0), one (nd, kd) grid per
    # profiled chunk size (interpolated linearly in the chunk size).
    mix = (pc >= 16) & (kp == 0) & (nd > 0) & (kd > 0)
    extra = t[mix] - np.array([_bilinear(p_axes, p_us, c, 0.0) for c in pc[mix]])
    d_pcs, d_tables = [], []
    for c in np.unique(pc[mix]):
        m = pc[mix] == c
        if len(np.unique(nd[mix][m])) > 1 and len(np.unique(kd[mix][m])) > 1:
            d_pcs.append(float(c))
            d_tables.append(_grid(nd[mix][m], kd[mix][m], extra[m]))
    d_axes, d_us = np.array(d_pcs), d_tables
    # Token-parallel (dense) time without the attention's per-token term.
    knots = np.array(base.token_knots, dtype=np.float64)
    attn_per_token = base.fit["attention_per_token_us"]
    dense_us = np.array(base.token_time_s) / US - spec.num_layers * attn_per_token * knots
    per_seq = _read(perf_dir / "per_sequence.csv")
    s = per_seq["sequences"]
    seq_x = np.unique(s)
    seq_y = np.array([per_seq["time_us"][s == v].sum() for v in seq_x])
    lat = TableLatency(base, knots, dense_us, spec.num_layers, _linear(seq_x, seq_y),
                       p_axes, p_us, d_axes, d_us, _decode_lines(att))
    if spec.is_moe and ep > 1:
        lat._moe = (_read(perf_dir / "moe.csv"), spec, ep)
    return lat


def _decode_lines(att: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pure-decode attention per profiled decode count ``n``: ``c0 + c1 * K`` (K = n (kv + 1)
    attended tokens), least squares on relative error over the KV lengths a serving step has
    (128 to 8,192 per sequence). One line per ``n`` follows the table where a single plane
    over all ``n`` cannot (it misses mid-sized batches by up to 13%), and stays linear in K
    for a fixed batch, as the engine's decode stretches need."""
    pc, nd, kd, t = (att[k] for k in ("prefill_chunk", "n_decode", "kv_decode", "time_us"))
    ok = (pc == 0) & (nd >= 1) & (kd >= 128) & (kd <= 8192) & (t > 0)
    ns, c0, c1 = [], [], []
    for n in np.unique(nd[ok]):
        m = ok & (nd == n)
        if len(np.unique(kd[m])) < 2:
            continue
        (a, b), _ = _lsq_rel(np.column_stack([np.ones(m.sum()), n * (kd[m] + 1)]), t[m])
        ns.append(float(n))
        c0.append(max(float(a), 0.0))
        c1.append(max(float(b), 0.0))
    return np.array(ns), np.array(c0), np.array(c1)

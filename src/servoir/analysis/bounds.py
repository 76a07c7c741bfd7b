"""Hindsight lower bound on total latency in the unit-time model: a time-indexed IP (HiGHS).

The model is Jaillet et al.'s (:mod:`servoir.sim.unit_time`). ``x[i, t] = 1`` when request
``i`` starts at step ``t``; ``sum_t x[i, t] = 1``; ``x[i, t] = 0`` for ``t < a_i``. At every step
``tau`` memory is at most ``M``: ``sum_i sum_{t < tau <= t + o_i} x[i, t] (s_i + tau - t) <= M``.
Minimise ``sum_i sum_t x[i, t] (t + o_i - a_i)``.

Start windows. An optimal schedule never leaves a step with nothing running after the last
arrival while work remains (shifting every later start one step left stays feasible and lowers
latency), so completions are at most ``max_i a_i + sum_i o_i``. With a feasible schedule of
total latency ``UB`` (the best simulated policy), each request's latency is at most
``UB - sum_{j != i} o_j``, which bounds its start by ``a_i + UB - sum_j o_j``. Both cuts keep at
least one optimal schedule.

What is reported. ``lower_bound_total_latency`` is the optimum when HiGHS proves optimality
(relative gap 0), otherwise HiGHS's best dual bound rounded up (latencies are integers), and never
below the trivial ``sum_i o_i``. Instances whose IP has more than ``max_ip_nonzeros`` nonzeros are
solved as the LP relaxation (a valid, weaker bound); beyond ``max_lp_nonzeros`` the trivial bound
is returned. Every path gives a valid lower bound on every policy simulated in the unit-time
model (``tests/unit/bounds``: a hypothesis property test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from servoir.highs import quiet_highs
from servoir.sim.unit_time import UnitInstance


@dataclass(frozen=True)
class Bound:
    """A lower bound on total latency and how it was obtained."""

    lower_bound_total_latency: float
    optimal: bool
    solver_gap: float
    incumbent: float
    method: str  # "ip", "lp" or "trivial"
    num_vars: int
    solve_s: float


def _windows(inst: UnitInstance, upper: float | None) -> tuple[np.ndarray, np.ndarray]:
    a, o = inst.arrival, inst.output
    last_finish = int(a.max() + o.sum())
    hi = last_finish - o  # latest start
    if upper is not None and math.isfinite(upper):
        hi = np.minimum(hi, a + int(math.floor(upper)) - int(o.sum()))
    return a, np.maximum(hi, a)


def build_model(inst: UnitInstance, upper: float | None = None) -> dict[str, Any]:
    """Columns (one per feasible start), costs, and the memory/assignment rows in CSC form."""
    a, s, o = inst.arrival, inst.prompt, inst.output
    lo, hi = _windows(inst, upper)
    n = len(inst)
    cols_i = np.concatenate([np.full(hi[i] - lo[i] + 1, i) for i in range(n)])
    cols_t = np.concatenate([np.arange(lo[i], hi[i] + 1) for i in range(n)])
    cost = (cols_t + o[cols_i] - a[cols_i]).astype(np.float64)
    t0 = int(lo.min()) + 1
    num_steps = int((hi + o).max()) - t0 + 1
    # Column (i, t) touches assignment row i and memory rows tau = t+1 .. t+o_i (value s_i + j).
    lengths = o[cols_i] + 1
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz = int(start[-1])
    index = np.empty(nnz, dtype=np.int64)
    value = np.empty(nnz, dtype=np.float64)
    index[start[:-1]] = cols_i
    value[start[:-1]] = 1.0
    # Memory entries, vectorised over columns: offsets j = 1..o_i.
    pos = np.arange(nnz) - np.repeat(start[:-1], lengths)  # 0 for the assignment entry
    mem = pos > 0
    col_of = np.repeat(np.arange(len(cols_i)), lengths)
    j = pos[mem]
    index[mem] = n + (cols_t[col_of[mem]] + j - t0)
    value[mem] = s[cols_i[col_of[mem]]] + j
    return {"num_col": len(cols_i), "num_row": n + num_steps, "n": n, "cost": cost,
            "start": start, "index": index, "value": value, "memory": float(inst.memory),
            "cols_i": cols_i, "cols_t": cols_t}


def _highs() -> Any:
    return quiet_highs()


def _solve(m: dict[str, Any], integer: bool, time_limit: float) -> tuple[float, float, bool]:
    """Returns (dual bound, incumbent or inf, optimal)."""
    import highspy

    h = _highs()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    nc, nr, n = m["num_col"], m["num_row"], m["n"]
    lp.num_col_, lp.num_row_ = nc, nr
    lp.col_cost_ = m["cost"]
    lp.col_lower_ = np.zeros(nc)
    lp.col_upper_ = np.ones(nc)
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(nr - n, -np.inf)])
    lp.row_upper_ = np.concatenate([np.ones(n), np.full(nr - n, m["memory"])])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = m["start"].astype(np.int32)
    lp.a_matrix_.index_ = m["index"].astype(np.int32)
    lp.a_matrix_.value_ = m["value"]
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * nc
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    optimal = status == highspy.HighsModelStatus.kOptimal
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    inc = float(info.objective_function_value) if has_sol else math.inf
    if not integer:
        return (inc if optimal else -math.inf), math.inf, False
    return float(info.mip_dual_bound), inc, optimal


def lower_bound(inst: UnitInstance, *, upper: float | None = None, time_limit: float = 60.0,
                max_ip_nonzeros: int = 3_000_000, max_lp_nonzeros: int = 30_000_000) -> Bound:
    """The hindsight lower bound on total latency of ``inst`` (see the module docstring).

    ``upper`` is the total latency of a known feasible schedule (it tightens start windows and
    is the incumbent when the solver finds none).
    """
    import time

    t_start = time.perf_counter()
    trivial = float(inst.output.sum())
    est_nnz = int(sum((_windows(inst, upper)[1] - inst.arrival + 1) * (inst.output + 1)))
    incumbent = math.inf if upper is None else float(upper)
    if est_nnz > max_lp_nonzeros:
        return _finish(trivial, False, incumbent, "trivial", 0, t_start)
    m = build_model(inst, upper)
    if est_nnz > max_ip_nonzeros:
        dual, _, _ = _solve(m, integer=False, time_limit=time_limit)
        return _finish(max(trivial, _ceil(dual)), False, incumbent, "lp", m["num_col"], t_start)
    dual, inc, optimal = _solve(m, integer=True, time_limit=time_limit)
    incumbent = min(incumbent, inc)
    if optimal:
        return _finish(float(round(inc)), True, incumbent, "ip", m["num_col"], t_start)
    return _finish(max(trivial, _ceil(dual)), False, incumbent, "ip", m["num_col"], t_start)


def _ceil(x: float) -> float:
    return float(math.ceil(x - 1e-6)) if math.isfinite(x) else -math.inf


def _finish(lb: float, optimal: bool, incumbent: float, method: str, nvars: int,
            t_start: float) -> Bound:
    import time

    inc = incumbent if math.isfinite(incumbent) else math.nan
    gap = 0.0 if optimal else ((inc - lb) / inc if inc and math.isfinite(inc) else math.nan)
    return Bound(lb, optimal, max(gap, 0.0) if gap == gap else gap, inc, method, nvars,
                 time.perf_counter() - t_start)


def compare_to_bound(inst: UnitInstance, policies: list[str], *, predictor: str | None = None,
                     time_limit: float = 60.0, seed: int = 0) -> dict[str, Any]:
    """``servoir bound``: each policy simulated in the unit-time model, and the lower bound.

    Policies read oracle lengths unless ``predictor`` (the ``--predictor`` shorthand) is given;
    the prediction column each reads follows its ``trusts`` (``servoir.workload.predictors``).
    """
    from servoir import registry
    from servoir.sim.unit_time import run_policy
    from servoir.workload.predictors import parse_predictor, predict

    kind, params = parse_predictor(predictor) if predictor else ("oracle", {})
    totals: dict[str, int] = {}
    for name in policies:
        trusts = getattr(registry.get("scheduling", name), "trusts", "none")
        p = predict(kind, params, inst.output, inst.prompt, seed=seed,
                    trusts=trusts if trusts != "none" else "point")
        res = run_policy(inst, name, predicted=p.trusted(trusts), seed=seed)
        totals[name] = res.total_latency(inst)
    b = lower_bound(inst, upper=min(totals.values()) if totals else None,
                    time_limit=time_limit)
    return {"lower_bound_total_latency": b.lower_bound_total_latency, "optimal": b.optimal,
            "solver_gap": b.solver_gap, "policies": totals, "method": b.method,
            "solve_s": b.solve_s}

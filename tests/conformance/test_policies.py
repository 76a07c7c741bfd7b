"""Conformance suite over every registered policy (sklearn ``parametrize_with_checks`` style).

The parameter lists come from ``registry.names(family)`` at collection time, so a newly
registered policy is checked without editing this file. Each guarantee a policy declares in
``info.guarantees`` maps to a named check in ``GUARANTEE_CHECKS``; a declared guarantee with no
check fails the suite (``test_every_declared_guarantee_has_a_check``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from servoir import registry
from servoir.config import load_config
from servoir.experiments.run import build, run
from servoir.policies.base import PolicyInfo, Router, Scheduler
from servoir.results import RunResult
from servoir.sim import Cluster, collect
from servoir.views import ReplicaTable, RequestView

from checks_routing import CHECKS as ROUTING_CHECKS
from checks_scheduling import CHECKS as SCHEDULING_CHECKS

ROUTERS = registry.names("routing")
SCHEDULERS = registry.names("scheduling")
FAMILY_OF = {"routing": ROUTERS, "scheduling": SCHEDULERS}
ALL_POLICIES = [(fam, name) for fam, names in FAMILY_OF.items() for name in names]
# Metadata checks (info, docstring, declared guarantees) cover every family, including ones
# whose behavioural checks live elsewhere, so a new family's unknown guarantee still fails here.
EVERY_POLICY = [(fam, name) for fam in registry.FAMILIES for name in registry.names(fam)]

SIZES = (1, 2, 3, 8, 17)
NUM_DECISIONS = 60
SEEDS = (0, 1, 12345)


def _ids(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{fam}:{name}" for fam, name in pairs]


# ----------------------------------------------------------------------------- factories


def make_policy(family: str, name: str) -> Any:
    """A default-constructed policy from the registry (as the config layer builds it)."""
    return registry.create(family, name)


def make_table(size: int, rng: np.random.Generator) -> tuple[ReplicaTable, dict[str, np.ndarray]]:
    """A random replica table with small integer loads (so ties occur) and its writable columns."""
    table, cols = ReplicaTable.allocate(size)
    cols["num_waiting"][:] = rng.integers(0, 4, size)
    cols["num_running"][:] = rng.integers(0, 4, size)
    cols["outstanding_tokens"][:] = rng.integers(0, 5, size) * 100
    cols["kv_used_frac"][:] = rng.random(size)
    return table, cols


def make_request(rid: int, rng: np.random.Generator) -> RequestView:
    """A request view with plausible, random fields."""
    return RequestView(rid, float(rid) * 0.1 + float(rng.random()), int(rng.integers(1, 4096)))


def _snapshot(table: ReplicaTable) -> dict[str, np.ndarray]:
    return {
        k: getattr(table, k).copy()
        for k in ("num_waiting", "num_running", "outstanding_tokens", "kv_used_frac")
    }


def route_sequence(router: Any, size: int, seed: int, n: int = NUM_DECISIONS) -> list[int]:
    """Decisions of ``router`` (already reset) on a seeded sequence of tables and requests."""
    data_rng = np.random.default_rng(10_000 + seed)
    out = []
    for rid in range(n):
        table, _ = make_table(size, data_rng)
        out.append(router.route(make_request(rid, data_rng), table))
    return out


def rank_sequence(scheduler: Any, seed: int, n: int = NUM_DECISIONS) -> list[float]:
    """Ranks of ``scheduler`` (already reset) on a seeded sequence of requests and times."""
    data_rng = np.random.default_rng(20_000 + seed)
    out = []
    now = 0.0
    for rid in range(n):
        req = make_request(rid, data_rng)
        now = max(now, req.arrival_at) + float(data_rng.random())
        out.append(scheduler.rank(req, now))
    return out


# ----------------------------------------------------------------------------- end-to-end runs

# Small but stressful: KV for 4000 tokens per instance while prompts + outputs reach 2560 and
# 300 requests arrive at 20 req/s, so queues build up and preemptions happen (asserted below).
RUN_OVERRIDES = [
    "workload.num_requests=300",
    "workload.rate=20",
    "workload.generator.lengths.kind=uniform",
    "hardware.model=llama-3-8b",
    "hardware.gpu=a100",
    "hardware.kv_tokens=4000",
    "cluster.instances=2",
    "seed=0",
]


def _policy_flag(family: str, name: str) -> dict[str, str]:
    keys = {"routing": "cluster.router.name", "scheduling": "instance.scheduler.name"}
    if family not in keys:
        pytest.fail(f"no end-to-end run for the {family} family yet")
    return {keys[family]: name}


@functools.cache
def run_plain(family: str, name: str) -> RunResult:
    """The workload through ``servoir.experiments.run.run`` with this policy."""
    return run(load_config(None, _policy_flag(family, name), RUN_OVERRIDES))


@functools.cache
def run_checked(family: str, name: str) -> RunResult:
    """The same run built as ``run()`` builds it, with engine invariants asserted every step."""
    cfg = load_config(None, _policy_flag(family, name), RUN_OVERRIDES)
    b = build(cfg)
    cluster = Cluster(
        b.workload,
        num_instances=cfg.cluster.instances,
        engine=b.engine,
        latency=b.latency,
        router=b.make_router(),
        make_scheduler=b.make_scheduler,
        max_model_len=b.max_model_len,
        seed=cfg.seed,
        max_concurrency=cfg.workload.max_concurrency,
        record_series=True,
        check=True,
    )
    cluster.run()
    return collect(cluster, {"slo": cfg.slo.model_dump()})


# ----------------------------------------------------------------------------- guarantee checks


def check_in_range(family: str, name: str) -> None:
    """A router returns a Python int in ``[0, size)`` for every size, including 1."""
    assert family == "routing", "'in_range' is a routing guarantee"
    for size in SIZES:
        for seed in SEEDS:
            p = make_policy(family, name)
            p.reset(size, np.random.default_rng(seed))
            for k in route_sequence(p, size, seed):
                assert isinstance(k, int) and not isinstance(k, bool), type(k)
                assert 0 <= k < size, (k, size)


def check_deterministic(family: str, name: str) -> None:
    """Two instances reset with equal rng states make the same decisions."""
    for seed in SEEDS:
        a, b = make_policy(family, name), make_policy(family, name)
        if family == "routing":
            for size in SIZES:
                a.reset(size, np.random.default_rng(seed))
                b.reset(size, np.random.default_rng(seed))
                assert route_sequence(a, size, seed) == route_sequence(b, size, seed)
        elif family == "scheduling":
            a.reset(np.random.default_rng(seed))
            b.reset(np.random.default_rng(seed))
            assert rank_sequence(a, seed) == rank_sequence(b, seed)
        else:
            pytest.fail(f"no 'deterministic' check for the {family} family yet")


def check_balanced_counts(family: str, name: str) -> None:
    """After every prefix of routed requests, per-replica counts differ by at most one."""
    assert family == "routing", "'balanced_counts' is a routing guarantee"
    for size in SIZES:
        p = make_policy(family, name)
        p.reset(size, np.random.default_rng(0))
        data_rng = np.random.default_rng(size)
        counts = np.zeros(size, dtype=np.int64)
        for rid in range(5 * size + 7):
            table, _ = make_table(size, data_rng)  # loads vary; counts must not care
            counts[p.route(make_request(rid, data_rng), table)] += 1
            assert counts.max() - counts.min() <= 1, (rid, counts.tolist())


def check_joins_shortest(family: str, name: str) -> None:
    """The chosen replica minimises the policy's own ``load(replicas)`` measure."""
    assert family == "routing", "'joins_shortest' is a routing guarantee"
    p = make_policy(family, name)
    assert callable(getattr(p, "load", None)), f"{name} declares joins_shortest but has no load()"
    for size in SIZES:
        p.reset(size, np.random.default_rng(size))
        data_rng = np.random.default_rng(100 + size)
        for rid in range(NUM_DECISIONS):
            table, _ = make_table(size, data_rng)
            k = p.route(make_request(rid, data_rng), table)
            load = np.asarray(p.load(table))
            assert load.shape == (size,)
            assert load[k] == load.min(), (k, load.tolist())


def check_work_conserving(family: str, name: str) -> None:
    """Invariants hold at every decision, and no instance idles while requests wait."""
    res = run_checked(family, name)  # raises AssertionError on any broken engine invariant
    h = res.headline()
    assert h["num_preemptions"] > 0, "workload too light to exercise preemption"
    waited = False
    for s in res.series:
        running, waiting = s.num_running, s.num_waiting  # every sample, even zero-length ones
        idle_with_work = (waiting > 0) & (running == 0)
        assert not idle_with_work.any(), f"idle while {int(waiting[idle_with_work][0])} wait"
        waited |= bool((waiting > 0).any())
    assert waited, "nobody ever waited: the check would pass vacuously"


def check_starvation_free(family: str, name: str) -> None:
    """Every request of a finite, preemption-heavy workload finishes."""
    res = run_plain(family, name)
    h = res.headline()
    assert h["num_preemptions"] > 0, "workload too light to exercise preemption"
    assert h["num_rejected"] == 0
    assert h["num_finished"] == h["num_requests"] == 300
    assert np.all(np.isfinite(res.requests["finish_at"]))


GUARANTEE_CHECKS: dict[str, Callable[[str, str], None]] = {
    "in_range": check_in_range,
    "balanced_counts": check_balanced_counts,
    "joins_shortest": check_joins_shortest,
    "work_conserving": check_work_conserving,
    "starvation_free": check_starvation_free,
    "deterministic": check_deterministic,
    # Family-specific checks live beside this file, one module per family.
    **ROUTING_CHECKS,
    **SCHEDULING_CHECKS,
}

DECLARED = [
    (fam, name, g) for fam, name in EVERY_POLICY for g in registry.get(fam, name).info.guarantees
]


# ----------------------------------------------------------------------------- all families


def test_registry_is_not_empty() -> None:
    assert ROUTERS and SCHEDULERS


@pytest.mark.parametrize(("family", "name"), EVERY_POLICY, ids=_ids(EVERY_POLICY))
def test_info(family: str, name: str) -> None:
    cls = registry.get(family, name)
    info = cls.info
    assert isinstance(info, PolicyInfo)
    assert info.name == name
    assert info.family == family
    assert isinstance(info.guarantees, tuple)
    assert all(isinstance(g, str) for g in info.guarantees)
    assert len(set(info.guarantees)) == len(info.guarantees), "duplicate guarantee"
    assert isinstance(info.deterministic, bool)


@pytest.mark.parametrize(("family", "name"), EVERY_POLICY, ids=_ids(EVERY_POLICY))
def test_docstring_sections(family: str, name: str) -> None:
    doc = registry.get(family, name).__doc__ or ""
    assert "Guarantees" in doc
    assert "Complexity" in doc


@pytest.mark.parametrize(("family", "name"), EVERY_POLICY, ids=_ids(EVERY_POLICY))
def test_every_declared_guarantee_has_a_check(family: str, name: str) -> None:
    unknown = set(registry.get(family, name).info.guarantees) - set(GUARANTEE_CHECKS)
    assert not unknown, f"{family} policy {name!r} declares guarantees with no check: {unknown}"


@pytest.mark.parametrize(
    ("family", "name", "guarantee"), DECLARED, ids=[f"{f}:{n}:{g}" for f, n, g in DECLARED]
)
def test_declared_guarantee(family: str, name: str, guarantee: str) -> None:
    check = GUARANTEE_CHECKS.get(guarantee)
    if check is None:
        pytest.fail(f"no check for guarantee {guarantee!r}")
    check(family, name)


@pytest.mark.parametrize(("family", "name"), ALL_POLICIES, ids=_ids(ALL_POLICIES))
def test_deterministic_when_declared(family: str, name: str) -> None:
    if not registry.get(family, name).info.deterministic:
        pytest.skip("declares info.deterministic=False")
    check_deterministic(family, name)


@pytest.mark.parametrize(("family", "name"), ALL_POLICIES, ids=_ids(ALL_POLICIES))
def test_params_round_trip(family: str, name: str) -> None:
    p = make_policy(family, name)
    params = p.params()
    assert isinstance(params, dict)
    q = type(p)(**params)
    assert q.params() == params
    # Run-time state (trailing underscore) is not a parameter.
    assert not any(k.endswith("_") for k in params)
    assert repr(p) == repr(q)


def _continue(family: str, p: Any, seed: int) -> list[Any]:
    if family == "routing":
        return route_sequence(p, 5, seed, n=20)
    return rank_sequence(p, seed, n=20)


@pytest.mark.parametrize(("family", "name"), ALL_POLICIES, ids=_ids(ALL_POLICIES))
def test_pickles_after_reset(family: str, name: str) -> None:
    p = make_policy(family, name)
    if family == "routing":
        p.reset(5, np.random.default_rng(3))
    else:
        p.reset(np.random.default_rng(3))
    _continue(family, p, seed=1)  # build up some run-time state
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is type(p)
    assert q.params() == p.params()
    if type(p).info.deterministic:
        # The copy carries the run-time state (including its rng): same future decisions.
        assert _continue(family, q, seed=2) == _continue(family, p, seed=2)


# ----------------------------------------------------------------------------- routers


@pytest.mark.parametrize("name", ROUTERS)
def test_router_protocol(name: str) -> None:
    p = make_policy("routing", name)
    assert isinstance(p, Router)


@pytest.mark.parametrize("name", ROUTERS)
def test_router_in_range(name: str) -> None:
    # Every router, whether or not it declares 'in_range' (the simulator relies on it).
    check_in_range("routing", name)


@pytest.mark.parametrize("name", ROUTERS)
def test_router_never_writes_its_views(name: str) -> None:
    for size in SIZES:
        p = make_policy("routing", name)
        p.reset(size, np.random.default_rng(size))
        data_rng = np.random.default_rng(7 + size)
        for rid in range(NUM_DECISIONS):
            table, _ = make_table(size, data_rng)
            before = _snapshot(table)
            request = make_request(rid, data_rng)
            request_before = dataclasses.replace(request)
            p.route(request, table)
            for col, values in before.items():
                view = getattr(table, col)
                assert not view.flags.writeable, f"{col} made writable"
                np.testing.assert_array_equal(view, values, err_msg=col)
            assert request == request_before


@pytest.mark.parametrize("name", ROUTERS)
def test_router_follows_live_columns(name: str) -> None:
    """A table built once and updated through its writable columns stays valid to route on."""
    size = 4
    p = make_policy("routing", name)
    p.reset(size, np.random.default_rng(0))
    table, cols = ReplicaTable.allocate(size)
    data_rng = np.random.default_rng(1)
    for rid in range(NUM_DECISIONS):
        k = p.route(make_request(rid, data_rng), table)
        assert 0 <= k < size
        cols["num_waiting"][k] += 1
        cols["outstanding_tokens"][k] += 100


def test_views_are_read_only() -> None:
    table, cols = ReplicaTable.allocate(3)
    for col in cols:
        with pytest.raises(ValueError, match="read-only"):
            getattr(table, col)[0] = 1
    cols["num_running"][1] = 5  # the owner writes through; the view sees it live
    assert table.num_running[1] == 5
    assert table.size == 3


# ----------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_protocol(name: str) -> None:
    p = make_policy("scheduling", name)
    assert isinstance(p, Scheduler)
    assert type(p).victim in ("last_admitted", "highest_rank")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_rank_is_a_real_number(name: str) -> None:
    p = make_policy("scheduling", name)
    p.reset(np.random.default_rng(0))
    for r in rank_sequence(p, seed=0):
        assert isinstance(r, int | float | np.floating | np.integer) and not isinstance(r, bool)
        assert not math.isnan(r)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_rank_deterministic(name: str) -> None:
    # Same view, same time, same rng state: the same rank (the engine's heap relies on it).
    if not registry.get("scheduling", name).info.deterministic:
        pytest.skip("declares info.deterministic=False")
    check_deterministic("scheduling", name)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(("family", "name"), ALL_POLICIES, ids=_ids(ALL_POLICIES))
def test_runs_end_to_end_with_invariants_checked(family: str, name: str) -> None:
    """Every policy survives a preemption-heavy run with invariants asserted at each decision,
    and checking changes nothing: the per-request records equal those of plain ``run()``."""
    checked, plain = run_checked(family, name), run_plain(family, name)
    assert len(checked.requests["status"]) == 300
    for col in (
        "instance",
        "arrival_at",
        "first_token_at",
        "finish_at",
        "num_preemptions",
        "status",
    ):
        np.testing.assert_array_equal(checked.requests[col], plain.requests[col], err_msg=col)
    for s in checked.series:
        assert np.all(np.diff(s.time_at) >= 0)
        assert np.all(s.kv_used_blocks <= s.kv_total_blocks)
        assert np.all(s.kv_used_blocks >= 0)

"""The policy registry: names, ``module:Class`` paths, double registration, bad parameters."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from servoir import registry
from servoir.errors import InputError, UnknownNameError
from servoir.policies.base import ParamsMixin, PolicyInfo
from servoir.policies.routing import JoinShortestQueue, PowerOfTwo

BUILTIN_ROUTERS = {"round_robin", "jsq", "least_outstanding_tokens", "power_of_two"}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """A copy of the registry for tests that register things; the real one is restored."""
    registry.names("routing")  # load built-ins and plugins into the real registry first
    copy = {fam: dict(entries) for fam, entries in registry._REGISTRY.items()}
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


def _router_class(name: str, family: str = "routing") -> type:
    @dataclass(kw_only=True, repr=False)
    class Custom(ParamsMixin):
        """A test router. Guarantees: none. Complexity: O(1)."""

        info: ClassVar[PolicyInfo] = PolicyInfo(name, family)  # type: ignore[arg-type]

        def reset(self, num_replicas: int, rng: np.random.Generator) -> None:
            """No state."""

        def route(self, request: Any, replicas: Any) -> int:
            """Always the first."""
            return 0

    return Custom


# ----------------------------------------------------------------------------- names


def test_names_sorted_and_contain_builtins() -> None:
    routers = registry.names("routing")
    assert routers == sorted(routers)
    assert set(routers) >= BUILTIN_ROUTERS
    assert "fcfs" in registry.names("scheduling")


def test_get_returns_registered_class() -> None:
    assert registry.get("routing", "jsq") is JoinShortestQueue


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as exc:
        registry.get("routing", "shortest_queue")
    msg = str(exc.value)
    assert "shortest_queue" in msg
    for name in registry.names("routing"):
        assert name in msg
    # An input error (the CLI prints it as one line), also a KeyError for dict-like callers.
    assert isinstance(exc.value, InputError)
    assert isinstance(exc.value, KeyError)
    assert "\n" not in msg


def test_unknown_name_in_create() -> None:
    with pytest.raises(UnknownNameError, match="valid: .*fcfs"):
        registry.create("scheduling", "lifo_nope")


def test_unknown_family_lists_families() -> None:
    with pytest.raises(UnknownNameError) as exc:
        registry.names("routers")
    for fam in registry.FAMILIES:
        assert fam in str(exc.value)


# ----------------------------------------------------------------------------- module:Class


def test_module_path_resolves_builtin_class() -> None:
    cls = registry.get("routing", "servoir.policies.routing.jsq:JoinShortestQueue")
    assert cls is JoinShortestQueue
    p = registry.create("routing", "servoir.policies.routing.power_of_two:PowerOfTwo", {"d": 3})
    assert isinstance(p, PowerOfTwo)
    assert p.params() == {"d": 3}


def test_module_path_resolves_user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "servoir_test_user_policy.py").write_text(
        textwrap.dedent('''
        from dataclasses import dataclass
        from typing import ClassVar

        from servoir.policies.base import ParamsMixin, PolicyInfo


        @dataclass(kw_only=True, repr=False)
        class Last(ParamsMixin):
            """Route to the last replica. Guarantees: in_range. Complexity: O(1)."""

            info: ClassVar[PolicyInfo] = PolicyInfo("last", "routing", guarantees=("in_range",))
            offset: int = 1

            def reset(self, num_replicas, rng):
                self.num_replicas_ = num_replicas

            def route(self, request, replicas):
                return self.num_replicas_ - self.offset
    ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = registry.names("routing")
    p = registry.create("routing", "servoir_test_user_policy:Last", {"offset": 2})
    assert type(p).__name__ == "Last"
    assert p.params() == {"offset": 2}
    p.reset(5, np.random.default_rng(0))
    assert p.route(None, None) == 3
    # Resolving a path does not register it under a name.
    assert registry.names("routing") == before


@pytest.mark.parametrize("path", ["servoir.no_such_module:X", "servoir.policies.routing.jsq:Nope"])
def test_module_path_errors_are_input_errors(path: str) -> None:
    with pytest.raises(InputError, match="cannot import policy"):
        registry.get("routing", path)


# ----------------------------------------------------------------------------- register


def test_register_twice_with_different_class_raises(scratch_registry: Any) -> None:
    first = registry.register(_router_class("dup_router"))
    assert registry.get("routing", "dup_router") is first
    with pytest.raises(TypeError, match="registered twice"):
        registry.register(_router_class("dup_router"))
    assert registry.get("routing", "dup_router") is first  # the first one stays


def test_register_same_class_again_is_a_no_op(scratch_registry: Any) -> None:
    cls = _router_class("again_router")
    assert registry.register(cls) is cls
    assert registry.register(cls) is cls
    assert registry.names("routing").count("again_router") == 1


def test_register_builtin_name_with_other_class_raises(scratch_registry: Any) -> None:
    with pytest.raises(TypeError, match="registered twice"):
        registry.register(_router_class("jsq"))
    assert registry.get("routing", "jsq") is JoinShortestQueue


def test_same_name_in_different_families_is_allowed(scratch_registry: Any) -> None:
    registry.register(_router_class("shared_name", "routing"))
    registry.register(_router_class("shared_name", "caching"))
    assert "shared_name" in registry.names("routing")
    assert "shared_name" in registry.names("caching")


def test_register_without_info_raises(scratch_registry: Any) -> None:
    class NoInfo:
        pass

    with pytest.raises(TypeError, match="no 'info"):
        registry.register(NoInfo)


def test_register_unknown_family_raises(scratch_registry: Any) -> None:
    with pytest.raises(TypeError, match="unknown policy family"):
        registry.register(_router_class("x", "teleporting"))


def test_scratch_registry_is_restored() -> None:
    # Runs after the tests above in file order: nothing they registered leaked.
    names = set(registry.names("routing"))
    assert not names & {"dup_router", "again_router", "shared_name"}


def test_entry_point_plugins_are_registered(
    scratch_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = _router_class("plugin_router")

    class EntryPoint:
        def load(self) -> type:
            return plugin

    seen: list[str] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        seen.append(group)
        return [EntryPoint()]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    assert "plugin_router" in registry.names("routing")
    assert registry.get("routing", "plugin_router") is plugin
    assert seen == ["servoir.policies"]


# ----------------------------------------------------------------------------- params


def test_create_with_params() -> None:
    p = registry.create("routing", "power_of_two", {"d": 3})
    assert p.params() == {"d": 3}
    assert registry.create("routing", "power_of_two").params() == {"d": 2}
    assert registry.create("routing", "jsq", None).params() == {}


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("power_of_two", {"dd": 2}, "dd"),  # unknown parameter name (TypeError)
        ("power_of_two", {"d": 0}, "d must be >= 1"),  # rejected value (ValueError)
        ("jsq", {"d": 2}, "'d'"),  # a parameter of another policy
    ],
)
def test_bad_params_raise_input_error(name: str, params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InputError) as exc:
        registry.create("routing", name, params)
    msg = str(exc.value)
    assert f"routing policy '{name}'" in msg
    assert fragment in msg
    assert exc.value.field == "routing.params"


def test_bad_params_fail_when_the_run_is_built() -> None:
    # A wrong parameter name fails at configuration time, before any simulation.
    from servoir.config import load_config
    from servoir.experiments.run import build

    cfg = load_config(
        None,
        {"cluster.router.name": "power_of_two"},
        ["cluster.router.params.k=2", "workload.num_requests=5"],
    )
    with pytest.raises(InputError, match="bad parameters"):
        build(cfg)


def test_builtin_table_matches_what_the_modules_register() -> None:
    """``BUILTIN_MODULES`` (what ``get`` imports per name) names exactly the built-ins, each
    registered by the module the table says, in a fresh process that loads one policy."""
    import subprocess
    import sys

    code = textwrap.dedent("""
        import sys
        from servoir import registry
        registry.create("scheduling", "fcfs")
        registry.create("routing", "round_robin")
        loaded = sorted(m for m in sys.modules if m.startswith("servoir.policies.")
                        and m.count(".") == 3)
        print(loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("['servoir.policies.routing.round_robin', "
                                  "'servoir.policies.scheduling.fcfs']")
    for family, table in registry.BUILTIN_MODULES.items():
        registry.names(family)  # loads every built-in
        registered = {n: c.__module__ for n, c in registry._REGISTRY[family].items()
                      if c.__module__.startswith("servoir.policies.")}
        assert registered == table


def test_parameters_of_plain_types_are_type_checked() -> None:
    # From the command line a mistyped flag arrives as a string, and a non-empty one is truthy.
    with pytest.raises(InputError, match="survival must be bool, got 'maybe'"):
        registry.create("routing", "bf_io", {"survival": "maybe"})
    with pytest.raises(InputError, match="window must be int, got 2.5"):
        registry.create("routing", "bf_io", {"window": 2.5})
    with pytest.raises(InputError, match="publish_interval_s must be float"):
        registry.create("routing", "vllm_score", {"publish_interval_s": True})
    # Integers are fine where floats are expected, numpy integers where ints are.
    registry.create("routing", "vllm_score", {"publish_interval_s": 1})
    registry.create("routing", "bf_io", {"window": np.int64(8), "survival": True})

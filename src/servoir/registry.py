"""One registry of policies, filled three ways.

1. ``@register`` on the defining class (or plain function) in servoir's own modules;
2. the ``servoir.policies`` entry-point group, for third-party plugins;
3. ``"package.module:ClassName"`` strings, resolved on demand.

Unknown names fail with the list of valid names. Policies are built from a ``{name, params}`` spec:
``create("routing", "power_of_two", {"d": 2})``; the params are checked by constructing the
dataclass, so a wrong parameter name fails at configuration time, not mid-run.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from servoir.errors import InputError, UnknownNameError

FAMILIES = ("routing", "scheduling", "caching", "moe")
_REGISTRY: dict[str, dict[str, Any]] = {f: {} for f in FAMILIES}
_BUILTINS_LOADED = False
_PLUGINS_LOADED = False

T = TypeVar("T")


def register(obj: T) -> T:
    """Class decorator: add a policy (anything with ``info: PolicyInfo``) to the registry."""
    info = getattr(obj, "info", None)
    if info is None:
        raise TypeError(f"{obj!r} has no 'info: PolicyInfo' and cannot be registered")
    if info.family not in _REGISTRY:
        raise TypeError(f"unknown policy family {info.family!r}; valid: {FAMILIES}")
    existing = _REGISTRY[info.family].get(info.name)
    if existing is not None and existing is not obj:
        raise TypeError(f"{info.family} policy {info.name!r} registered twice")
    _REGISTRY[info.family][info.name] = obj
    return obj


# Built-in policies by name -> the module that registers them on import. ``get`` imports only
# the one asked for (a run needs one router and one scheduler; importing every policy, HiGHS
# models included, is a tenth of a short run's start-up). A test checks this table against what
# the modules register.
BUILTIN_MODULES: dict[str, dict[str, str]] = {
    "routing": {n: f"servoir.policies.routing.{m}" for n, m in (
        ("bf_io", "bf_io"), ("bf_io_greedy", "bf_io_greedy"), ("jsq", "jsq"),
        ("least_outstanding_tokens", "least_outstanding"), ("power_of_two", "power_of_two"),
        ("prefix_aware", "prefix_aware"), ("round_robin", "round_robin"),
        ("vllm_score", "vllm_score"))},
    "scheduling": {n: f"servoir.policies.scheduling.{n}" for n in (
        "a_max", "a_min", "fcfs", "gsa", "mc_sf", "priority", "sjf", "sorted_f", "vtc")},
}


def _load_builtins() -> None:
    # The built-in policy modules register themselves on import; importing them here (not at
    # module top) keeps registry.py in the base layer (no upward import).
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for table in BUILTIN_MODULES.values():
            for module in table.values():
                importlib.import_module(module)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group="servoir.policies"):
        register(ep.load())


def names(family: str) -> list[str]:
    """Registered policy names of ``family``, sorted."""
    _load_builtins()
    _load_plugins()
    if family not in _REGISTRY:
        raise UnknownNameError("policy family", family, list(FAMILIES))
    return sorted(_REGISTRY[family])


def get(family: str, name: str) -> Any:
    """The policy class registered as ``name`` in ``family`` (or a ``"mod:Class"`` path)."""
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot import policy '{name}': {e}") from e
        return obj
    found = _REGISTRY.get(family, {}).get(name)
    if found is not None:
        return found
    module = BUILTIN_MODULES.get(family, {}).get(name)
    if module is not None:
        importlib.import_module(module)
        return _REGISTRY[family][name]
    valid = names(family)
    if name not in _REGISTRY[family]:
        raise UnknownNameError(f"{family} policy", name, valid)
    return _REGISTRY[family][name]


def _is_int(v: Any) -> bool:
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    import numbers

    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# A plain field type -> the values a parameter of that type may take.
_PLAIN_TYPES: dict[Any, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool), int: _is_int, float: _is_real,
    str: lambda v: isinstance(v, str)}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A policy dataclass's resolved field types (resolved once per class)."""
    import dataclasses
    import typing

    return typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}


def _check_types(cls: type, family: str, name: str, params: Mapping[str, Any]) -> None:
    """Refuse a parameter whose value is not of its field's plain type (bool, int, float, str):
    ``survival=maybe`` from the command line is a string, and a truthy one."""
    if not params:
        return
    hints = _field_types(cls)
    for key, value in params.items():
        ok = _PLAIN_TYPES.get(hints.get(key))
        if ok is not None and not ok(value):
            raise InputError(f"bad parameters for {family} policy '{name}': {key} must be "
                             f"{hints[key].__name__}, got {value!r}", field=f"{family}.params")


def create(family: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
    """Instantiate policy ``name`` of ``family`` with ``params`` (validated by its constructor;
    parameters of plain types must have them)."""
    cls = get(family, name)
    _check_types(cls, family, name, dict(params or {}))
    factory: Callable[..., Any] = cls
    try:
        return factory(**dict(params or {}))
    except TypeError as e:
        raise InputError(f"bad parameters for {family} policy '{name}': {e}",
                         field=f"{family}.params") from e
    except ValueError as e:
        raise InputError(f"bad parameters for {family} policy '{name}': {e}",
                         field=f"{family}.params") from e

"""One registry of policies, filled three ways.

1. ``@register`` on the defining class (or plain function) in servoir's own modules;
2. the ``servoir.policies`` entry-point group, for third-party plugins;
3. ``"package.module:ClassName"`` strings, resolved on demand.

Unknown names fail with the list of valid names. Policies are built from a ``{name, params}`` spec:
``create("routing", "power_of_two", {"d": 2})``; the params are checked by constructing the
dataclass, so a wrong parameter name fails at configuration time, not mid-run.
"""

from __future__ import annotations

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


def _load_builtins() -> None:
    # The built-in policy modules register themselves on import; importing the families'
    # packages here (not at module top) keeps registry.py in the base layer (no upward import).
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("servoir.policies.routing")
        importlib.import_module("servoir.policies.scheduling")


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
    valid = names(family)
    if name not in _REGISTRY[family]:
        raise UnknownNameError(f"{family} policy", name, valid)
    return _REGISTRY[family][name]


def create(family: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
    """Instantiate policy ``name`` of ``family`` with ``params`` (validated by its constructor)."""
    cls = get(family, name)
    factory: Callable[..., Any] = cls
    try:
        return factory(**dict(params or {}))
    except TypeError as e:
        raise InputError(f"bad parameters for {family} policy '{name}': {e}",
                         field=f"{family}.params") from e
    except ValueError as e:
        raise InputError(f"bad parameters for {family} policy '{name}': {e}",
                         field=f"{family}.params") from e

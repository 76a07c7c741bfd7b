"""Hardware: model and GPU specs, fitted latency models, KV-cache capacity.

``fit_all`` and ``fit_profile_csv`` live in :mod:`servoir.hardware.fit`, which imports pandas
and scipy; they are loaded on first use so ``import servoir.hardware`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servoir.hardware.capacity import (
    default_activation_reserve_bytes,
    kv_capacity_blocks,
    kv_capacity_tokens,
)
from servoir.hardware.gpus import GpuSpec, get_gpu, list_gpus
from servoir.hardware.latency import (
    LatencyModel,
    get_latency_model,
    list_fitted_pairs,
    prefill_attention_work,
    roofline_model,
)
from servoir.hardware.models import ModelSpec, get_model, list_models

if TYPE_CHECKING:
    from servoir.hardware.fit import FitReport, fit_all, fit_profile_csv

__all__ = [
    "FitReport",
    "GpuSpec",
    "LatencyModel",
    "ModelSpec",
    "default_activation_reserve_bytes",
    "fit_all",
    "fit_profile_csv",
    "get_gpu",
    "get_latency_model",
    "get_model",
    "kv_capacity_blocks",
    "kv_capacity_tokens",
    "list_fitted_pairs",
    "list_gpus",
    "list_models",
    "prefill_attention_work",
    "roofline_model",
]

_LAZY = {"fit_all", "fit_profile_csv", "FitReport"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from servoir.hardware import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'servoir.hardware' has no attribute {name!r}")

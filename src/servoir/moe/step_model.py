"""Decode-step time of an MoE layer under expert parallelism: the busiest GPU sets the pace.

Every GPU runs its experts' grouped GEMMs on the tokens routed to it, then all GPUs meet at the
combine all-to-all, so the layer's step time is the *maximum* over GPUs. Per GPU, the model is a
roofline: the expert weights must stream from HBM once, and the token FLOPs must run, so

    time_g = overhead_s + max(num_experts_g * expert_bytes / hbm_bytes_per_s,
                              tokens_g * flops_per_token / (flops_per_s * efficiency))

Defaults describe one DeepSeek-V3 routed expert (hidden 7168, intermediate 2048, FP8 weights,
three projections) on an H800/H100 SXM (3.35 TB/s HBM, 1979 dense FP8 TFLOP/s) at 60% of peak:
assumptions to override, not measurements. Balancing the per-GPU token loads lowers the maximum
and therefore the step time, which is how the LP's gain shows up as time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servoir.errors import InputError

__all__ = ["MoELayerStepModel"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MoELayerStepModel:
    """Roofline step-time model of one MoE layer (all times in seconds).

    Guarantees: :meth:`step_s` is non-decreasing in every GPU's token load and in the expert
    count, and equals :meth:`gpu_s`'s maximum. Complexity: O(G) per call.

    Examples
    --------
    >>> m = MoELayerStepModel()
    >>> bool(m.step_s(np.array([1000.0, 3000.0]), 4) > m.step_s(np.array([2000.0, 2000.0]), 4))
    True
    """

    hidden_size: int = 7168
    intermediate_size: int = 2048
    bytes_per_param: float = 1.0
    hbm_bytes_per_s: float = 3.35e12
    flops_per_s: float = 1.979e15
    efficiency: float = 0.6
    overhead_s: float = 5e-6

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "bytes_per_param", "hbm_bytes_per_s",
                     "flops_per_s", "efficiency"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.efficiency > 1 or self.overhead_s < 0:
            raise InputError("efficiency must be in (0, 1] and overhead_s >= 0")

    @property
    def expert_bytes(self) -> float:
        """Weight bytes of one expert (gate, up and down projections)."""
        return 3.0 * self.hidden_size * self.intermediate_size * self.bytes_per_param

    @property
    def flops_per_token(self) -> float:
        """FLOPs one token spends in one expert."""
        return 6.0 * self.hidden_size * self.intermediate_size

    def gpu_s(self, tokens: np.ndarray, experts_per_gpu: int | np.ndarray) -> np.ndarray:
        """Time of every GPU: ``tokens`` [..., G] token-expert pairs routed to each GPU."""
        tok = np.asarray(tokens, dtype=np.float64)
        if np.any(tok < 0) or not np.all(np.isfinite(tok)):
            raise InputError("token loads must be finite and non-negative")
        mem = np.asarray(experts_per_gpu, dtype=np.float64) * self.expert_bytes / self.hbm_bytes_per_s
        comp = tok * self.flops_per_token / (self.flops_per_s * self.efficiency)
        return self.overhead_s + np.maximum(mem, comp)

    def step_s(self, tokens: np.ndarray, experts_per_gpu: int | np.ndarray) -> np.ndarray:
        """Layer step time: the slowest GPU (max over the last axis)."""
        return self.gpu_s(tokens, experts_per_gpu).max(-1)

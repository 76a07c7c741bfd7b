"""LPLB's embedded solver: a few primal affine-scaling (Dikin) steps, batched with numpy.

A faithful CPU re-implementation of ``kernel_solve`` in deepseek-ai/LPLB
(``lplb/resources/csrc-tmpl/minilp.cu``): start at the all-ones point (feasible thanks to the
Big-M column), take ``steps`` (5) affine-scaling steps with step ratio 0.999, then accept the
split if ``dmax < 0.1``, ``0 <= a < 1e-4`` and ``max|Ax - b| < 0.05``; LPLB falls back to the even
split otherwise. The truncated method stops short of the optimum; :func:`servoir.moe.lplb.solve`
reports how far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AffineScalingResult", "affine_scaling"]


@dataclass(frozen=True, slots=True)
class AffineScalingResult:
    """Outcome of :func:`affine_scaling` for a batch of LPs (leading axis ``B``).

    ``x`` [B, NV] final point, ``dmax`` [B] last scaled-direction maximum, ``residual`` [B]
    ``max|Ax - b|``, ``accepted`` [B] LPLB's acceptance rule.
    """

    x: np.ndarray
    dmax: np.ndarray
    residual: np.ndarray
    accepted: np.ndarray


def _lane_indices(nv: int, lanes: int = 32) -> np.ndarray:
    # Index each warp lane of the kernel's reduction ends up holding: it overwrites its running
    # value in ``d_max = d[j] = ...`` instead of taking a max, so lane l keeps only its last j.
    return np.array([max(range(lane, nv, lanes)) for lane in range(min(lanes, nv))])


def affine_scaling(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    *,
    steps: int = 5,
    ratio: float = 0.999,
    lane_max_quirk: bool = False,
    dtype: type[np.floating] = np.float64,
) -> AffineScalingResult:
    """Run ``steps`` primal affine-scaling steps on ``min c.x, Ax = b, x >= 0`` from ``x = 1``.

    Each step solves ``(A X^2 A^T) y = A X^2 c``, sets ``d = x * (c - A^T y)`` and
    ``x <- x * (1 - ratio * d / max(d))``, so ``x`` stays strictly positive.

    Parameters
    ----------
    a, b, c : ndarray
        ``[B, NC, NV]``, ``[B, NC]``, ``[NV]`` or ``[B, NV]``; ``A @ 1 = b`` is assumed (the
        Big-M column of the LPLB LP makes it so).
    steps, ratio : int, float
        5 and 0.999 in LPLB.
    lane_max_quirk : bool
        Reproduce the CUDA kernel's reduction, which takes the max over only the last index each of
        the 32 warp lanes visits (10 of 42 entries are skipped for Cube8P2E), instead of over all
        ``d``. Off by default: the documented algorithm takes the full max.
    dtype : numpy float type
        ``np.float32`` mimics the GPU kernel's arithmetic.

    Returns
    -------
    AffineScalingResult

    Notes
    -----
    A guard the kernel lacks: a batch member whose ``max(d) <= 0`` (already optimal) stops moving.
    Complexity: ``steps`` batched ``NC x NC`` solves, O(B steps (NC^2 NV + NC^3)).
    """
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    cc = np.broadcast_to(np.asarray(c, dtype=dtype), (a.shape[0], a.shape[2]))
    at = a.transpose(0, 2, 1)
    x = np.ones((a.shape[0], a.shape[2]), dtype=dtype)
    lanes = _lane_indices(a.shape[2]) if lane_max_quirk else None
    dmax = np.zeros(a.shape[0], dtype=dtype)
    for _ in range(steps):
        ax2 = a * (x * x)[:, None, :]
        normal = ax2 @ at
        rhs = np.einsum("bij,bj->bi", ax2, cc)
        y = np.linalg.solve(normal, rhs[..., None])[..., 0]
        d = x * (cc - np.einsum("bji,bj->bi", a, y))
        dmax = d[:, lanes].max(-1) if lanes is not None else d.max(-1)
        moving = dmax > 0
        alpha = np.where(moving, ratio / np.where(moving, dmax, 1), 0).astype(dtype)
        x = x * (1 - alpha[:, None] * d)
    residual = np.abs(np.einsum("bij,bj->bi", a, x) - b).max(-1)
    art = x[:, -1]
    accepted = (dmax < 0.1) & (art >= 0) & (art < 1e-4) & (residual < 0.05)
    return AffineScalingResult(x=x, dmax=dmax, residual=residual, accepted=accepted)

"""Sums over a decode stretch of the maximum of affine per-rank sequences (exact, O(G) per kink).

In a stretch of pure decode iterations, rank ``g``'s iteration ``j`` takes ``a_g + b_g j``
seconds and attends ``c_g + n_g j`` KV tokens; the group's step is the maximum over ranks. The
maximum of lines is convex and piecewise linear with at most G pieces (its upper envelope), so
sums over ``k`` iterations are sums of arithmetic series per piece, and the iteration in progress
at a given time is found inside one piece. Nothing here loops over iterations.
"""

from __future__ import annotations

import math

Segment = tuple[int, int, float, float]  # iterations [j0, j1) on the line a + b j


def envelope(a: list[float], b: list[float], k: int) -> list[Segment]:
    """Pieces of ``max_i (a[i] + b[i] j)`` for integer ``j`` in ``[0, k)``.

    Slopes are non-negative here (loads and times only grow); the pieces are exact for any.
    """
    n = len(a)
    cur = max(range(n), key=lambda i: (a[i], b[i]))
    segs: list[Segment] = []
    j = 0
    while j < k:
        ac, bc = a[cur], b[cur]
        nxt_j, nxt = k, -1
        for i in range(n):
            bi = b[i]
            if bi > bc:
                # First integer iteration at which line i is strictly above the current one.
                ji = math.floor((ac - a[i]) / (bi - bc)) + 1
                ji = max(ji, j + 1)
                if ji < nxt_j:
                    nxt_j, nxt = ji, i
        segs.append((j, nxt_j, ac, bc))
        j = nxt_j
        if nxt >= 0:
            # Several lines may pass the current one at the same iteration: the new maximum is
            # the highest of them there (then the steepest).
            cur = max(range(n), key=lambda i: (a[i] + b[i] * j, b[i]))
    return segs


def series(a: float, b: float, j0: int, j1: int) -> float:
    """``sum_{j=j0}^{j1-1} (a + b j)``."""
    m = j1 - j0
    return m * a + b * (j0 + j1 - 1) * m / 2


def envelope_sum(segs: list[Segment], k: int) -> float:
    """Sum of the envelope over iterations ``[0, k)`` (``k`` at most the pieces' end)."""
    total = 0.0
    for j0, j1, a, b in segs:
        if j0 >= k:
            break
        total += series(a, b, j0, min(j1, k))
    return total


def first_reaching(segs: list[Segment], dt: float) -> int:
    """Smallest ``m`` with ``sum_{j<m} env(j) >= dt`` (iterations whose end is at or past
    ``dt``), or the pieces' end if none."""
    if dt <= 0:
        return 0
    acc = 0.0
    for j0, j1, a, b in segs:
        seg = series(a, b, j0, j1)
        if acc + seg < dt:
            acc += seg
            continue
        lo, hi = j0 + 1, j1  # the answer lies in (j0, j1]
        while lo < hi:
            mid = (lo + hi) // 2
            if acc + series(a, b, j0, mid) >= dt:
                hi = mid
            else:
                lo = mid + 1
        return lo
    return segs[-1][1] if segs else 0

"""Request length distributions: how many prompt and output tokens each request has.

Every distribution is a small frozen dataclass with ``sample(n, rng)`` returning two int64 arrays
``(prompt, output)`` of length ``n``, every entry ``>= 1``. The generators in
:mod:`servoir.workload.generators` draw lengths from one of these and arrival times from their own
process, so any length model pairs with any arrival model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from servoir.errors import InputError
from servoir.workload.readers import read_trace

__all__ = ["Empirical", "Fixed", "LengthDistribution", "LogNormal", "Uniform"]


@runtime_checkable
class LengthDistribution(Protocol):
    """Anything that draws ``n`` (prompt, output) token-count pairs."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(prompt, output)``: int64 arrays of length ``n``, all entries ``>= 1``."""
        ...


def _check_n(n: int) -> None:
    if n < 0:
        raise InputError(f"number of samples must be >= 0, got {n}", field="num_requests")


@dataclass(frozen=True, slots=True)
class Fixed:
    """Every request has ``prompt`` prompt tokens and ``output`` output tokens.

    Examples
    --------
    >>> import numpy as np
    >>> p, o = Fixed(128, 32).sample(3, np.random.default_rng(0))
    >>> p.tolist(), o.tolist()
    ([128, 128, 128], [32, 32, 32])
    """

    prompt: int
    output: int

    def __post_init__(self) -> None:
        if self.prompt < 1 or self.output < 1:
            raise InputError(f"token counts must be >= 1, got ({self.prompt}, {self.output})",
                             field="lengths")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return ``n`` copies of ``(prompt, output)``; ``rng`` is not used."""
        _check_n(n)
        return np.full(n, self.prompt, dtype=np.int64), np.full(n, self.output, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Uniform:
    """Prompt ~ U{prompt_lo..prompt_hi} and output ~ U{output_lo..output_hi}, independent.

    Both ranges are inclusive integer ranges, so ``Uniform(128, 2048, 1, 512)`` can return 2048.

    Examples
    --------
    >>> import numpy as np
    >>> p, o = Uniform(1, 2, 5, 5).sample(1000, np.random.default_rng(0))
    >>> sorted(set(p.tolist())), sorted(set(o.tolist()))
    ([1, 2], [5])
    """

    prompt_lo: int
    prompt_hi: int
    output_lo: int
    output_hi: int

    def __post_init__(self) -> None:
        for lo, hi, what in ((self.prompt_lo, self.prompt_hi, "prompt"),
                             (self.output_lo, self.output_hi, "output")):
            if not 1 <= lo <= hi:
                raise InputError(f"{what} range must satisfy 1 <= lo <= hi, got [{lo}, {hi}]",
                                 field="lengths")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` independent (prompt, output) pairs."""
        _check_n(n)
        prompt = rng.integers(self.prompt_lo, self.prompt_hi, size=n, endpoint=True)
        output = rng.integers(self.output_lo, self.output_hi, size=n, endpoint=True)
        return prompt.astype(np.int64), output.astype(np.int64)


def _lognormal_ints(mean: float, sigma: float, cap: int | None, n: int,
                    rng: np.random.Generator) -> np.ndarray:
    # Choose mu so that E[X] = exp(mu + sigma^2 / 2) equals the requested mean.
    mu = math.log(mean) - 0.5 * sigma * sigma
    x = np.rint(rng.lognormal(mu, sigma, size=n))
    return np.clip(x, 1, cap if cap is not None else np.inf).astype(np.int64)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Independent log-normal prompt and output lengths, given by their mean in tokens.

    Each length is ``round(X)`` with ``X = exp(N(mu, sigma^2))`` and ``mu = ln(mean) - sigma^2/2``,
    so ``E[X] = mean`` exactly; ``sigma`` is the standard deviation of ``ln X`` (log space), and
    the coefficient of variation of ``X`` is ``sqrt(exp(sigma^2) - 1)`` (about ``sigma`` when
    small). Values are then clipped to ``[1, max_*]``; rounding and clipping move the mean slightly
    when the mean is a few tokens or the cap is near the mean.

    Examples
    --------
    >>> import numpy as np
    >>> p, o = LogNormal(1000, 0.5, 200, 0.5).sample(100_000, np.random.default_rng(0))
    >>> bool(abs(p.mean() / 1000 - 1) < 0.01 and abs(o.mean() / 200 - 1) < 0.01)
    True
    """

    prompt_mean: float
    prompt_sigma: float
    output_mean: float
    output_sigma: float
    max_prompt: int | None = None
    max_output: int | None = None

    def __post_init__(self) -> None:
        if not (self.prompt_mean > 0 and self.output_mean > 0):
            raise InputError("log-normal means must be > 0", field="lengths")
        if not (self.prompt_sigma >= 0 and self.output_sigma >= 0):
            raise InputError("log-normal sigmas must be >= 0", field="lengths")
        for cap in (self.max_prompt, self.max_output):
            if cap is not None and cap < 1:
                raise InputError(f"length caps must be >= 1, got {cap}", field="lengths")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` independent (prompt, output) pairs (prompts drawn first)."""
        _check_n(n)
        prompt = _lognormal_ints(self.prompt_mean, self.prompt_sigma, self.max_prompt, n, rng)
        output = _lognormal_ints(self.output_mean, self.output_sigma, self.max_output, n, rng)
        return prompt, output


@dataclass(frozen=True)
class Empirical:
    """Resample observed (prompt, output) pairs jointly, uniformly with replacement.

    Drawing pairs, not the two marginals separately, keeps the correlation between prompt and
    output length that real traces have (long documents get short summaries, for instance).

    Parameters
    ----------
    prompt, output
        Observed token counts, equal length, all ``>= 1``. They are copied and made read-only.

    Examples
    --------
    >>> import numpy as np
    >>> d = Empirical([10, 20], [1, 2])
    >>> p, o = d.sample(1000, np.random.default_rng(0))
    >>> sorted(set(zip(p.tolist(), o.tolist())))
    [(10, 1), (20, 2)]
    """

    prompt: np.ndarray
    output: np.ndarray
    source: str = field(default="arrays", compare=False)

    def __post_init__(self) -> None:
        p = np.array(self.prompt, dtype=np.int64)
        o = np.array(self.output, dtype=np.int64)
        if p.ndim != 1 or p.shape != o.shape or p.size == 0:
            raise InputError("prompt and output must be non-empty 1-D arrays of equal length",
                             field="lengths")
        if p.min() < 1 or o.min() < 1:
            raise InputError("empirical token counts must be >= 1", field="lengths")
        p.setflags(write=False)
        o.setflags(write=False)
        object.__setattr__(self, "prompt", p)
        object.__setattr__(self, "output", o)

    def __len__(self) -> int:
        return len(self.prompt)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` pairs (row indices uniform with replacement)."""
        _check_n(n)
        idx = rng.integers(0, len(self.prompt), size=n)
        return self.prompt[idx], self.output[idx]

    @classmethod
    def from_trace(cls, name_or_path: str | Path) -> Empirical:
        """Pairs of every row of a trace: a built-in name (``"sharegpt"``) or a file path.

        Any format :func:`servoir.workload.readers.read_trace` accepts works; arrival times are
        ignored. For ShareGPT the prompt of a turn is its full history plus the user message.
        """
        w = read_trace(name_or_path)
        return cls(w.num_prompt_tokens, w.num_output_tokens, source=w.source)

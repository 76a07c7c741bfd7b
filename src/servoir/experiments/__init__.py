"""Runs, comparisons and benchmarks built on the simulator."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servoir.errors import InputError, UnknownNameError
from servoir.experiments.run import build, build_workload, run

# `servoir compare --family NAME`: NAME -> module with
# ``run_family(out: Path, seed: int, quick: bool, echo) -> {"title", "rows", "files"}``.
FAMILIES: dict[str, str] = {
    "routing": "servoir.experiments.family_routing",
    "scheduling": "servoir.experiments.family_scheduling",
}


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` (dicts) to ``path`` as CSV: the header is the union of their keys in the
    order first seen, and a key a row lacks is left empty. Returns ``path``."""
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with Path(path).open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys, restval="")
        wr.writeheader()
        wr.writerows(rows)
    return Path(path)


def run_family(family: str, *, out: Path, seed: int = 0, quick: bool = False,
               echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the experiment of policy family ``family`` (see :data:`FAMILIES`)."""
    if family not in FAMILIES:
        raise UnknownNameError("experiment family", family, list(FAMILIES))
    module = importlib.import_module(FAMILIES[family])
    result: dict[str, Any] = module.run_family(out=Path(out), seed=seed, quick=quick, echo=echo)
    for key in ("title", "rows", "files"):
        if key not in result:
            raise InputError(f"family '{family}' returned no '{key}'")
    return result


__all__ = ["FAMILIES", "build", "build_workload", "run", "run_family", "write_rows_csv"]

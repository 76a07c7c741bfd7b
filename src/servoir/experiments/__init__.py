"""Runs, comparisons and benchmarks built on the simulator."""

from servoir.experiments.run import build, build_workload, run

__all__ = ["build", "build_workload", "run"]

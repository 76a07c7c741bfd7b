"""``servoir bench moe --json`` prints exactly the issue's keys."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from servoir.cli.main import app

KEYS = {"fast_us_p50", "fast_us_p99", "highs_us_p50", "ipm_us_p50", "max_rel_gap_vs_highs",
        "layer_us_p50", "max_over_mean_before", "max_over_mean_after"}


def test_bench_moe_json_keys() -> None:
    res = CliRunner().invoke(app, ["bench", "moe", "--quick", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)
    assert set(row) == KEYS
    assert row["max_rel_gap_vs_highs"] <= 1e-9
    assert row["max_over_mean_after"] < row["max_over_mean_before"]

"""The ``servoir`` command line: its JSON contract, files, exit codes and error lines.

Process-level properties (determinism across processes, no traceback on stderr) run the real
``python -m servoir.cli.main``; the rest use typer's in-process ``CliRunner``, which is faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from servoir import registry
from servoir.cli.main import app
from servoir.config import load_config

HEADER = "arrival_s,prompt_tokens,output_tokens"
NUM_ROWS = 300
STATS = ("mean", "p50", "p90", "p99")
METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s")
CONTRACT_KEYS = {
    "schema_version",
    "num_requests",
    "num_finished",
    "num_rejected",
    "num_preemptions",
    "throughput_rps",
    "output_tokens_per_s",
    "metrics",
    "sim_events",
    "wall_s",
    "config_digest",
}
SMALL = ["--model", "llama-3-8b", "--gpu", "a100", "--instances", "2"]


def make_rows(n: int, seed: int = 0, span_s: float = 20.0) -> list[tuple[float, int, int]]:
    """``n`` requests over ``span_s`` seconds with modest lengths (no rejections)."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0.0, span_s, n))
    prompts = rng.integers(16, 2000, n)
    outputs = rng.integers(1, 300, n)
    return [
        (round(float(a), 4), int(p), int(o))
        for a, p, o in zip(arrivals, prompts, outputs, strict=True)
    ]


def write_trace(path: Path, rows: list[tuple[Any, Any, Any]]) -> Path:
    lines = [HEADER, *(f"{a},{p},{o}" for a, p, o in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(tmp_path_factory.mktemp("trace") / "small.csv", make_rows(NUM_ROWS))


def servoir(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh Python process."""
    env = {**os.environ, "PYTHONHASHSEED": "random"}  # determinism may not rest on hash order
    return subprocess.run(
        [sys.executable, "-m", "servoir.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


runner = CliRunner()


def invoke(*args: Any) -> Any:
    """Run the CLI in-process; ``stdout`` and ``stderr`` are captured separately."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def simulate_json(*args: Any) -> dict[str, Any]:
    res = invoke("simulate", *args, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def assert_one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ----------------------------------------------------------------------------- simulate --json


def test_simulate_json_is_deterministic_across_processes(trace: Path) -> None:
    a, b = (servoir("simulate", "--trace", trace, *SMALL, "--json") for _ in range(2))
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja.keys() == jb.keys()
    for key in ja:
        if key != "wall_s":
            assert ja[key] == jb[key], key
    assert ja["wall_s"] > 0


def test_simulate_json_contract(trace: Path) -> None:
    head = simulate_json("--trace", trace, *SMALL)
    assert head.keys() >= CONTRACT_KEYS
    assert set(head["metrics"]) == set(METRICS)
    for name in METRICS:
        assert set(head["metrics"][name]) == set(STATS)
        stats = head["metrics"][name]
        assert all(isinstance(stats[s], float) for s in STATS), name
        assert stats["p50"] <= stats["p90"] <= stats["p99"], name
    assert head["schema_version"] == 1
    assert head["num_requests"] == NUM_ROWS
    assert head["num_finished"] + head["num_rejected"] == NUM_ROWS
    assert head["num_rejected"] == 0
    assert head["throughput_rps"] > 0
    assert head["output_tokens_per_s"] > 0
    assert head["sim_events"] > NUM_ROWS
    assert "slo_attainment" not in head and "goodput_rps" not in head
    # The digest is the digest of the configuration the flags describe.
    cfg = load_config(
        None,
        {
            "workload.trace": str(trace),
            "hardware.model": "llama-3-8b",
            "hardware.gpu": "a100",
            "cluster.instances": 2,
        },
    )
    assert head["config_digest"] == cfg.digest()


def test_dp_attention_run_reports_its_barrier_metrics(trace: Path) -> None:
    """In DP-attention mode the JSON carries the barrier metrics (whole run and before the
    last arrival, bounded as fractions / non-negative) and the terminal report prints them."""
    args = ("--trace", trace, "--instances", 4, "--set", "cluster.mode=dp_attention")
    head = simulate_json(*args)
    for key in ("barrier_idle_frac", "barrier_idle_frac_before_last_arrival"):
        assert 0.0 <= head[key] < 1.0, key
    for key in ("mean_imbalance_tokens", "mean_imbalance_tokens_before_last_arrival"):
        assert head[key] >= 0.0, key
    res = invoke("simulate", *args)
    assert res.exit_code == 0, res.stderr
    assert f"barrier idle {head['barrier_idle_frac']:.1%}" in " ".join(res.stdout.split())
    assert "barrier idle" not in invoke("simulate", "--trace", trace, *SMALL).stdout


def test_seed_and_policy_change_the_digest(trace: Path) -> None:
    base = simulate_json("--trace", trace, *SMALL)
    other = simulate_json("--trace", trace, *SMALL, "--router", "jsq")
    assert other["config_digest"] != base["config_digest"]
    assert other["num_requests"] == base["num_requests"]


# ----------------------------------------------------------------------------- bad input


def test_malformed_trace_exits_2_naming_file_line_field(tmp_path: Path) -> None:
    rows: list[tuple[Any, Any, Any]] = list(make_rows(10))
    rows[2] = (rows[2][0], "12x", rows[2][2])  # data row 3 is physical line 4 (header is 1)
    path = write_trace(tmp_path / "broken_trace.csv", rows)
    res = servoir("simulate", "--trace", path, "--json")
    assert res.returncode == 2
    assert res.stdout == ""
    line = assert_one_error_line(res.stderr)
    assert "broken_trace.csv" in line
    assert "line 4" in line
    assert "prompt_tokens" in line


def test_missing_trace_exits_2(tmp_path: Path) -> None:
    res = invoke("simulate", "--trace", tmp_path / "nope.csv", "--json")
    assert res.exit_code == 2
    line = assert_one_error_line(res.stderr)
    assert "nope.csv" in line


def test_unknown_router_exits_2_listing_valid_names(trace: Path) -> None:
    res = servoir("simulate", "--trace", trace, "--router", "shortest_job", "--json")
    assert res.returncode == 2
    line = assert_one_error_line(res.stderr)
    assert "shortest_job" in line
    for name in registry.names("routing"):
        assert name in line


def test_unknown_scheduler_and_model_exit_2(trace: Path) -> None:
    res = invoke("simulate", "--trace", trace, "--scheduler", "lifo", "--json")
    assert res.exit_code == 2
    assert "fcfs" in assert_one_error_line(res.stderr)
    res = invoke("simulate", "--trace", trace, "--model", "llama-9", "--json")
    assert res.exit_code == 2
    assert "llama-3-8b" in assert_one_error_line(res.stderr)


def test_unknown_set_key_exits_2(trace: Path) -> None:
    res = invoke("simulate", "--trace", trace, "--set", "engine.max_num_seq=4", "--json")
    assert res.exit_code == 2
    line = assert_one_error_line(res.stderr)
    assert "engine.max_num_seq" in line
    assert "engine.max_num_seqs" in line  # the valid keys are listed


def test_bad_policy_params_exit_2(trace: Path) -> None:
    res = invoke(
        "simulate",
        "--trace",
        trace,
        "--router",
        "power_of_two",
        "--set",
        "cluster.router.params.d=0",
        "--json",
    )
    assert res.exit_code == 2
    assert "d must be >= 1" in assert_one_error_line(res.stderr)


def test_malformed_config_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken_config.yaml"
    path.write_text("seed: 1\nhardware:\n  gpu: a100: x\n")
    res = invoke("simulate", path, "--json")
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ")
    assert "broken_config.yaml, line 3" in res.stderr


def test_malformed_config_file_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken_config.yaml"
    path.write_text("seed: 1\nhardware:\n  gpu: a100: x\n")
    res = invoke("simulate", path, "--json")
    assert_one_error_line(res.stderr)


# ----------------------------------------------------------------------------- semantics


def test_too_long_request_is_rejected_not_dropped(tmp_path: Path) -> None:
    rows: list[tuple[Any, Any, Any]] = list(make_rows(40, seed=1))
    rows[7] = (rows[7][0], 9000, 10)  # llama-3-8b's max_model_len is 8192
    rows[20] = (rows[20][0], 8000, 500)  # prompt + output over the limit as well
    path = write_trace(tmp_path / "long.csv", rows)
    out = tmp_path / "out"
    head = simulate_json("--trace", path, "--model", "llama-3-8b", "--gpu", "a100", "--out", out)
    assert head["num_requests"] == len(rows)
    assert head["num_rejected"] == 2
    assert head["num_finished"] == len(rows) - 2
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == len(rows)
    assert sorted(req.loc[req.status == "rejected", "request_id"]) == [7, 20]


def test_slo_flags_add_attainment_and_goodput(trace: Path, tmp_path: Path) -> None:
    ttft, tpot = 0.2, 0.03
    out = tmp_path / "slo"
    head = simulate_json(
        "--trace", trace, *SMALL, "--slo-ttft", ttft, "--slo-tpot", tpot, "--out", out
    )
    att, goodput = head["slo_attainment"], head["goodput_rps"]
    assert 0.0 <= att <= 1.0
    assert 0.0 < att < 1.0, "pick SLOs that some but not all requests meet"
    assert 0.0 <= goodput <= head["throughput_rps"] + 1e-12
    # Recompute attainment from the per-request table.
    req = pd.read_parquet(out / "requests.parquet")
    ok = (
        (req.status == "finished")
        & (req.ttft_s <= ttft)
        & (req.tpot_s.isna() | (req.tpot_s <= tpot))
    )
    assert att == pytest.approx(ok.sum() / (len(req) - head["num_rejected"]))


@pytest.mark.parametrize("flag", ["--slo-ttft", "--slo-tpot"])
def test_one_slo_flag_is_enough(trace: Path, flag: str) -> None:
    head = simulate_json("--trace", trace, *SMALL, flag, "10")
    assert head["slo_attainment"] == pytest.approx(head["num_finished"] / NUM_ROWS)
    assert head["goodput_rps"] == pytest.approx(head["throughput_rps"])


def _overlaps(req: pd.DataFrame) -> int:
    fin = req[req.status == "finished"].sort_values("arrival_at")
    return int((fin.arrival_at.to_numpy()[1:] < fin.finish_at.to_numpy()[:-1]).sum())


def test_max_concurrency_one_serialises(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "serial"
    head = simulate_json("--trace", trace, *SMALL, "--max-concurrency", 1, "--out", out)
    req = pd.read_parquet(out / "requests.parquet")
    assert head["num_finished"] == NUM_ROWS
    assert _overlaps(req) == 0
    # Requests are let through in trace order, one at a time.
    assert np.all(np.diff(req.sort_values("request_id").arrival_at.to_numpy()) >= 0)
    # Not vacuous: the same trace without the cap has overlapping requests.
    free = tmp_path / "free"
    simulate_json("--trace", trace, *SMALL, "--out", free)
    assert _overlaps(pd.read_parquet(free / "requests.parquet")) > 0


def test_out_writes_tables_and_summary(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "run"
    head = simulate_json("--trace", trace, *SMALL, "--out", out)
    assert {p.name for p in out.iterdir()} >= {"requests.parquet", "series.parquet", "summary.json"}
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == NUM_ROWS
    assert {
        "request_id",
        "arrival_at",
        "finish_at",
        "ttft_s",
        "tpot_s",
        "e2e_s",
        "queue_s",
        "status",
        "instance",
        "num_preemptions",
    } <= set(req.columns)
    assert set(req.instance) == {0, 1}
    series = pd.read_parquet(out / "series.parquet")
    assert set(series.instance) == {0, 1}
    assert {"time_at", "num_running", "num_waiting", "kv_used_frac"} <= set(series.columns)
    summary = json.loads((out / "summary.json").read_text())
    for key, value in head.items():
        if key != "wall_s":
            assert summary[key] == value, key
    assert summary["meta"]["config_digest"] == head["config_digest"]


def test_human_table_output(trace: Path) -> None:
    res = invoke("simulate", "--trace", trace, *SMALL)
    assert res.exit_code == 0, res.stderr
    assert f"{NUM_ROWS:,} requests" in res.stdout
    assert "ttft" in res.stdout


# ----------------------------------------------------------------------------- compare


def test_compare_writes_files_and_json_rows(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = invoke("compare", "--num-requests", 400, "--out", out, "--json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    routers = ["round_robin", "jsq", "least_outstanding_tokens", "vllm_score", "power_of_two"]
    assert [r["router"] for r in rows] == routers  # the baseline first
    for r in rows:
        assert r["scheduler"] == "fcfs"
        assert r["num_finished"] + r["num_rejected"] == 400
        assert 0.0 <= r["slo_attainment"] <= 1.0
        assert r["goodput_rps"] >= 0
    for name in ("requests.parquet", "summary.csv", "compare.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.router) == routers
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == 400 * len(routers)
    # Common random numbers: every combination saw the identical workload.
    per = [g.sort_values("request_id") for _, g in req.groupby("router")]
    for g in per[1:]:
        np.testing.assert_array_equal(g.num_prompt_tokens, per[0].num_prompt_tokens)
        np.testing.assert_array_equal(g.arrival_at, per[0].arrival_at)


def test_compare_unknown_router_exits_2(tmp_path: Path) -> None:
    res = invoke(
        "compare", "--num-requests", 50, "--routers", "jsq,nope", "--out", tmp_path / "x", "--json"
    )
    assert res.exit_code == 2
    assert "round_robin" in assert_one_error_line(res.stderr)


# ----------------------------------------------------------------------------- other commands


def test_hardware_list_json() -> None:
    res = invoke("hardware", "list", "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert {"models", "gpus", "fitted"} <= data.keys()
    assert "llama-3-8b" in data["models"]
    assert "a100" in data["gpus"]
    assert ["llama-3-8b", "a100", 1] in data["fitted"]


def test_policies_lists_every_registered_policy() -> None:
    res = invoke("policies")
    assert res.exit_code == 0, res.stderr
    for fam in ("routing", "scheduling"):
        for name in registry.names(fam):
            assert name in res.stdout, name

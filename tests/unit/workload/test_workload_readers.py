"""Trace readers on the shipped traces, jitter, and generic-format round trips."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from servoir.errors import InputError, UnknownNameError
from servoir.rng import stream
from servoir.workload import (
    BUILTIN_TRACES,
    Fixed,
    Workload,
    builtin_trace_path,
    read_trace,
    sessions,
    write_trace_csv,
    write_trace_jsonl,
)

# Row counts from the README of each shipped trace.
README_COUNTS = {
    "azure_code": 8_819, "azure_conv": 19_366, "mooncake_conversation": 12_031,
    "mooncake_synthetic": 3_993, "sharegpt": 61_239, "arxiv": 28_257,
    "vidur_w1k_qps1": 1_000, "vidur_w1k_qps2": 1_000, "vidur_w1k_qps4": 1_000,
    "vidur_w10k_qps1": 10_000, "vidur_w10k_qps2": 10_000,
}


def test_every_builtin_is_shipped_inside_the_package() -> None:
    pkg = Path(__import__("servoir").__file__).resolve().parent
    assert set(BUILTIN_TRACES) == set(README_COUNTS)
    for name in BUILTIN_TRACES:
        path = builtin_trace_path(name)
        assert path.is_file() and pkg in path.parents
        assert (path.parent / "README.md").is_file()
    with pytest.raises(UnknownNameError, match="azure_code"):
        builtin_trace_path("nope")


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_builtin_row_counts(name: str) -> None:
    w = read_trace(name)
    assert len(w) == README_COUNTS[name]
    assert w.num_prompt_tokens.min() >= 1 and w.num_output_tokens.min() >= 1
    assert np.all(np.diff(w.arrival_at) >= 0) and not w.meta["resorted"]
    assert w.meta["has_arrivals"] is (name not in ("sharegpt", "arxiv"))
    if not w.meta["has_arrivals"]:
        assert np.all(w.arrival_at == 0)


def test_azure_timestamps_and_speed() -> None:
    t0 = time.perf_counter()
    w = read_trace("azure_conv")
    assert time.perf_counter() - t0 < 0.5  # generous: ~20 ms here
    # 2023-11-16 18:15:46.6805900 -> 18:15:50.9951690; span 58.4 min per the README.
    assert w.arrival_at[0] == 0.0
    assert w.arrival_at[1] == pytest.approx(4.314579, abs=1e-9)
    assert w.duration_s / 60 == pytest.approx(58.4, abs=0.05)
    assert (w.num_prompt_tokens[0], w.num_output_tokens[0]) == (374, 44)


def test_mooncake_prefixes() -> None:
    w = read_trace("mooncake_synthetic")
    assert w.prefix_block_tokens == 512 and w.prefix_hashes is not None
    lens = np.array([len(h) for h in w.prefix_hashes])
    np.testing.assert_array_equal(lens, -(-w.num_prompt_tokens // 512))
    assert not w.meta["jittered"]  # 11 repeats in 3,993 rows: not bucketed


def test_sharegpt_clamps_and_counts_zero_lengths() -> None:
    w = read_trace("sharegpt")
    assert w.meta["num_clamped"] == 14  # 7 empty prompts + 7 empty replies in the table


def test_max_model_len_counts_but_keeps() -> None:
    w = read_trace("arxiv", max_model_len=2048)
    over = int(np.sum(w.num_prompt_tokens + w.num_output_tokens > 2048))
    assert len(w) == 28_257 and w.meta["num_over_max_model_len"] == over > 0


def test_conversation_jitter_stays_in_buckets_and_is_deterministic() -> None:
    raw = read_trace("mooncake_conversation", jitter=False)
    a = read_trace("mooncake_conversation", seed=1)
    b = read_trace("mooncake_conversation", seed=1)
    c = read_trace("mooncake_conversation", seed=2)
    assert a.meta["jittered"] and not raw.meta["jittered"]
    assert a.meta["bucket_s"] == pytest.approx(3.0)
    np.testing.assert_array_equal(a.arrival_at, b.arrival_at)
    assert not np.array_equal(a.arrival_at, c.arrival_at)
    distinct = np.unique(raw.arrival_at)
    upper = np.append(distinct[1:], distinct[-1] + a.meta["bucket_s"])
    hi = upper[np.searchsorted(distinct, raw.arrival_at)]
    assert np.all(a.arrival_at >= raw.arrival_at) and np.all(a.arrival_at < hi)
    assert np.all(np.diff(a.arrival_at) >= 0)
    # Rows are not reordered: lengths stay with their row.
    np.testing.assert_array_equal(a.num_prompt_tokens, raw.num_prompt_tokens)
    assert len(np.unique(a.arrival_at)) == len(a)


def _rich_workload() -> Workload:
    w = sessions(40, [1, 2, 3], 2.5, 3.0, Fixed(40, 7), stream(0, "w"), accumulate_history=True)
    rng = stream(0, "extra")
    tenant = np.array([f"t{i}, \"q\"" for i in rng.integers(0, 3, len(w))], dtype=object)
    program = np.array([f"p{i}" for i in range(len(w))], dtype=object)
    return Workload(w.arrival_at + rng.random() / 3, w.num_prompt_tokens, w.num_output_tokens,
                    prefix_hashes=w.prefix_hashes, prefix_block_tokens=32, tenant=tenant,
                    program_id=program, session_id=w.session_id, turn=w.turn,
                    think_time_s=w.think_time_s)


def _assert_same(a: Workload, b: Workload) -> None:
    for name in ("arrival_at", "num_prompt_tokens", "num_output_tokens", "tenant", "program_id",
                 "session_id", "turn", "think_time_s"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.prefix_hashes == b.prefix_hashes
    assert a.prefix_block_tokens == b.prefix_block_tokens


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_generic_round_trip(tmp_path: Path, ext: str) -> None:
    w = _rich_workload()
    path = tmp_path / f"trace.{ext}"
    (write_trace_csv if ext == "csv" else write_trace_jsonl)(w, path)
    back = read_trace(path)
    assert back.meta["format"] == "generic"
    _assert_same(w, back)


def test_round_trip_of_builtin_subset(tmp_path: Path) -> None:
    w = read_trace("mooncake_conversation").head(500)
    write_trace_csv(w, tmp_path / "m.csv")
    _assert_same(w, read_trace(tmp_path / "m.csv"))


def test_generic_optional_prefix_formats(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('prompt_tokens,prefix_hashes,output_tokens,arrival_s\n'
                    '5,1;2;3,1,0.5\n6,"[4, 5]",2,1.0\n7,,3,1.5\n8,6 7,4,2\n')
    w = read_trace(path)
    assert w.prefix_hashes == ((1, 2, 3), (4, 5), (), (6, 7))
    assert w.num_prompt_tokens.tolist() == [5, 6, 7, 8]


def test_unsorted_generic_rows_are_sorted_stably(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n2,1,1\n1,2,1\n2,3,1\n0,4,1\n")
    w = read_trace(path)
    assert w.meta["resorted"] is True
    assert w.arrival_at.tolist() == [0, 1, 2, 2]
    assert w.num_prompt_tokens.tolist() == [4, 2, 1, 3]


def test_vidur_format(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("request_id,arrived_at,num_prefill_tokens,num_decode_tokens,Date\n"
                    "0,0.0,1336,147,2024-01-01\n1,1.019597,620,404,2024-01-01\n")
    w = read_trace(path)
    assert w.meta["format"] == "vidur" and w.num_output_tokens.tolist() == [147, 404]


def test_missing_file_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mooncake_conversation"):
        read_trace(tmp_path / "absent.csv")


def test_bom_and_comma_separated_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes("\ufeffarrival_s,prompt_tokens,output_tokens,prefix_hashes\n"
                     '0,3,1,"1,2"\n'.encode())
    assert read_trace(path).prefix_hashes == ((1, 2),)


def test_forced_jitter_on_generic_batch(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    rows = [f'{{"arrival_s": {t}, "prompt_tokens": {i + 1}, "output_tokens": 1}}'
            for i, t in enumerate([0, 0, 0, 2, 2])]
    path.write_text("\n".join(rows) + "\n")
    plain = read_trace(path)
    assert not plain.meta["jittered"] and plain.arrival_at.tolist() == [0, 0, 0, 2, 2]
    w = read_trace(path, jitter=True, seed=3)
    assert w.meta["jittered"] and w.meta["bucket_s"] == 2.0
    assert np.all(w.arrival_at[:3] < 2) and np.all((w.arrival_at[3:] >= 2) & (w.arrival_at[3:] < 4))
    assert w.num_prompt_tokens.tolist() == [1, 2, 3, 4, 5]


def _csv(path: Path, *lines: str) -> Path:
    """``path`` holding ``lines`` (header first), one per line."""
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_azure_2024_utc_offsets_are_applied(tmp_path: Path) -> None:
    # The 2024 trace writes "+00:00"; another offset must shift the instant, not be dropped.
    w = read_trace(_csv(tmp_path / "azure24.csv", "TIMESTAMP,ContextTokens,GeneratedTokens",
                        "2024-05-10 00:00:00.009930+00:00,4808,10",
                        "2024-05-10 01:00:01.500000+01:00,3180,8",
                        "2024-05-10 00:00:02Z,110,27"))
    assert w.meta["format"] == "azure"
    np.testing.assert_allclose(w.arrival_at, [0.0, 1.49007, 1.99007])
    bad = _csv(tmp_path / "bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens",
               "2024-05-10 00:00:00+00:00,1,1", "yesterday+00:00,1,1")
    with pytest.raises(InputError, match=r"line 3.*TIMESTAMP.*not a timestamp"):
        read_trace(bad)


def test_burstgpt_format_clamps_failed_requests_and_keeps_models(tmp_path: Path) -> None:
    header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
    path = _csv(tmp_path / "burst.csv", header, "5,ChatGPT,472,18,490,Conversation log",
                "45,ChatGPT,1087,0,1087,Conversation log", "118,GPT-4,417,276,693,API log")
    w = read_trace(path)
    assert w.meta["format"] == "burstgpt" and w.meta["num_clamped"] == 1
    np.testing.assert_array_equal(w.arrival_at, [5.0, 45.0, 118.0])
    np.testing.assert_array_equal(w.num_prompt_tokens, [472, 1087, 417])
    np.testing.assert_array_equal(w.num_output_tokens, [18, 1, 276])
    assert list(w.tenant) == ["ChatGPT", "ChatGPT", "GPT-4"]
    _csv(path, header, "5,ChatGPT,472,-3,469,Conversation log")
    with pytest.raises(InputError, match=r"line 2.*Response tokens.*>= 0"):
        read_trace(path)


def test_llmservingsim_workload_format() -> None:
    # The validation bundles' arrival schedules read as traces (nanoseconds -> seconds).
    from servoir.validation.bundle import BUNDLES_DIR

    w = read_trace(BUNDLES_DIR / "RTXPRO6000_Llama-3.1-8B" / "workload.csv")
    assert w.meta["format"] == "llmservingsim" and len(w) == 300
    assert w.arrival_at[0] == pytest.approx(0.046926808)
    assert (w.num_prompt_tokens[0], w.num_output_tokens[0]) == (2358, 531)

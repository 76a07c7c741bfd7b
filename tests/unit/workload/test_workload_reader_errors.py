"""Malformed traces: each error names the file, the physical line and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servoir.errors import InputError
from servoir.workload import read_trace

H = "arrival_s,prompt_tokens,output_tokens\n"

# name -> (file name, content, expected line, expected field or None, message fragment)
CASES: dict[str, tuple[str, str, int, str | None, str]] = {
    "non_numeric": ("a.csv", H + "0,10,5\n1,ten,5\n", 3, "prompt_tokens", "not a number"),
    "missing_column": ("a.csv", "arrival_s,prompt_tokens\n0,1\n", 1, "output_tokens",
                       "missing column"),
    "missing_value": ("a.csv", H + "0,10,5\n1,,5\n", 3, "prompt_tokens", "missing value"),
    "zero_prompt": ("a.csv", H + "0,10,5\n1,0,5\n", 3, "prompt_tokens", ">= 1"),
    "negative_output": ("a.csv", H + "0,10,-2\n", 2, "output_tokens", ">= 1"),
    "fractional_tokens": ("a.csv", H + "0,10.5,2\n", 2, "prompt_tokens", "integer"),
    "negative_arrival": ("a.csv", H + "0,1,1\n-1,1,1\n", 3, "arrival_s", ">= 0"),
    "nan_arrival": ("a.csv", H + "nan,1,1\n", 2, "arrival_s", "finite"),
    "inf_arrival": ("a.csv", H + "0,1,1\n\n\ninf,1,1\n", 5, "arrival_s", "finite"),
    "wrong_columns": ("a.csv", H + "0,1,1\n1,1\n", 3, None, "expected 3 columns, got 2"),
    "quoted_newline": ("a.csv", "arrival_s,prompt_tokens,output_tokens,tenant\n"
                       '0,1,1,"a\nb"\n1,x,1,c\n', 4, "prompt_tokens", "not a number"),
    "bad_prefix": ("a.csv", "arrival_s,prompt_tokens,output_tokens,prefix_hashes\n"
                   "0,1,1,1 2\n0,1,1,1 x\n", 3, "prefix_hashes", "list of integers"),
    "empty_file": ("a.csv", "", 1, None, "empty file"),
    "header_only": ("a.csv", H, 1, None, "no data rows"),
    "unknown_header": ("a.csv", "foo,bar\n1,2\n", 1, None, "accepted formats"),
    "azure_bad_timestamp": ("z.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                            "2023-11-16 18:17:03.9799600,4808,10\nyesterday,1,1\n", 3,
                            "TIMESTAMP", "not a timestamp"),
    "sharegpt_negative": ("s.csv", "conv_idx,turn,user_tokens,assistant_tokens,history_tokens\n"
                          "0,0,3,4,0\n0,1,3,-4,7\n", 3, "assistant_tokens", ">= 0"),
    "jsonl_invalid": ("a.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
                      '\n{"arrival_s": 1, "prompt_tokens": 1,\n', 3, None, "invalid JSON"),
    "jsonl_not_object": ("a.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
                         "[1, 2, 3]\n", 2, None, "expected a JSON object, got list"),
    "jsonl_missing_key": ("a.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}'
                          '\n\n\n{"arrival_s": 1, "prompt_tokens": 1}\n', 4, "output_tokens",
                          "missing key"),
    "jsonl_null": ("a.jsonl", '\n{"arrival_s": null, "prompt_tokens": 1, "output_tokens": 1}\n',
                   2, "arrival_s", "null"),
    "jsonl_string_number": ("a.jsonl",
                            '{"arrival_s": 0, "prompt_tokens": "7", "output_tokens": 1}\n',
                            1, "prompt_tokens", "not a number"),
    "jsonl_empty": ("a.jsonl", "\n\n", 1, None, "empty file"),
    "jsonl_unknown_keys": ("a.jsonl", '{"t": 0, "p": 1}\n', 1, None, "accepted formats"),
    "mooncake_zero_output": ("m.jsonl",
                             '{"timestamp": 0, "input_length": 5, "output_length": 3}\n'
                             '{"timestamp": 3000, "input_length": 5, "output_length": 0}\n',
                             2, "output_length", ">= 1"),
    "mooncake_bad_hashes": ("m.jsonl", '{"timestamp": 0, "input_length": 5, '
                            '"output_length": 3, "hash_ids": [1, "a"]}\n', 1, "hash_ids",
                            "list of integers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_trace_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    name, content, line, field, fragment = CASES[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_trace(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg and re.search(rf"\bline {line}\b", msg)
    assert err.line == line and err.file == str(path)
    assert fragment in msg
    if field is not None:
        assert err.field == field and f"'{field}'" in msg

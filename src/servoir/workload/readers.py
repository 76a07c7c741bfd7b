"""Read request traces into a :class:`~servoir.workload.requests.Workload`, and write them back.

:func:`read_trace` recognises the format by extension (``.csv``; ``.jsonl``/``.ndjson``/``.json``;
otherwise by the first character) and then by the header or the first object's keys:

========================  ===============================================================
format                    required columns / keys
========================  ===============================================================
generic CSV or JSONL      ``arrival_s, prompt_tokens, output_tokens`` (any order), optional
                          ``prefix_hashes, prefix_block_tokens, tenant, program_id,
                          session_id, turn, think_time_s``
Vidur CSV                 ``arrived_at, num_prefill_tokens, num_decode_tokens``
Azure LLM 2023/2024 CSV   ``TIMESTAMP, ContextTokens, GeneratedTokens`` (a UTC offset such as
                          ``+00:00`` on the timestamps, as in the 2024 trace, is applied)
BurstGPT CSV              ``Timestamp`` (s), ``Request tokens, Response tokens``, optional
                          ``Model`` (kept as ``tenant``), ``Total tokens, Log Type``
LLMServingSim / vLLM      ``arrival_time_ns, input_toks, output_toks`` (the ``workload.csv``
bench CSV                 of the validation bundles)
Mooncake JSONL            ``timestamp`` (ms), ``input_length, output_length``, optional
                          ``hash_ids`` (prefix blocks of 512 tokens)
ShareGPT length table     ``conv_idx, turn, user_tokens, assistant_tokens, history_tokens``
arXiv length table        ``num_prefill_tokens, num_decode_tokens``
========================  ===============================================================

Decisions, the same for every format:

- Nothing is dropped silently. Every data row becomes a request or an :class:`InputError` naming
  the file, the physical line (the CSV header is line 1; the first JSONL line is line 1; blank
  lines count but are skipped) and the field.
- Rows out of arrival order are sorted stably (real traces are sometimes unordered) and
  ``meta["resorted"]`` is set to True.
- Token counts must be integers ``>= 1``. Two exceptions, where zeros are part of the data:
  the ShareGPT table has 7 turns with an empty prompt and 7 with an empty reply, and BurstGPT
  logs failed requests with 0 response tokens. There zero counts are clamped to 1 and counted
  in ``meta["num_clamped"]`` (rows with at least one count clamped); negative or fractional
  counts are still errors.
- Length tables (ShareGPT, arXiv) have no timestamps: every ``arrival_at`` is 0 (one batch) and
  ``meta["has_arrivals"]`` is False. Pair them with a generator through
  :class:`~servoir.workload.lengths.Empirical`.
- ``max_model_len`` never removes requests (the simulator rejects and counts them); the number
  that exceed it is recorded in ``meta["num_over_max_model_len"]``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servoir.errors import InputError, UnknownNameError
from servoir.rng import stream
from servoir.workload.requests import Workload

__all__ = [
    "BUILTIN_TRACES",
    "builtin_trace_path",
    "read_trace",
    "sharegpt_turns",
    "write_trace_csv",
    "write_trace_jsonl",
]

_TRACE_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"

BUILTIN_TRACES: dict[str, str] = {
    "azure_code": "azure_llm_2023/AzureLLMInferenceTrace_code.csv",
    "azure_conv": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
    "mooncake_conversation": "mooncake_fast25/conversation_trace.jsonl",
    "mooncake_synthetic": "mooncake_fast25/synthetic_trace.jsonl",
    "sharegpt": "sharegpt_v3_lengths/sharegpt_v3_turn_lengths.csv",
    "arxiv": "vidur_arxiv_summarization_lengths/"
             "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
    # The workloads of the Vidur comparison (servoir/data/vidur_baseline).
    **{f"vidur_{w}": f"../vidur_baseline/workloads/{w}.csv"
       for w in ("w1k_qps1", "w1k_qps2", "w1k_qps4", "w10k_qps1", "w10k_qps2")},
}
"""Short name -> path of the shipped file, relative to ``servoir/data/traces``."""

_CSV_FORMATS: dict[str, tuple[str, ...]] = {
    # Checked in this order: "vidur" before "arxiv" because its columns are a superset.
    "generic": ("arrival_s", "prompt_tokens", "output_tokens"),
    "vidur": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
    "llmservingsim": ("arrival_time_ns", "input_toks", "output_toks"),
    "sharegpt": ("conv_idx", "turn", "user_tokens", "assistant_tokens", "history_tokens"),
    "arxiv": ("num_prefill_tokens", "num_decode_tokens"),
}
_JSONL_FORMATS: dict[str, tuple[str, ...]] = {
    "generic": ("arrival_s", "prompt_tokens", "output_tokens"),
    "mooncake": ("timestamp", "input_length", "output_length"),
}
_MOONCAKE_BLOCK_TOKENS = 512
_MISSING = object()  # a JSON object without the key, told apart from an explicit null
_SPLIT = re.compile(r"[;,\s]+")


def builtin_trace_path(name: str) -> Path:
    """Path of the shipped trace ``name`` (one of :data:`BUILTIN_TRACES`).

    Examples
    --------
    >>> builtin_trace_path("azure_code").name
    'AzureLLMInferenceTrace_code.csv'
    """
    if name not in BUILTIN_TRACES:
        raise UnknownNameError("trace", name, list(BUILTIN_TRACES))
    return (_TRACE_DIR / BUILTIN_TRACES[name]).resolve()


def _resolve(path_or_name: str | Path) -> Path:
    if isinstance(path_or_name, str) and path_or_name in BUILTIN_TRACES:
        return builtin_trace_path(path_or_name)
    path = Path(path_or_name)
    if not path.is_file():
        raise InputError(f"no such trace file; built-in names: {', '.join(BUILTIN_TRACES)}",
                         file=str(path))
    return path


# ----------------------------------------------------------------------------- parsing


class _Table:
    """Raw columns (strings for CSV, JSON values for JSONL) and each row's physical line."""

    def __init__(self, file: str, fmt: str, columns: dict[str, list[Any]],
                 lines: list[int] | None, is_json: bool) -> None:
        self.file, self.fmt, self.columns, self._lines = file, fmt, columns, lines
        self.is_json = is_json

    @property
    def lines(self) -> list[int]:
        """Each row's physical line (for a CSV read on the fast path: found again on demand,
        since only error messages need them)."""
        if self._lines is None:
            self._lines = _read_csv_rows(Path(self.file), len(self.columns))[1]
        return self._lines

    def error(self, row: int, field: str, message: str) -> InputError:
        return InputError(message, file=self.file, line=self.lines[row], field=field)

    def has(self, name: str) -> bool:
        return name in self.columns


def _detect(keys: Sequence[str], formats: dict[str, tuple[str, ...]], file: str, line: int,
            what: str) -> str:
    """Name of the format whose required keys are all present; else a precise error."""
    present = set(keys)
    for fmt, required in formats.items():
        if present.issuperset(required):
            return fmt
    # Blame the format sharing the most keys: a typo in one column should say which is missing.
    best = max(formats, key=lambda f: len(present.intersection(formats[f])))
    missing = [k for k in formats[best] if k not in present]
    if len(present.intersection(formats[best])) > 0:
        raise InputError(f"missing {what} {missing[0]!r} ({best} format)", file=file, line=line,
                         field=missing[0])
    accepted = "; ".join(f"{f}: {', '.join(r)}" for f, r in formats.items())
    raise InputError(f"unknown {what}s {sorted(present)}; accepted formats: {accepted}",
                     file=file, line=line)


def _read_csv(path: Path) -> _Table:
    file = str(path)
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise InputError("empty file (no header, no data rows)", file=file, line=1)
        if len(set(header)) != len(header):
            raise InputError(f"duplicate column names in header {header}", file=file, line=1)
        fmt = _detect(header, _CSV_FORMATS, file, 1, "column")
        try:
            rows = list(reader)
        except csv.Error:
            rows = None  # the line-by-line pass below says where
    n = len(header)
    lines: list[int] | None = None
    if rows is None or not all(len(row) == n for row in rows):
        # Blank lines, a short row or malformed quoting: the careful pass, line by line.
        rows, lines = _read_csv_rows(path, n)
    if not rows:
        raise InputError("empty file (no data rows)", file=file, line=1)
    columns = {name: list(col) for name, col in zip(header, zip(*rows, strict=True), strict=True)}
    return _Table(file, fmt, columns, lines, is_json=False)


def _read_csv_rows(path: Path, n: int) -> tuple[list[list[str]], list[int]]:
    """Data rows of a CSV with ``n`` columns and the line each starts on; skips blank lines and
    raises a precise error (file, line) on a row of the wrong length or malformed quoting."""
    file = str(path)
    rows: list[list[str]] = []
    lines: list[int] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        end = reader.line_num
        try:
            for row in reader:
                # A row starts on the line after the previous one ended (quoted newlines span).
                start, end = end + 1, reader.line_num
                if not row:
                    continue  # a blank line: not a data row
                if len(row) != n:
                    raise InputError(f"expected {n} columns, got {len(row)}", file=file,
                                     line=start)
                rows.append(row)
                lines.append(start)
        except csv.Error as exc:
            raise InputError(f"malformed CSV: {exc}", file=file, line=reader.line_num) from None
    return rows, lines


def _read_jsonl(path: Path) -> _Table:
    file = str(path)
    objs: list[dict[str, Any]] = []
    lines: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=file,
                                 line=lineno) from None
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, got {type(obj).__name__}",
                                 file=file, line=lineno)
            objs.append(obj)
            lines.append(lineno)
    if not objs:
        raise InputError("empty file (no data rows)", file=file, line=1)
    fmt = _detect(list(objs[0]), _JSONL_FORMATS, file, lines[0], "key")
    keys = set().union(*objs)
    columns = {k: [o.get(k, _MISSING) for o in objs] for k in keys}
    return _Table(file, fmt, columns, lines, is_json=True)


def _value_problem(v: Any, is_json: bool) -> str | None:
    """Why ``v`` is not a number (None when it is)."""
    if is_json:
        if v is _MISSING:
            return "missing key"
        if v is None:
            return "missing value (null)"
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"not a number: {v!r}"
        return None
    if not v.strip():
        return "missing value"
    try:
        float(v)
    except ValueError:
        return f"not a number: {v!r}"
    return None


def _floats(t: _Table, name: str) -> np.ndarray:
    values = t.columns[name]
    if t.is_json:
        # JSON values are typed already; np.array would turn null into NaN and True into 1.
        for i, v in enumerate(values):
            if (problem := _value_problem(v, True)) is not None:
                raise t.error(i, name, problem)
    try:
        return np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        for i, v in enumerate(values):
            if (problem := _value_problem(v, t.is_json)) is not None:
                raise t.error(i, name, problem) from None
        raise InputError("values that numpy cannot parse", file=t.file, field=name) from None


def _check(t: _Table, name: str, bad: np.ndarray, message: str) -> None:
    if bad.any():
        raise t.error(int(np.argmax(bad)), name, message)


def _ints(t: _Table, name: str, min_value: int = 1) -> np.ndarray:
    x = _floats(t, name)
    _check(t, name, ~np.isfinite(x) | (x != np.floor(x)), "must be an integer")
    _check(t, name, x < min_value, f"must be >= {min_value}")
    return x.astype(np.int64)


def _seconds(t: _Table, name: str, scale: float = 1.0) -> np.ndarray:
    x = _floats(t, name)
    _check(t, name, ~np.isfinite(x), "arrival time must be finite")
    _check(t, name, x < 0, "arrival time must be >= 0")
    return x * scale


def _hashes(t: _Table, name: str) -> tuple[tuple[int, ...], ...]:
    out = []
    for i, v in enumerate(t.columns[name]):
        try:
            out.append(_parse_hashes(v))
        except (ValueError, TypeError):
            raise t.error(i, name, f"expected a list of integers, got {v!r}") from None
    return tuple(out)


def _parse_hashes(v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        v = v.strip()
        if v.startswith("["):
            v = json.loads(v)
        else:
            return tuple(int(s) for s in _SPLIT.split(v) if s)
    if v is _MISSING or v is None:
        return ()
    if not isinstance(v, list) or any(type(h) is not int for h in v):
        raise ValueError(v)
    return tuple(v)


def _strings(t: _Table, name: str) -> np.ndarray:
    values = ["" if v is _MISSING or v is None else str(v) for v in t.columns[name]]
    return np.array(values, dtype=object)


# ----------------------------------------------------------------------------- formats


def _generic(t: _Table) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "arrival_at": _seconds(t, "arrival_s"),
        "num_prompt_tokens": _ints(t, "prompt_tokens"),
        "num_output_tokens": _ints(t, "output_tokens"),
    }
    if t.has("prefix_hashes"):
        cols["prefix_hashes"] = _hashes(t, "prefix_hashes")
    if t.has("prefix_block_tokens"):
        block = _ints(t, "prefix_block_tokens")
        _check(t, "prefix_block_tokens", block != block[0], "must be the same on every row")
        cols["prefix_block_tokens"] = int(block[0])
    for name in ("tenant", "program_id"):
        if t.has(name):
            cols[name] = _strings(t, name)
    if t.has("session_id"):
        cols["session_id"] = _ints(t, "session_id", min_value=-1)
    if t.has("turn"):
        cols["turn"] = _ints(t, "turn", min_value=0)
    if t.has("think_time_s"):
        think = _floats(t, "think_time_s")
        _check(t, "think_time_s", ~np.isfinite(think) | (think < 0), "must be finite and >= 0")
        cols["think_time_s"] = think
    return cols


def _vidur(t: _Table) -> dict[str, Any]:
    return {"arrival_at": _seconds(t, "arrived_at"),
            "num_prompt_tokens": _ints(t, "num_prefill_tokens"),
            "num_output_tokens": _ints(t, "num_decode_tokens")}


_UTC_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def _timestamps(t: _Table, name: str) -> np.ndarray:
    """ISO timestamps as UTC ``datetime64[ns]``: a trailing ``Z`` or ``+HH:MM`` offset (the Azure
    2024 trace writes ``+00:00``) is applied, not dropped, and a row without one is UTC."""
    values = [v.strip() for v in t.columns[name]]
    offsets = None
    if any(_UTC_OFFSET.search(v) for v in values[:1] + values[-1:]):
        offsets = np.zeros(len(values), dtype="timedelta64[m]")
        naive = []
        for i, v in enumerate(values):
            m = _UTC_OFFSET.search(v)
            if m is not None and m.group(1) != "Z":
                hhmm = m.group(1).replace(":", "")
                sign = -1 if hhmm[0] == "-" else 1
                offsets[i] = sign * (int(hhmm[1:3]) * 60 + int(hhmm[3:5]))
            naive.append(v[:m.start()] if m is not None else v)
        values = naive
    try:
        stamps = np.array(values, dtype="datetime64[ns]")
    except ValueError:
        for i, v in enumerate(values):
            try:
                np.datetime64(v, "ns")
            except ValueError:
                raise t.error(i, name, f"not a timestamp: {v!r}") from None
        raise
    _check(t, name, np.isnat(stamps), "missing timestamp")
    return stamps if offsets is None else stamps - offsets


def _azure(t: _Table) -> dict[str, Any]:
    stamps = _timestamps(t, "TIMESTAMP")
    # Seconds since the earliest row (the first row, as the files are sorted); integer
    # nanoseconds are subtracted before the float conversion to keep the 100 ns resolution.
    arrival = (stamps - stamps.min()).astype(np.int64) / 1e9
    return {"arrival_at": arrival,
            "num_prompt_tokens": _ints(t, "ContextTokens"),
            "num_output_tokens": _ints(t, "GeneratedTokens")}


def _burstgpt(t: _Table) -> dict[str, Any]:
    # Failed requests are logged with 0 response tokens: clamped to 1 and counted, like the
    # ShareGPT table's empty turns (a request that was sent still costs its prefill).
    prompt = _ints(t, "Request tokens", min_value=0)
    output = _ints(t, "Response tokens", min_value=0)
    cols: dict[str, Any] = {"arrival_at": _seconds(t, "Timestamp"),
                            "num_prompt_tokens": np.maximum(prompt, 1),
                            "num_output_tokens": np.maximum(output, 1),
                            "meta": {"num_clamped": int(((prompt < 1) | (output < 1)).sum())}}
    if t.has("Model"):
        cols["tenant"] = _strings(t, "Model")
    return cols


def _llmservingsim(t: _Table) -> dict[str, Any]:
    return {"arrival_at": _seconds(t, "arrival_time_ns", scale=1e-9),
            "num_prompt_tokens": _ints(t, "input_toks"),
            "num_output_tokens": _ints(t, "output_toks")}


def _mooncake(t: _Table) -> dict[str, Any]:
    cols: dict[str, Any] = {"arrival_at": _seconds(t, "timestamp", scale=1e-3),
                            "num_prompt_tokens": _ints(t, "input_length"),
                            "num_output_tokens": _ints(t, "output_length")}
    if t.has("hash_ids"):
        cols["prefix_hashes"] = _hashes(t, "hash_ids")
        cols["prefix_block_tokens"] = _MOONCAKE_BLOCK_TOKENS
    return cols


def _sharegpt_columns(t: _Table) -> dict[str, np.ndarray]:
    return {"conv_idx": _ints(t, "conv_idx", 0), "turn": _ints(t, "turn", 0),
            "user_tokens": _ints(t, "user_tokens", 0),
            "assistant_tokens": _ints(t, "assistant_tokens", 0),
            "history_tokens": _ints(t, "history_tokens", 0)}


def _sharegpt(t: _Table) -> dict[str, Any]:
    c = _sharegpt_columns(t)
    prompt = c["history_tokens"] + c["user_tokens"]
    output = c["assistant_tokens"]
    clamped = (prompt < 1) | (output < 1)
    return {"arrival_at": np.zeros(len(prompt)), "num_prompt_tokens": np.maximum(prompt, 1),
            "num_output_tokens": np.maximum(output, 1),
            "meta": {"has_arrivals": False, "num_clamped": int(clamped.sum())}}


def _arxiv(t: _Table) -> dict[str, Any]:
    prompt = _ints(t, "num_prefill_tokens")
    return {"arrival_at": np.zeros(len(prompt)), "num_prompt_tokens": prompt,
            "num_output_tokens": _ints(t, "num_decode_tokens"), "meta": {"has_arrivals": False}}


_BUILDERS: dict[str, Callable[[_Table], dict[str, Any]]] = {
    "generic": _generic, "vidur": _vidur, "azure": _azure, "burstgpt": _burstgpt,
    "llmservingsim": _llmservingsim, "mooncake": _mooncake, "sharegpt": _sharegpt,
    "arxiv": _arxiv,
}


# ----------------------------------------------------------------------------- assembly


def _jitter(arrival: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Spread each group of equal (sorted) timestamps uniformly up to the next distinct one.

    The rows of a group keep their file order: sorted uniform draws are assigned in order. The
    last group spreads over one bucket width, the median spacing of distinct timestamps. Groups
    occupy disjoint intervals, so one global sort both orders the draws and keeps every row in
    its own bucket.
    """
    distinct, inverse = np.unique(arrival, return_inverse=True)
    width = float(np.median(np.diff(distinct))) if len(distinct) > 1 else 1.0
    upper = np.append(distinct[1:], distinct[-1] + width)
    lo, hi = distinct[inverse], upper[inverse]
    u = stream(seed, "trace_jitter").random(len(arrival))
    return np.sort(lo + u * (hi - lo)), width


def _is_bucketed(arrival: np.ndarray) -> bool:
    # A trace is bucketed when timestamps repeat on average at least twice per value (Mooncake's
    # conversation trace: ~10 per 3 s bucket); its synthetic trace repeats 11 of 3,993 and is not.
    return len(np.unique(arrival)) * 2 <= len(arrival)


def _assemble(cols: dict[str, Any], file: str, meta: dict[str, object]) -> Workload:
    arrival = cols["arrival_at"]
    order = None
    if len(arrival) > 1 and np.any(np.diff(arrival) < 0):
        order = np.argsort(arrival, kind="stable")
    meta["resorted"] = order is not None
    if order is not None:
        for k, v in cols.items():
            if isinstance(v, np.ndarray):
                cols[k] = v[order]
            elif isinstance(v, tuple):
                cols[k] = tuple(v[i] for i in order)
    return Workload(**cols, source=file, meta=meta)


def read_trace(path_or_builtin_name: str | Path, *, seed: int = 0,
               max_model_len: int | None = None, jitter: bool | None = None) -> Workload:
    """Read a trace file (or a built-in trace by name) into a workload sorted by arrival.

    Parameters
    ----------
    path_or_builtin_name
        A file path, or a key of :data:`BUILTIN_TRACES` such as ``"azure_conv"``.
    seed
        Root seed of the arrival jitter (stream ``"trace_jitter"``); nothing else is random.
    max_model_len
        Only counted: ``meta["num_over_max_model_len"]`` is the number of requests whose prompt
        plus output exceed it. No request is removed.
    jitter
        Spread requests that share a timestamp over ``[t, next distinct t)`` (see the module
        notes). ``None`` (default) jitters Mooncake traces whose timestamps are bucketed (on
        average two or more rows per distinct timestamp), which is the conversation trace's
        ~3 s bucketing; True forces it for any format with arrivals, False disables it.
        ``meta["jittered"]`` tells which happened, ``meta["bucket_s"]`` the last bucket's width.

    Returns
    -------
    Workload
        ``source`` is the file path; ``meta`` has ``format``, ``has_arrivals``, ``resorted``,
        ``jittered`` and, for ShareGPT and BurstGPT, ``num_clamped``.

    Raises
    ------
    InputError
        On any malformed row, naming the file, physical line and field.

    Examples
    --------
    >>> w = read_trace("azure_code")
    >>> len(w), float(w.arrival_at[0])
    (8819, 0.0)
    """
    path = _resolve(path_or_builtin_name)
    is_json = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or (
        path.suffix.lower() != ".csv" and _first_char(path) == "{")
    try:
        t = _read_jsonl(path) if is_json else _read_csv(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}): a trace must be CSV or JSONL",
                         file=str(path)) from None
    cols = _BUILDERS[t.fmt](t)
    meta: dict[str, object] = {"format": t.fmt, "has_arrivals": True, **cols.pop("meta", {})}
    if isinstance(path_or_builtin_name, str) and path_or_builtin_name in BUILTIN_TRACES:
        meta["trace"] = path_or_builtin_name
    if max_model_len is not None:
        total = cols["num_prompt_tokens"] + cols["num_output_tokens"]
        meta["max_model_len"] = max_model_len
        meta["num_over_max_model_len"] = int(np.count_nonzero(total > max_model_len))
    w = _assemble(cols, t.file, meta)
    do_jitter = jitter if jitter is not None else (
        t.fmt == "mooncake" and _is_bucketed(w.arrival_at))
    meta["jittered"] = bool(do_jitter and meta["has_arrivals"])
    if meta["jittered"]:
        arrival, meta["bucket_s"] = _jitter(w.arrival_at, seed)
        w = Workload(**{**_columns(w), "arrival_at": arrival}, source=w.source, meta=meta)
    return w


def _first_char(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        for text in fh:
            if text.strip():
                return text.lstrip()[0]
    return ""


def sharegpt_turns(path_or_name: str | Path = "sharegpt") -> dict[str, np.ndarray]:
    """The raw ShareGPT length table as int64 columns (no clamping, file order).

    Keys: ``conv_idx, turn, user_tokens, assistant_tokens, history_tokens``. Used by
    :func:`servoir.workload.generators.sharegpt_sessions`.
    """
    path = _resolve(path_or_name)
    t = _read_csv(path)
    if t.fmt != "sharegpt":
        raise InputError(f"not a ShareGPT length table ({t.fmt} format)", file=t.file, line=1)
    return _sharegpt_columns(t)


# ----------------------------------------------------------------------------- writing


def _columns(w: Workload) -> dict[str, Any]:
    names = ("arrival_at", "num_prompt_tokens", "num_output_tokens", "prefix_hashes",
             "prefix_block_tokens", "tenant", "program_id", "session_id", "turn", "think_time_s")
    return {n: getattr(w, n) for n in names}


def _records(w: Workload) -> tuple[list[str], list[list[Any]]]:
    """Generic-format column names and per-column Python values (floats, ints, strings)."""
    header = ["arrival_s", "prompt_tokens", "output_tokens"]
    cols: list[list[Any]] = [w.arrival_at.tolist(), w.num_prompt_tokens.tolist(),
                             w.num_output_tokens.tolist()]
    if w.prefix_hashes is not None:
        header += ["prefix_hashes", "prefix_block_tokens"]
        cols += [[list(h) for h in w.prefix_hashes], [w.prefix_block_tokens] * len(w)]
    for name in ("tenant", "program_id"):
        col = getattr(w, name)
        if col is not None:
            header.append(name)
            cols.append([str(v) for v in col])
    for name in ("session_id", "turn", "think_time_s"):
        col = getattr(w, name)
        if col is not None:
            header.append(name)
            cols.append(col.tolist())
    return header, cols


def write_trace_csv(workload: Workload, path: str | Path) -> None:
    """Write ``workload`` in the generic CSV format; :func:`read_trace` reads it back exactly.

    Floats are written with ``repr`` (shortest round-trip form) and ``prefix_hashes`` as
    space-separated integers.
    """
    header, cols = _records(workload)
    if workload.prefix_hashes is not None:
        cols[3] = [" ".join(map(str, h)) for h in cols[3]]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*cols, strict=True))


def write_trace_jsonl(workload: Workload, path: str | Path) -> None:
    """Write ``workload`` as generic JSONL (one object per request); round-trips exactly."""
    header, cols = _records(workload)
    with Path(path).open("w", encoding="utf-8") as fh:
        for row in zip(*cols, strict=True):
            fh.write(json.dumps(dict(zip(header, row, strict=True))) + "\n")

"""Synthetic workloads: an arrival process paired with a length distribution.

Conventions shared by every generator:

- The first arrival is at the first drawn gap, not at 0: ``arrival_at = cumsum(gaps)``. For a
  Poisson stream this is exactly the stationary process observed from time 0 (memorylessness);
  for MMPP the initial state is drawn from the stationary distribution, for the same reason.
- ``rng`` is split with ``rng.spawn`` into independent child streams for arrivals, lengths and
  (for sessions) turns and think times. Changing the rate therefore never changes the lengths
  drawn: two workloads built from equal seeds differ only in what was changed (common random
  numbers). Pass ``servoir.rng.stream(seed, "arrivals")`` for a named, reproducible stream.
- The returned :class:`~servoir.workload.requests.Workload` is sorted by ``arrival_at``, and
  ``meta`` records the process and its parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from servoir.errors import InputError
from servoir.workload.lengths import LengthDistribution
from servoir.workload.readers import sharegpt_turns
from servoir.workload.requests import Workload

__all__ = [
    "gamma",
    "mmpp",
    "mmpp_mean_rate",
    "onoff",
    "poisson",
    "sessions",
    "sharegpt_sessions",
]

TurnCounts = int | Sequence[int] | np.ndarray | Callable[[int, np.random.Generator], np.ndarray]
"""Turns per session: a constant, a pool of observed counts resampled uniformly, or a callable
``f(num_sessions, rng) -> int array`` (e.g. ``lambda n, g: g.geometric(1 / 4, n)``)."""


def _positive(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name} must be finite and > 0, got {value}", field=name)


def _count(num: int, name: str = "num_requests") -> None:
    if num < 0:
        raise InputError(f"{name} must be >= 0, got {num}", field=name)


def _build(arrival: np.ndarray, lengths: LengthDistribution, rng: np.random.Generator,
           meta: dict[str, object]) -> Workload:
    prompt, output = lengths.sample(len(arrival), rng)
    return Workload(arrival, prompt, output, source=str(meta["process"]), meta=meta)


def poisson(rate: float, num_requests: int, lengths: LengthDistribution,
            rng: np.random.Generator) -> Workload:
    """``num_requests`` Poisson arrivals at ``rate`` requests per second.

    Examples
    --------
    >>> from servoir.rng import stream
    >>> from servoir.workload.lengths import Fixed
    >>> w = poisson(10.0, 1000, Fixed(128, 32), stream(0, "arrivals"))
    >>> len(w), bool(w.arrival_at[0] > 0)
    (1000, True)
    """
    _positive(rate, "rate")
    _count(num_requests)
    arr_rng, len_rng = rng.spawn(2)
    arrival = np.cumsum(arr_rng.exponential(1.0 / rate, num_requests))
    return _build(arrival, lengths, len_rng, {"process": "poisson", "rate": rate})


def gamma(rate: float, cv: float, num_requests: int, lengths: LengthDistribution,
          rng: np.random.Generator) -> Workload:
    """Renewal arrivals with Gamma inter-arrival times of mean ``1/rate`` and CV ``cv``.

    The shape is ``1/cv^2`` and the scale ``cv^2/rate``. ``cv=1`` is Poisson, ``cv>1`` burstier,
    ``cv<1`` smoother, and ``cv=0`` deterministic (evenly spaced) arrivals.

    Examples
    --------
    >>> from servoir.rng import stream
    >>> from servoir.workload.lengths import Fixed
    >>> gamma(2.0, 0.0, 3, Fixed(1, 1), stream(0, "arrivals")).arrival_at.tolist()
    [0.5, 1.0, 1.5]
    """
    _positive(rate, "rate")
    _count(num_requests)
    if not (np.isfinite(cv) and cv >= 0):
        raise InputError(f"cv must be finite and >= 0, got {cv}", field="cv")
    arr_rng, len_rng = rng.spawn(2)
    if cv == 0:
        gaps = np.full(num_requests, 1.0 / rate)
    else:
        shape = 1.0 / (cv * cv)
        gaps = arr_rng.gamma(shape, 1.0 / (rate * shape), num_requests)
    arrival = np.cumsum(gaps)
    return _build(arrival, lengths, len_rng, {"process": "gamma", "rate": rate, "cv": cv})


def _generator_matrix(num_states: int, mean_sojourn_s: Sequence[float] | None,
                      switch_rates: Sequence[Sequence[float]] | np.ndarray | None) -> np.ndarray:
    """The CTMC generator Q (rows sum to 0) of the modulating chain."""
    if (mean_sojourn_s is None) == (switch_rates is None):
        raise InputError("give exactly one of mean_sojourn_s and switch_rates",
                         field="mean_sojourn_s")
    if switch_rates is not None:
        q = np.array(switch_rates, dtype=np.float64)
        if q.shape != (num_states, num_states):
            raise InputError(f"switch_rates must be {num_states}x{num_states}, got {q.shape}",
                             field="switch_rates")
        np.fill_diagonal(q, 0.0)
    else:
        m = np.asarray(mean_sojourn_s, dtype=np.float64)
        if m.shape != (num_states,) or not np.all(np.isfinite(m) & (m > 0)):
            raise InputError(f"mean_sojourn_s needs {num_states} finite values > 0, got {m}",
                             field="mean_sojourn_s")
        # Leave state i at rate 1/m_i, to every other state with equal probability.
        q = np.repeat((1.0 / m / (num_states - 1))[:, None], num_states, axis=1)
        np.fill_diagonal(q, 0.0)
    if np.any(q < 0) or not np.all(np.isfinite(q)) or np.any(q.sum(axis=1) <= 0):
        raise InputError("every state needs a finite, positive total switch rate",
                         field="switch_rates")
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def _stationary(q: np.ndarray) -> np.ndarray:
    # Solve pi Q = 0 with sum(pi) = 1: replace one balance equation by the normalisation.
    a = q.T.copy()
    a[-1, :] = 1.0
    b = np.zeros(len(q))
    b[-1] = 1.0
    return np.linalg.solve(a, b)


def mmpp_mean_rate(rates: Sequence[float], mean_sojourn_s: Sequence[float] | None = None, *,
                   switch_rates: Sequence[Sequence[float]] | np.ndarray | None = None) -> float:
    """Long-run arrival rate ``sum_i pi_i * rates[i]`` of an MMPP (pi: stationary law).

    Examples
    --------
    >>> mmpp_mean_rate([10.0, 0.0], [1.0, 3.0])
    2.5
    """
    r = np.asarray(rates, dtype=np.float64)
    q = _generator_matrix(len(r), mean_sojourn_s, switch_rates)
    return float(_stationary(q) @ r)


def _jump_states(state: int, jump: np.ndarray, num: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``num`` successive states of the embedded jump chain from ``state``, and the next one."""
    if len(jump) == 2:  # on/off: the chain alternates, no draws needed
        seq = (state + np.arange(num + 1)) % 2
        return seq[:-1], int(seq[-1])
    u = rng.random(num)
    # Successor of step k from every possible current state, vectorised; only the walk through
    # it is sequential, and it is a plain list lookup.
    succ = np.stack([np.searchsorted(row, u, side="right") for row in jump], axis=1)
    succ = np.minimum(succ, len(jump) - 1).tolist()
    states = [0] * num
    for k in range(num):
        states[k] = state
        state = succ[k][state]
    return np.asarray(states, dtype=np.int64), state


def _first_uniforms(count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` smallest of ``count`` iid U(0,1) draws, sorted, in O(k) (exponential spacings)."""
    spacings = np.cumsum(rng.exponential(1.0, k))
    return spacings / (spacings[-1] + rng.gamma(count + 1 - k))


def _mmpp_arrivals(r: np.ndarray, q: np.ndarray, pi: np.ndarray, state: int, num: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``num`` arrival times; sojourns are simulated in batches, arrivals within them at once."""
    leave = -np.diag(q)
    jump = np.cumsum(np.where(np.eye(len(r), dtype=bool), 0.0, q) / leave[:, None], axis=1)
    per_sojourn = float(pi @ r) / float(pi @ leave)  # mean arrivals per visit to a state
    chunks: list[np.ndarray] = []
    have, t = 0, 0.0
    while have < num:
        batch = int(np.clip(1.2 * (num - have) / per_sojourn + 16, 16, 65_536))
        states, state = _jump_states(state, jump, batch, rng)
        dur = rng.exponential(1.0 / leave[states])
        starts = t + np.cumsum(dur) - dur
        t = float(starts[-1] + dur[-1])
        counts = rng.poisson(r[states] * dur)
        total = np.cumsum(counts)
        last = None
        if have + total[-1] >= num:
            # Stop inside the sojourn that completes the request count, drawing only the
            # arrivals needed from it, so one long busy sojourn cannot exhaust memory.
            j = int(np.searchsorted(total, num - have))
            need = num - have - (int(total[j - 1]) if j else 0)
            last = starts[j] + _first_uniforms(int(counts[j]), need, rng) * dur[j]
            counts = counts[:j]
        # Given its count, a Poisson period's arrivals are uniform over it; the periods are
        # disjoint and increasing, so one sort orders the whole batch.
        idx = np.repeat(np.arange(len(counts)), counts)
        chunks.append(np.sort(starts[idx] + rng.random(len(idx)) * dur[idx]))
        have += len(idx)
        if last is not None:
            chunks.append(last)
            break
    return np.concatenate(chunks) if chunks else np.empty(0)


def mmpp(rates: Sequence[float], mean_sojourn_s: Sequence[float] | None, num_requests: int,
         lengths: LengthDistribution, rng: np.random.Generator, *,
         switch_rates: Sequence[Sequence[float]] | np.ndarray | None = None,
         initial_state: int | None = None) -> Workload:
    """Markov-modulated Poisson arrivals: Poisson at ``rates[i]`` while a hidden chain is in i.

    Parameters
    ----------
    rates
        Arrival rate (req/s) in each state; zeros are allowed (an "off" state), not all zero.
    mean_sojourn_s
        Mean time spent in each state per visit (exponential); on leaving, the next state is
        uniform among the others. ``None`` when ``switch_rates`` is given.
    num_requests, lengths, rng
        As in :func:`poisson`.
    switch_rates
        Alternative to ``mean_sojourn_s``: ``switch_rates[i][j]`` is the rate of jumps i -> j
        (the diagonal is ignored).
    initial_state
        Starting state; by default drawn from the stationary distribution so that the process is
        stationary from time 0 and its mean rate is :func:`mmpp_mean_rate` throughout.

    Examples
    --------
    >>> from servoir.rng import stream
    >>> from servoir.workload.lengths import Fixed
    >>> w = mmpp([20.0, 0.0], [5.0, 5.0], 100, Fixed(1, 1), stream(0, "arrivals"))
    >>> len(w), w.meta["mean_rate"]
    (100, 10.0)
    """
    _count(num_requests)
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2 or not np.all(np.isfinite(r) & (r >= 0)) or r.sum() <= 0:
        raise InputError(f"rates must be >= 2 finite values >= 0, not all 0; got {r}",
                         field="rates")
    q = _generator_matrix(len(r), mean_sojourn_s, switch_rates)
    pi = _stationary(q)
    arr_rng, len_rng = rng.spawn(2)
    if initial_state is None:
        p = np.clip(pi, 0.0, None)  # solve() can leave -1e-17 where pi is 0
        initial_state = int(arr_rng.choice(len(r), p=p / p.sum()))
    elif not 0 <= initial_state < len(r):
        raise InputError(f"initial_state must be in [0, {len(r)}), got {initial_state}",
                         field="initial_state")
    arrival = _mmpp_arrivals(r, q, pi, initial_state, num_requests, arr_rng)
    meta: dict[str, object] = {"process": "mmpp", "rates": r.tolist(),
                               "switch_rates": (q - np.diag(np.diag(q))).tolist(),
                               "initial_state": initial_state, "mean_rate": float(pi @ r)}
    return _build(arrival, lengths, len_rng, meta)


def onoff(on_rate: float, mean_on_s: float, mean_off_s: float, num_requests: int,
          lengths: LengthDistribution, rng: np.random.Generator, *,
          off_rate: float = 0.0) -> Workload:
    """Bursts: Poisson at ``on_rate`` for Exp(``mean_on_s``) periods, ``off_rate`` in between.

    A two-state :func:`mmpp`; its mean rate is
    ``(on_rate * mean_on_s + off_rate * mean_off_s) / (mean_on_s + mean_off_s)``.
    """
    _positive(on_rate, "on_rate")
    return mmpp([on_rate, off_rate], [mean_on_s, mean_off_s], num_requests, lengths, rng)


def _turn_counts(turns: TurnCounts, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(turns, int | np.integer):
        out = np.full(n, int(turns), dtype=np.int64)
    elif callable(turns):
        out = np.asarray(turns(n, rng), dtype=np.int64)
    else:
        pool = np.asarray(turns, dtype=np.int64)
        if pool.ndim != 1 or pool.size == 0:
            raise InputError("turns_per_session pool must be a non-empty 1-D sequence",
                             field="turns_per_session")
        out = pool[rng.integers(0, pool.size, n)]
    if out.shape != (n,) or (n and out.min() < 1):
        raise InputError("every session needs >= 1 turn", field="turns_per_session")
    return out


def _session_rows(starts: np.ndarray, turns: np.ndarray, think_time_s: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Row columns for sessions laid out contiguously, turns in order."""
    sid = np.repeat(np.arange(len(turns), dtype=np.int64), turns)
    first = np.cumsum(turns) - turns  # row index of each session's turn 0
    turn = np.arange(len(sid), dtype=np.int64) - np.repeat(first, turns)
    think = rng.exponential(think_time_s, len(sid)) if think_time_s > 0 else np.zeros(len(sid))
    think[turn == 0] = 0.0
    # Later turns' true arrival is decided by the simulator; session start is only an ordering
    # hint. Starts increase, so rows are already sorted by arrival_at (stably, turns in order).
    return {"arrival_at": np.repeat(starts, turns), "session_id": sid, "turn": turn,
            "think_time_s": think}


def _history_prefixes(session_id: np.ndarray, prompt: np.ndarray,
                      block_tokens: int) -> tuple[tuple[int, ...], ...]:
    # A turn's prompt is a prefix of the next turn's prompt, so its full blocks are shared:
    # block j of session s gets id (s << 32) + j; the partial last block is not shareable.
    return tuple(tuple(range(int(s) << 32, (int(s) << 32) + int(p) // block_tokens))
                 for s, p in zip(session_id, prompt, strict=True))


def sessions(num_sessions: int, turns_per_session: TurnCounts, think_time_s: float,
             session_rate: float, lengths: LengthDistribution, rng: np.random.Generator, *,
             accumulate_history: bool = False, block_tokens: int = 16) -> Workload:
    """Multi-turn sessions starting as a Poisson stream at ``session_rate`` per second.

    Turn 0 of a session arrives at the session start. Turn ``k > 0`` arrives ``think_time_s[k]``
    (exponential with mean ``think_time_s``; 0 gives no pause) after turn ``k-1`` finishes; the
    simulator schedules it, and its ``arrival_at`` (the session start) is only an ordering hint.
    Rows of a session are contiguous and in turn order.

    Parameters
    ----------
    num_sessions
        Number of sessions.
    turns_per_session
        See :data:`TurnCounts`.
    think_time_s
        Mean think time in seconds (>= 0).
    session_rate
        Session starts per second.
    lengths
        Per-turn lengths. With ``accumulate_history`` the prompt drawn is the new user message
        only, and the turn's prompt is all earlier prompts and outputs of the session plus it.
    rng
        Random source, split into arrival, length and session streams.
    accumulate_history
        Grow prompts with the conversation (chat with full history) and set ``prefix_hashes``
        (``block_tokens`` per block) so that each turn's full blocks prefix the next turn's.
    block_tokens
        Block size of the generated ``prefix_hashes``.
    """
    _count(num_sessions, "num_sessions")
    _positive(session_rate, "session_rate")
    if not (np.isfinite(think_time_s) and think_time_s >= 0):
        raise InputError(f"think_time_s must be finite and >= 0, got {think_time_s}",
                         field="think_time_s")
    arr_rng, len_rng, sess_rng = rng.spawn(3)
    starts = np.cumsum(arr_rng.exponential(1.0 / session_rate, num_sessions))
    turns = _turn_counts(turns_per_session, num_sessions, sess_rng)
    cols = _session_rows(starts, turns, think_time_s, sess_rng)
    prompt, output = lengths.sample(len(cols["turn"]), len_rng)
    prefixes = None
    if accumulate_history:
        spent = np.cumsum(prompt + output)
        first = np.cumsum(turns) - turns
        # Tokens of earlier turns in the same session: exclusive cumsum restarted per session.
        history = spent - (prompt + output) - np.repeat(spent[first] - (prompt + output)[first],
                                                        turns)
        prompt = history + prompt
        prefixes = _history_prefixes(cols["session_id"], prompt, block_tokens)
    meta: dict[str, object] = {"process": "sessions", "session_rate": session_rate,
                               "think_time_s": think_time_s,
                               "accumulate_history": accumulate_history}
    return Workload(num_prompt_tokens=prompt, num_output_tokens=output, prefix_hashes=prefixes,
                    prefix_block_tokens=block_tokens, source="sessions", meta=meta, **cols)


def sharegpt_sessions(num_sessions: int, think_time_s: float, session_rate: float,
                      rng: np.random.Generator, *, trace: str = "sharegpt",
                      block_tokens: int = 16) -> Workload:
    """Sessions replaying ShareGPT conversations (resampled uniformly, with replacement).

    Turn ``k`` of a conversation has prompt ``history_tokens + user_tokens`` (the full chat so
    far) and output ``assistant_tokens``; counts of 0 (7 prompts, 7 replies in the shipped
    table) are clamped to 1 and counted in ``meta["num_clamped"]``. ``prefix_hashes`` share
    each turn's full prompt blocks with the next turn of the same session (distinct sessions,
    even of the same conversation, share nothing). Arrivals as in :func:`sessions`.
    """
    _count(num_sessions, "num_sessions")
    _positive(session_rate, "session_rate")
    if not (np.isfinite(think_time_s) and think_time_s >= 0):
        raise InputError(f"think_time_s must be finite and >= 0, got {think_time_s}",
                         field="think_time_s")
    table = sharegpt_turns(trace)
    # Rows of a conversation are contiguous and in turn order in the table.
    conv_start = np.flatnonzero(np.r_[True, np.diff(table["conv_idx"]) != 0])
    conv_len = np.diff(np.r_[conv_start, len(table["conv_idx"])])
    arr_rng, pick_rng, sess_rng = rng.spawn(3)
    starts = np.cumsum(arr_rng.exponential(1.0 / session_rate, num_sessions))
    chosen = pick_rng.integers(0, len(conv_start), num_sessions)
    turns = conv_len[chosen]
    cols = _session_rows(starts, turns, think_time_s, sess_rng)
    rows = np.repeat(conv_start[chosen], turns) + cols["turn"]
    prompt = table["history_tokens"][rows] + table["user_tokens"][rows]
    output = table["assistant_tokens"][rows]
    num_clamped = int(np.count_nonzero((prompt < 1) | (output < 1)))
    prompt, output = np.maximum(prompt, 1), np.maximum(output, 1)
    meta: dict[str, object] = {"process": "sharegpt_sessions", "session_rate": session_rate,
                               "think_time_s": think_time_s, "num_clamped": num_clamped}
    return Workload(num_prompt_tokens=prompt, num_output_tokens=output,
                    prefix_hashes=_history_prefixes(cols["session_id"], prompt, block_tokens),
                    prefix_block_tokens=block_tokens, source="sharegpt_sessions", meta=meta,
                    **cols)

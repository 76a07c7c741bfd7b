"""The unit-time model of Jaillet et al. (2025): one token per step, memory ``s + j``.

Request ``i`` arrives at integer step ``a_i`` with prompt ``s_i`` and output ``o_i``. Admitted
(started) at step ``t >= a_i`` it produces one token per step, holds ``s_i + j`` memory at step
``t + j`` (``j = 1..o_i``) and finishes at ``t + o_i``. Total memory at every step is at most
``M``; the objective is total latency ``sum_i (c_i - a_i)``. Prefill is free; this is the model
in which the hindsight IP of :mod:`servoir.analysis.bounds` is the optimum.

At each step the simulator makes the scheduling decision (the model's policies decide every
step): first, if the running batch would overflow at the next step, requests are preempted by
the policy's rule until it fits; otherwise waiting requests are admitted. Rank-only schedulers
(FCFS, SJF, priority) admit in rank order while the next step fits and stop at the first that
does not (vLLM); policies with ``select`` choose themselves (their choice is admitted in order,
skipping any that would overflow the next step). A preempted request restarts from scratch (its
memory is freed and its progress lost; the policy keeps what it has observed, ``wait_seen``), so
dropping the aborted attempts of any simulated schedule leaves a non-preemptive schedule with the
same completion times: the IP optimum is a lower bound on every policy simulated here.

Restart livelock. Because a restart loses progress, two requests that fit together for a few
steps can preempt each other forever (observed with noisy predictions). For policies with
``select`` a preempted request is therefore offered to the policy again only after the next
completion; the running batch never empties by preemption (every request fits alone), so some
request completes and the run always ends. Rank-only policies (FCFS as vLLM) keep their plain
rule: the preempted request is the latest admitted, the earlier ones progress.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from servoir.errors import InputError
from servoir.policies.scheduling.lookahead import make_view
from servoir.views import RequestView
from servoir.workload.requests import Workload


@dataclass(frozen=True)
class UnitInstance:
    """An instance of the unit-time model (integer arrays) with memory ``memory`` tokens."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    memory: int
    tenant: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        a, s, o = (np.asarray(x, dtype=np.int64) for x in (self.arrival, self.prompt, self.output))
        object.__setattr__(self, "arrival", a)
        object.__setattr__(self, "prompt", s)
        object.__setattr__(self, "output", o)
        if not (len(a) == len(s) == len(o)):
            raise InputError("arrival, prompt and output need the same length")
        if self.memory < 1:
            raise InputError(f"memory must be >= 1, got {self.memory}", field="memory")
        if len(a) and (a.min() < 0 or s.min() < 0 or o.min() < 1):
            raise InputError("arrivals and prompts must be >= 0 and outputs >= 1")
        too_big = np.flatnonzero(s + o > self.memory)
        if len(too_big):
            i = int(too_big[0])
            raise InputError(f"request {i} needs {int(s[i] + o[i])} memory alone (prompt "
                             f"{int(s[i])} + output {int(o[i])}) > memory {self.memory}",
                             field="memory")

    def __len__(self) -> int:
        return len(self.arrival)

    @staticmethod
    def from_workload(w: Workload, memory: int) -> UnitInstance:
        """Arrivals are the trace's ``arrival_s`` rounded down to whole steps."""
        tenant = None if w.tenant is None else tuple(str(x) for x in w.tenant)
        return UnitInstance(np.floor(w.arrival_at).astype(np.int64), w.num_prompt_tokens,
                            w.num_output_tokens, int(memory), tenant)


@dataclass(frozen=True)
class UnitResult:
    """Outcome of one simulated schedule."""

    finish: np.ndarray  # completion step of each request
    start: np.ndarray  # start step of each request's final (completed) run
    num_preemptions: int
    peak_memory: int

    def total_latency(self, inst: UnitInstance) -> int:
        """Sum of (finish - arrival)."""
        return int((self.finish - inst.arrival).sum())


def simulate(inst: UnitInstance, policy: Any, predicted: np.ndarray | None = None,
             max_steps: int | None = None) -> UnitResult:
    """Run ``policy`` (a reset scheduler) on ``inst``; ``predicted`` is what it may read."""
    n = len(inst)
    a, s, o = inst.arrival.tolist(), inst.prompt.tolist(), inst.output.tolist()
    pred = [math.nan] * n if predicted is None else [float(x) for x in predicted]
    ten = inst.tenant or (None,) * n
    M = inst.memory
    select = callable(getattr(policy, "select", None))
    chooser = callable(getattr(policy, "choose_victim", None))
    last_admitted = getattr(policy, "victim", "last_admitted") == "last_admitted"
    order = sorted(range(n), key=lambda i: (a[i], i))
    waiting: list[tuple[float, int, int]] = []  # (rank, seq, id)
    rank = [0.0] * n
    running: dict[int, int] = {}  # id -> start step (admission order)
    seen = [0] * n
    finish = np.full(n, -1, dtype=np.int64)
    start = np.full(n, -1, dtype=np.int64)
    fin_since: list[tuple[int, int, Any]] = []
    blocked: set[int] = set()  # preempted since the last completion (select policies)
    seq = nxt = npre = peak = 0
    t = 0
    limit = max_steps if max_steps is not None else int(max(a, default=0) + (n + 2) * sum(o) + 10)

    def enqueue(i: int) -> None:
        nonlocal seq
        view = RequestView(i, float(a[i]), s[i], None if predicted is None else pred[i], ten[i])
        rank[i] = float(policy.rank(view, float(t)))
        seq += 1
        heapq.heappush(waiting, (rank[i], seq, i))

    def run_rows() -> list[tuple[int, int, int, float, Any]]:
        return [(i, s[i] + t - st, t - st, pred[i], ten[i]) for i, st in running.items()]

    def victim() -> int:
        ids = list(running)
        if chooser:
            return ids[policy.choose_victim(make_view(t, M, 1, run_rows(), [], []))]
        if last_admitted:
            return ids[-1]
        return max(ids, key=lambda i: (rank[i], running[i], ids.index(i)))

    done = 0
    while done < n:
        if t > limit:
            raise RuntimeError(f"unit-time simulation of {policy!r} did not finish by {limit}")
        while nxt < n and a[order[nxt]] <= t:
            enqueue(order[nxt])
            nxt += 1
        if not running and not waiting:
            t = a[order[nxt]]
            continue
        nxt_mem = sum(s[i] + t - st + 1 for i, st in running.items())
        preempted = False
        while nxt_mem > M:
            v = victim()
            nxt_mem -= s[v] + t - running[v] + 1
            seen[v] = max(seen[v], t - running.pop(v))
            npre += 1
            preempted = True
            blocked.add(v)
            enqueue(v)
        if not preempted:
            nxt_mem = _admit(policy, select, waiting, running, t, nxt_mem, s, a, pred, ten,
                             seen, M, fin_since, blocked)
        peak = max(peak, nxt_mem)
        t += 1
        for i in [i for i, st in running.items() if t - st >= o[i]]:
            start[i] = running.pop(i)
            finish[i] = t
            fin_since.append((i, o[i], ten[i]))
            blocked.clear()
            done += 1
    return UnitResult(finish, start, npre, peak)


def _admit(policy: Any, select: bool, waiting: list, running: dict[int, int], t: int,
           nxt_mem: int, s: list[int], a: list[int], pred: list[float], ten: Any,
           seen: list[int], M: int, fin_since: list, blocked: set[int]) -> int:
    """Admissions at step ``t``; returns the memory of the next step."""
    if select:
        rows = [(i, s[i], 0, seen[i], pred[i], float(a[i]), ten[i]) for _, _, i in waiting
                if i not in blocked]
        if not rows:
            return nxt_mem
        run = [(i, s[i] + t - st, t - st, pred[i], ten[i]) for i, st in running.items()]
        view = make_view(float(t), M, 1, run, rows, fin_since)
        fin_since.clear()
        taken = set()
        for j in policy.select(view):
            i = int(view.wait_ids[j])
            if nxt_mem + s[i] + 1 <= M:
                running[i] = t
                nxt_mem += s[i] + 1
                taken.add(i)
        if taken:
            waiting[:] = [e for e in waiting if e[2] not in taken]
            heapq.heapify(waiting)
        return nxt_mem
    while waiting and nxt_mem + s[waiting[0][2]] + 1 <= M:
        i = heapq.heappop(waiting)[2]
        running[i] = t
        nxt_mem += s[i] + 1
    return nxt_mem


def run_policy(inst: UnitInstance, name: str, params: dict[str, Any] | None = None,
               predicted: np.ndarray | None = None, seed: int = 0) -> UnitResult:
    """Simulate registered scheduler ``name`` on ``inst`` (reset with the scheduler stream)."""
    from servoir import registry
    from servoir.rng import stream

    policy = registry.create("scheduling", name, params or {})
    policy.reset(stream(seed, "policy.scheduler"))
    return simulate(inst, policy, predicted)

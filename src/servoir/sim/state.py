"""Per-request state shared by the instances of one run (struct of Python lists).

Lists indexed by request id, not objects: the hot loop reads and writes a few scalars per
request event, and plain lists are the fastest container for that in CPython.
"""

from __future__ import annotations

import math

NAN = math.nan

# Request status codes (``status`` column of the results).
PENDING, WAITING, RUNNING, FINISHED, REJECTED = 0, 1, 2, 3, 4
STATUS_NAMES = {PENDING: "unfinished", WAITING: "unfinished", RUNNING: "unfinished",
                FINISHED: "finished", REJECTED: "rejected"}


class RequestState:
    """Columns of mutable per-request state, plus the static ones the engine reads.

    Progress of a decoding request is not stored per token: its instance keeps the iteration
    ``base_it`` at which ``base_len`` (computed tokens) and ``gen`` (output tokens so far) were
    exact, and derives both at any later iteration ``J`` as ``base + (J - base_it)``.
    """

    __slots__ = ("prompt", "output", "arrival_at", "rank", "status", "instance", "computed",
                 "gen", "held", "base_it", "epoch", "first_scheduled_at", "first_token_at",
                 "finish_at", "num_preemptions", "admit_seq")

    def __init__(self, prompt: list[int], output: list[int], arrival_at: list[float]) -> None:
        n = len(prompt)
        self.prompt = prompt
        self.output = output
        self.arrival_at = arrival_at
        self.rank = [0.0] * n
        self.status = [PENDING] * n
        self.instance = [-1] * n
        self.computed = [0] * n
        self.gen = [0] * n
        self.held = [0] * n
        self.base_it = [0] * n
        self.epoch = [0] * n
        self.first_scheduled_at = [NAN] * n
        self.first_token_at = [NAN] * n
        self.finish_at = [NAN] * n
        self.num_preemptions = [0] * n
        self.admit_seq = [0] * n

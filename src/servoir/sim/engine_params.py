"""Plain engine settings and the iteration a scheduling decision forms (vLLM v1 engine).

Kept apart from :mod:`servoir.sim.instance` so that the engines and the cluster share one
definition of the settings they read in the hot loop.
"""

from __future__ import annotations


class EngineParams:
    """Plain engine settings read in the hot loop (built from the pydantic config)."""

    __slots__ = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_blocks",
                 "enable_chunked_prefill", "pp", "reserve_full_prompt", "async_scheduling",
                 "cache_preempted")

    def __init__(self, max_num_seqs: int, max_num_batched_tokens: int, block_size: int,
                 num_blocks: int, enable_chunked_prefill: bool = True, pp: int = 1,
                 reserve_full_prompt: bool = False, async_scheduling: bool = False,
                 cache_preempted: bool = False) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_chunked_prefill = enable_chunked_prefill
        self.pp = pp
        # vLLM 0.19's scheduler_reserve_full_isl: admit a request only if its whole prompt
        # fits in the free blocks (its first chunk alone is allocated).
        self.reserve_full_prompt = reserve_full_prompt
        # vLLM 0.19's async scheduling: step j+1 is formed while step j runs, from what the
        # scheduler knew when step j started (see Instance._decide).
        self.async_scheduling = async_scheduling
        # vLLM's prefix cache (on by default) keeps a preempted request's freed blocks until
        # they are reused; readmitted, it recomputes only what was evicted (sim/free_queue.py).
        self.cache_preempted = cache_preempted


class IterationPlan:
    """The iteration being formed by one scheduling decision."""

    __slots__ = ("budget", "ntok", "work", "chunks", "need_dec", "preempted", "exclude")

    def __init__(self, budget: int) -> None:
        self.budget = budget  # tokens left in this iteration
        self.ntok = 0  # tokens scheduled
        self.work = 0.0  # prefill attention work (query-key pairs)
        self.chunks: list[tuple[int, int, int]] = []  # (rid, tokens, computed before)
        self.need_dec = 0  # blocks the decodes allocate in this iteration
        self.preempted = False
        self.exclude: set[int] = set()  # requests already given a chunk: not victims

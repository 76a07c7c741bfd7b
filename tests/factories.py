"""Small factories for simulator tests: no model names, no files, no network."""

from __future__ import annotations

import numpy as np

from servoir.registry import create
from servoir.sim import Cluster, EngineParams, collect
from servoir.workload import Workload


class LinearLatency:
    """A step time that is affine in every feature (duck-types ``LatencyModel``)."""

    def __init__(self, base: float = 0.01, per_token: float = 1e-4, per_seq: float = 1e-4,
                 kv_coef_s: float = 1e-5, attn: float = 1e-8, hop: float = 1e-4,
                 skew_alpha: float = 0.0) -> None:
        self.base, self.per_token, self.per_seq = base, per_token, per_seq
        self.kv_coef_s, self.attn, self.hop = kv_coef_s, attn, hop
        self.skew_alpha = skew_alpha

    def skew_time(self, num_decode: int, decode_kv_tokens: int, max_decode_kv: int) -> float:
        return self.skew_alpha * self.kv_coef_s * (num_decode * max_decode_kv - decode_kv_tokens)

    def step_time(self, num_tokens: int, num_seqs: int, decode_kv_tokens: int,
                  prefill_attn_work: float) -> float:
        return (self.base + self.per_token * num_tokens + self.per_seq * num_seqs
                + self.kv_coef_s * decode_kv_tokens + self.attn * prefill_attn_work)

    def p2p_time(self, num_tokens: int) -> float:
        return self.hop


def make_workload(seed: int, n: int, mean_gap: float, max_prompt: int = 300,
                  max_output: int = 200) -> Workload:
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(mean_gap, n))
    return Workload(arr, rng.integers(1, max_prompt, n), rng.integers(1, max_output, n))


def simulate(workload: Workload, engine: EngineParams, *, latency=None, instances: int = 1,
             router: str = "round_robin", scheduler: str = "fcfs", max_model_len: int = 10**9,
             max_concurrency: int | None = None, check: bool = True):
    c = Cluster(workload, num_instances=instances, engine=engine,
                latency=latency or LinearLatency(), router=create("routing", router),
                make_scheduler=lambda: create("scheduling", scheduler),
                max_model_len=max_model_len, max_concurrency=max_concurrency, check=check)
    c.run()
    return collect(c)

"""Prefill-decode disaggregated cluster: a prefill pool, a decode pool, and KV transfer links.

Each pool instance is the vLLM v1 engine of :mod:`servoir.sim.instance` (same batching, paged
KV, preemption, event skipping), used by composition:

- a **prefill** instance runs each request as a one-token request (prompt ``s``, output 1): its
  prefill iteration samples the first token, which sets the request's TTFT, and frees the KV;
- the KV (``kv_bytes_per_token x s`` bytes) then crosses the prefill instance's link of
  ``link_bytes_per_s``; transfers from one instance are served one at a time (FIFO);
- a **decode** instance receives the request with its KV: it joins as a request of prompt ``s``
  and output ``o - 1`` whose "prefill" costs no compute (:class:`_DecodeInstance` times an
  iteration by its sequences only, one token each, plus the decode KV it attends); the KV
  occupies blocks from admission, and that iteration samples token 2.

Routing: each pool has its own router instance (the configured policy). Requests with one
output token finish on the prefill instance. Every request's TTFT is the prefill instance's first
token; its TPOT spans transfer, decode queueing and decoding, as a user of a PD deployment sees
it. A request rejected by ``max_model_len`` is rejected at arrival.
"""

from __future__ import annotations

import heapq
import math
import time as _time
from collections.abc import Callable
from typing import Any

import numpy as np

from servoir.results import STATUS, RunResult
from servoir.rng import stream
from servoir.sim.instance import EngineParams, Instance
from servoir.sim.metrics import instance_series, request_latencies
from servoir.sim.state import FINISHED, REJECTED, RequestState
from servoir.views import ReplicaTable, RequestView
from servoir.workload.requests import Workload

STEP_END, KV_DONE = 0, 1


class _DecodeInstance(Instance):
    """A decode-pool engine: admitted KV arrives by transfer, so it costs no prefill compute."""

    def _iter_time(self, num_tokens: int, num_seqs: int, prefill_work: float,
                   decode_kv: float = 0) -> float:
        return self.lat.step_time(num_seqs, num_seqs, decode_kv, 0.0)


class PDCluster:
    """``num_prefill`` prefill and ``num_decode`` decode instances. Build, then :meth:`run`."""

    def __init__(self, workload: Workload, *, num_prefill: int, num_decode: int,
                 engine: EngineParams, latency: Any, make_router: Callable[[], Any],
                 make_scheduler: Callable[[], Any], max_model_len: int,
                 kv_bytes_per_token: float, link_bytes_per_s: float, seed: int = 0,
                 record_series: bool = True) -> None:
        if num_prefill < 1 or num_decode < 1:
            raise ValueError("PD mode needs at least one prefill and one decode instance")
        if not link_bytes_per_s > 0:
            raise ValueError(f"link bandwidth must be > 0, got {link_bytes_per_s}")
        self.w = workload
        n = len(workload)
        self.n = n
        s = workload.num_prompt_tokens.tolist()
        o = workload.num_output_tokens.tolist()
        self.prompt, self.output = s, o
        self.arrival = workload.arrival_at.tolist()
        self.pst = RequestState(s, [1] * n, list(self.arrival))
        self.dst = RequestState(s, [max(1, x - 1) for x in o], list(self.arrival))
        self.max_model_len = max_model_len
        self.kv_bytes = float(kv_bytes_per_token)
        self.link_bps = float(link_bytes_per_s)
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.np_, self.nd = num_prefill, num_decode
        self.ptable, self.pcols = ReplicaTable.allocate(num_prefill)
        self.dtable, self.dcols = ReplicaTable.allocate(num_decode)
        self.prouter, self.drouter = make_router(), make_router()
        self.prouter.reset(num_prefill, stream(seed, "policy.router"))
        self.drouter.reset(num_decode, stream(seed, "policy.router.decode"))
        self.instances: list[Instance] = []
        for k in range(num_prefill + num_decode):
            sched = make_scheduler()
            sched.reset(stream(seed, "policy.scheduler", replication=k))
            pre = k < num_prefill
            cls = Instance if pre else _DecodeInstance
            st = self.pst if pre else self.dst
            self.instances.append(cls(k, engine, latency, sched, st,
                                      self._pview if pre else self._dview, self._schedule,
                                      self._p_finish if pre else self._d_finish,
                                      record_series, False))
        self.link_free_at = [0.0] * num_prefill
        self.kv_arrived_at = [math.nan] * n
        self.num_rejected = 0
        self.num_events = 0
        self.status = [0] * n

    def _pview(self, rid: int) -> RequestView:
        return RequestView(rid, self.pst.arrival_at[rid], self.prompt[rid], None, None, None,
                           None)

    def _dview(self, rid: int) -> RequestView:
        return RequestView(rid, self.dst.arrival_at[rid], self.prompt[rid], None, None, None,
                           None)

    def _schedule(self, t: float, inst: int, version: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, STEP_END, inst, version))

    def _refresh(self, k: int) -> None:
        inst = self.instances[k]
        cols, j = (self.pcols, k) if k < self.np_ else (self.dcols, k - self.np_)
        cols["num_waiting"][j] = len(inst.waiting)
        cols["num_running"][j] = len(inst.running)
        cols["kv_used_frac"][j] = inst.used / inst.total_blocks

    def _p_finish(self, rid: int, t: float) -> None:
        """First token sampled on prefill instance ``k``: transfer the KV, or finish."""
        k = self.pst.instance[rid]
        self.pcols["outstanding_tokens"][k] -= self.prompt[rid]
        if self.output[rid] <= 1:
            self.status[rid] = FINISHED
            return
        start = max(t, self.link_free_at[k])
        done = start + self.prompt[rid] * self.kv_bytes / self.link_bps
        self.link_free_at[k] = done
        self.seq += 1
        heapq.heappush(self.heap, (done, self.seq, KV_DONE, rid, 0))

    def _d_finish(self, rid: int, t: float) -> None:
        j = self.dst.instance[rid] - self.np_
        self.dcols["outstanding_tokens"][j] -= self.prompt[rid] + self.output[rid]
        self.status[rid] = FINISHED

    def _arrive(self, rid: int, t: float) -> None:
        if self.prompt[rid] + self.output[rid] > self.max_model_len:
            self.status[rid] = REJECTED
            self.num_rejected += 1
            return
        k = self.prouter.route(self._pview(rid), self.ptable)
        self.pcols["outstanding_tokens"][k] += self.prompt[rid]
        self.instances[k].arrive(rid, t)
        self._refresh(k)

    def _kv_done(self, rid: int, t: float) -> None:
        self.kv_arrived_at[rid] = t
        self.dst.arrival_at[rid] = t
        j = self.drouter.route(self._dview(rid), self.dtable)
        self.dcols["outstanding_tokens"][j] += self.prompt[rid] + self.output[rid]
        self.instances[self.np_ + j].arrive(rid, t)
        self._refresh(self.np_ + j)

    def run(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Run to completion; returns the wall time of the loop in seconds."""
        t_wall = _time.perf_counter()
        heap, insts, arr = self.heap, self.instances, self.arrival
        i, n, events = 0, self.n, 0
        while True:
            ta = arr[i] if i < n else math.inf
            if heap and heap[0][0] < ta:
                t, _, kind, a, b = heapq.heappop(heap)
                if kind == STEP_END:
                    insts[a].step_end(t, b)
                    self._refresh(a)
                else:
                    self._kv_done(a, t)
            elif i < n:
                self._arrive(i, ta)
                i += 1
            else:
                break
            events += 1
        self.num_events = events
        if progress is not None:
            progress(n, n)
        return _time.perf_counter() - t_wall

    def collect(self, meta: dict[str, Any] | None = None) -> RunResult:
        """The merged per-request table and both pools' series."""
        p, d = self.pst, self.dst
        arrival = np.array(self.arrival, dtype=np.float64)
        out = np.array(self.output, dtype=np.int64)
        one = out <= 1
        first = np.array(p.first_token_at, dtype=np.float64)
        finish = np.where(one, np.array(p.finish_at, dtype=np.float64),
                          np.array(d.finish_at, dtype=np.float64))
        code = np.array(self.status, dtype=np.int64)
        status = STATUS[code]
        fin = code == FINISHED
        sched = np.array(p.first_scheduled_at, dtype=np.float64)
        requests = {
            "request_id": np.arange(self.n, dtype=np.int64),
            "instance": np.array(p.instance, dtype=np.int64),
            "decode_instance": np.array(d.instance, dtype=np.int64),
            "arrival_at": arrival, "num_prompt_tokens": np.array(self.prompt, dtype=np.int64),
            "num_output_tokens": out, "first_scheduled_at": sched, "first_token_at": first,
            "kv_arrived_at": np.array(self.kv_arrived_at, dtype=np.float64),
            "finish_at": finish,
            **request_latencies(arrival, sched, first, finish, out, fin),
            "num_preemptions": np.array(p.num_preemptions, dtype=np.int64)
            + np.array(d.num_preemptions, dtype=np.int64),
            "status": status,
        }
        series = [instance_series(i) for i in self.instances]
        m = dict(meta or {})
        m.update({"sim_events": self.num_events, "num_prefill_instances": self.np_,
                  "num_decode_instances": self.nd,
                  "num_iterations": sum(i.num_iterations for i in self.instances)})
        return RunResult(requests, series, m)

"""A cluster of instances behind a router: the event loop of a run.

Events are compact heap tuples ``(time, seq, kind, a, b)`` with a monotone sequence number, so
ties break by creation order and nothing compares objects. The workload's static arrivals are
already sorted, so they are merged with the heap instead of being pushed into it (a million
arrivals cost no heap operations). At equal times arrivals go first, so a request that arrives
exactly at an iteration boundary is seen by that boundary's scheduling decision.

Dynamic arrivals: the next turn of a multi-turn session arrives its think time after the
previous turn finishes (or is rejected), and with ``max_concurrency`` a request waits in a FIFO
gate until fewer than that many are in flight (vLLM's benchmark semaphore); its ``arrival_at``
is then the time it was let through, as the benchmark measures it.
"""

from __future__ import annotations

import heapq
import math
import time as _time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from servoir.rng import stream
from servoir.sim.instance import EngineParams, Instance
from servoir.sim.state import REJECTED, RequestState
from servoir.sim.vidur_v0 import VidurV0Instance
from servoir.sim.vidur_v0_pp2 import TwoStageVidurV0
from servoir.views import ReplicaTable, RequestView
from servoir.workload.requests import Workload

STEP_END, ARRIVAL, DISPATCH = 0, 1, 2


class Cluster:
    """Instances, a router, and the event loop. Build, then :meth:`run` once."""

    def __init__(
        self,
        workload: Workload,
        *,
        num_instances: int,
        engine: EngineParams,
        latency: Any,
        router: Any,
        make_scheduler: Callable[[], Any],
        max_model_len: int,
        seed: int = 0,
        max_concurrency: int | None = None,
        record_series: bool = True,
        check: bool = False,
        stage_time: Any = None,
        predicted_output_tokens: Any = None,
        vidur_fast: bool = True,
    ) -> None:
        """``stage_time`` selects Vidur's v0 engine (:mod:`servoir.sim.vidur_v0`) with those
        stage times; otherwise every instance is the vLLM v1 engine. ``vidur_fast=False``
        runs that engine literally (every stage event; the reference the fast paths are
        tested against).
        ``predicted_output_tokens`` (one float per request, or None) is what request views show
        policies as ``RequestView.predicted_output_tokens``."""
        self.w = workload
        self.predicted = (None if predicted_output_tokens is None
                          else [float(x) for x in predicted_output_tokens])
        n = len(workload)
        self.n = n
        self.st = RequestState(workload.num_prompt_tokens.tolist(),
                               workload.num_output_tokens.tolist(),
                               workload.arrival_at.tolist())
        self.max_model_len = max_model_len
        self.max_concurrency = max_concurrency
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.table, self.cols = ReplicaTable.allocate(num_instances)
        self.router = router
        if num_instances > 1:  # one instance: the router is never asked (see _dispatch)
            router.reset(num_instances, stream(seed, "policy.router"))
        self.instances = []
        for k in range(num_instances):
            if stage_time is not None:
                cls = TwoStageVidurV0 if engine.pp == 2 and vidur_fast else VidurV0Instance
                self.instances.append(cls(
                    k, pp=engine.pp, max_num_seqs=engine.max_num_seqs,
                    max_num_batched_tokens=engine.max_num_batched_tokens,
                    num_blocks=engine.num_blocks, block_size=engine.block_size,
                    stage_time=stage_time, state=self.st, schedule=self._schedule,
                    on_finish=self._on_finish, record_series=record_series,
                    horizon=self.horizon, fast=vidur_fast))
                continue
            sched = make_scheduler()
            sched.reset(stream(seed, "policy.scheduler", replication=k))
            self.instances.append(Instance(k, engine, latency, sched, self.st, self.view,
                                           self._schedule, self._on_finish, record_series,
                                           check))
        self.single = num_instances == 1
        # One Vidur replica with only static arrivals (no sessions, no concurrency gate): its
        # next event is kept here instead of in the heap (each new one supersedes the last,
        # as its version says), and run() merges it with the arrivals.
        self.lone: tuple[float, int] | None = None
        self.num_rejected = 0
        self.inflight = 0
        self.gate: deque[int] = deque()
        self.num_events = 0
        self.next_static_t = math.inf
        self._link_sessions()

    # ------------------------------------------------------------------ set-up
    def _link_sessions(self) -> None:
        """Static arrivals, and the next turn of each multi-turn session."""
        w = self.w
        self.next_turn = None
        if w.session_id is None or not np.any(w.session_id >= 0):
            self.static = None  # every row arrives at its arrival_at
            return
        sid = w.session_id
        turn = w.turn if w.turn is not None else np.zeros(self.n, dtype=np.int64)
        in_s = np.flatnonzero(sid >= 0)
        order = in_s[np.lexsort((turn[in_s], sid[in_s]))]
        nxt = np.full(self.n, -1, dtype=np.int64)
        same = sid[order[1:]] == sid[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
        is_follow = np.zeros(self.n, dtype=bool)
        is_follow[order[1:][same]] = True
        self.next_turn = nxt.tolist()
        self.think = (w.think_time_s.tolist() if w.think_time_s is not None
                      else [0.0] * self.n)
        self.static = np.flatnonzero(~is_follow).tolist()

    def view(self, rid: int) -> RequestView:
        """The read-only view policies get of request ``rid``."""
        w = self.w
        st = self.st
        return RequestView(
            rid, st.arrival_at[rid], st.prompt[rid],
            None if self.predicted is None else self.predicted[rid],
            None if w.tenant is None else str(w.tenant[rid]),
            None if w.prefix_hashes is None else w.prefix_hashes[rid],
            None if w.program_id is None else str(w.program_id[rid]))

    # ------------------------------------------------------------------ events
    def _schedule(self, t: float, inst: int, version: int) -> None:
        if self.lone is not None:
            self.lone = (t, version)  # the one replica's next event (see run)
            return
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, STEP_END, inst, version))

    def _on_finish(self, rid: int, t: float) -> None:
        if not self.single:
            k = self.st.instance[rid]
            self.cols["outstanding_tokens"][k] -= self.st.prompt[rid] + self.st.output[rid]
        if self.gate:
            # The slot passes to the head of the gate. Dispatch it as its own event (same time)
            # so that the finishing instance completes its step before anything arrives.
            self.seq += 1
            heapq.heappush(self.heap, (t, self.seq, DISPATCH, self.gate.popleft(), 0))
        else:
            self.inflight -= 1
        self._follow_up(rid, t)

    def _follow_up(self, rid: int, t: float) -> None:
        if self.next_turn is not None:
            nxt = self.next_turn[rid]
            if nxt >= 0:
                self.seq += 1
                heapq.heappush(self.heap, (t + self.think[nxt], self.seq, ARRIVAL, nxt, 0))

    def _arrive(self, rid: int, t: float) -> None:
        st = self.st
        st.arrival_at[rid] = t
        if st.prompt[rid] + st.output[rid] > self.max_model_len:
            st.status[rid] = REJECTED
            self.num_rejected += 1
            self._follow_up(rid, t)
            return
        if self.max_concurrency is not None and self.inflight >= self.max_concurrency:
            self.gate.append(rid)
            return
        self.inflight += 1
        self._dispatch(rid, t)

    def _dispatch(self, rid: int, t: float) -> None:
        """Route ``rid`` (which holds an in-flight slot) and hand it to its instance."""
        st = self.st
        st.arrival_at[rid] = t
        if self.single:  # one instance: nothing to decide, and no table to keep for routers
            self.instances[0].arrive(rid, t)
            return
        k = self.router.route(self.view(rid), self.table)
        if not 0 <= k < len(self.instances):
            raise RuntimeError(f"router {self.router!r} returned instance {k} of "
                               f"{len(self.instances)}")
        self.cols["outstanding_tokens"][k] += st.prompt[rid] + st.output[rid]
        self.instances[k].arrive(rid, t)
        self._refresh(k)

    def horizon(self) -> float:
        """Time of the next event outside the instance being stepped (arrival or heap event).

        An instance may process its own internal events strictly before this time without
        returning to the loop: nothing else can happen in between.
        """
        heap = self.heap
        return min(self.next_static_t, heap[0][0]) if heap else self.next_static_t

    def _refresh(self, k: int) -> None:
        inst = self.instances[k]
        cols = self.cols
        cols["num_waiting"][k] = len(inst.waiting)
        cols["num_running"][k] = len(inst.running)
        cols["kv_used_frac"][k] = inst.used / inst.total_blocks

    # ------------------------------------------------------------------ loop
    def run(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Run to completion; returns the wall time of the loop in seconds.

        One Vidur replica with only static arrivals (no sessions, no concurrency gate) keeps
        its next event in ``self.lone`` instead of the heap (each new one supersedes the last,
        as its version says): the same events in the same order, without heap operations.
        """
        t_wall = _time.perf_counter()
        heap = self.heap
        insts = self.instances
        arr = self.st.arrival_at
        static = self.static
        order = range(self.n) if static is None else static
        n_static = len(order)
        refresh = (lambda k: None) if self.single else self._refresh
        inf = math.inf
        lone = (self.single and self.next_turn is None and self.max_concurrency is None
                and isinstance(insts[0], VidurV0Instance))
        if lone:
            self.lone = (inf, 0)
        i = 0
        events = 0
        report_every = 1 << 16
        while True:
            ta = arr[order[i]] if i < n_static else inf
            self.next_static_t = ta
            if lone:
                t, version = self.lone  # type: ignore[misc]
                due = t < ta
            else:
                due = bool(heap) and heap[0][0] < ta
            if due:
                if lone:
                    self.lone = (inf, 0)
                    insts[0].step_end(t, version)
                else:
                    t, _, kind, a, b = heapq.heappop(heap)
                    if kind == STEP_END:
                        insts[a].step_end(t, b)
                        refresh(a)
                    elif kind == ARRIVAL:
                        self._arrive(a, t)
                    else:
                        self._dispatch(a, t)
            elif i < n_static:
                rid = order[i]
                i += 1
                self._arrive(rid, ta)
            else:
                break
            events += 1
            if progress is not None and events % report_every == 0:
                progress(i, n_static)
        self.lone = None
        self.num_events = events
        if progress is not None:
            progress(n_static, n_static)
        return _time.perf_counter() - t_wall

"""``engine.preset=vidur_v0``: Vidur 0.0.26's vLLM (v0) replica scheduler and pipeline.

Mirrors ``vidur/scheduler/replica_scheduler/vllm_replica_scheduler.py``,
``base_replica_scheduler.py`` and the replica stage scheduler (microsoft/vidur, MIT):

- Batches are never mixed. A new batch is formed only when no batch occupies stage 0 and fewer
  than ``pp`` batches are in flight, at an arrival, at the end of stage 0 and at a batch's end.
- *Prefill first*: waiting requests in FIFO order join a prefill batch while the plain sum of
  their prompts stays within ``max_num_batched_tokens`` (4096), fewer than ``max_num_seqs``
  (128) requests are admitted in all, the batch has fewer than ``max_num_seqs / pp`` requests,
  and ``free blocks - ceil(P / 16) >= watermark`` (1% of blocks); the first that fails stops it
  (head-of-line). No chunking: a prompt is prefilled whole.
- Otherwise a *decode* batch takes the running requests that are not in flight (oldest arrival
  first, at most ``max_num_seqs / pp``), one token each; each needs one free block, else the
  latest-arrived is restarted (recompute).
- A batch passes the ``pp`` stages in order, each a FIFO server; tokens are credited when it
  leaves the last stage. The prefill produces the first token; a request with ``D`` output
  tokens then needs ``D - 1`` decode batches.
- Stage times come from :class:`servoir.hardware.vidur.VidurStageTime`.

Event skipping: requests that always travel together form a *group* with aggregate state (size,
sum of processed tokens, finish heap, block phases), so a decode batch costs O(log n) whatever
its size, and a lone group cycling through the pipeline with nothing else to do runs as one
event until its next finish, arrival or KV-bucket change.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

from servoir.sim.state import FINISHED, RUNNING, WAITING, RequestState

STAGE_END, STRETCH_END = 0, 1


class Group:
    """Running requests that move through the pipeline together (one decode batch)."""

    __slots__ = ("members", "r", "sum_proc", "fin", "phase_cnt", "last_times", "last_mean",
                 "cycle")

    def __init__(self) -> None:
        self.members: dict[int, None] = {}
        self.r = 0  # decode rounds this group has completed
        self.sum_proc = 0  # sum of processed tokens over members, at round r
        self.fin: list[tuple[int, int]] = []  # (finish round, rid)
        self.phase_cnt = [0] * 16
        self.last_times: tuple[float, ...] = ()  # stage times of its latest batch
        self.last_mean = 0  # mean KV of its latest batch
        self.cycle: tuple[Any, ...] | None = None  # pipeline state at its last batch end


class Batch:
    """A batch in the pipeline: a prefill list or a decode group, with its stage times."""

    __slots__ = ("group", "prefill", "times", "need")

    def __init__(self, times: tuple[float, ...], group: Group | None = None,
                 prefill: list[int] | None = None, need: int = 0) -> None:
        self.group = group
        self.prefill = prefill
        self.times = times
        self.need = need  # blocks allocated at formation (decode)


class VidurV0Instance:
    """One Vidur-v0 replica. Same driver interface as :class:`servoir.sim.instance.Instance`."""

    def __init__(self, idx: int, *, pp: int, max_num_seqs: int, max_num_batched_tokens: int,
                 num_blocks: int, block_size: int, stage_time: Any, state: RequestState,
                 schedule: Callable[[float, int, int], None],
                 on_finish: Callable[[int, float], None], record_series: bool = True,
                 horizon: Callable[[], float] = lambda: 0.0, fast: bool = True) -> None:
        if block_size != 16:
            raise ValueError("vidur_v0 models Vidur's block size of 16 tokens")
        self.idx = idx
        self.pp = pp
        self.cap = max_num_seqs
        self.micro = max_num_seqs // pp
        self.max_tokens = max_num_batched_tokens
        self.total_blocks = num_blocks
        self.watermark = int(0.01 * num_blocks)
        self.bs = block_size
        self.stage_time = stage_time
        self.st = state
        self.schedule = schedule
        self.on_finish = on_finish
        self.horizon = horizon  # internal events before it are processed without the cluster
        self.fast = fast  # inlined common paths and stretches (False: the literal path only)
        self.used = 0
        self.queue: deque[int] = deque()  # Vidur's _request_queue (FIFO; restarts at the front)
        self.admitted = 0  # Vidur's len(allocation_map)
        self.ready: list[Group] = []  # Vidur's _preempted_requests, as groups
        self.stage_q: list[deque[Batch]] = [deque() for _ in range(pp)]
        self.stage_busy: list[Batch | None] = [None] * pp
        self.stage_end_t = [0.0] * pp
        self.prefills_in_flight = 0
        self.stage_seq = [0] * pp  # push order of each stage's running batch (tie-breaks)
        self.running_batches = 0
        self.running_stages = 0
        self.events: list[tuple[float, int, int, int]] = []  # (time, seq, kind, stage|epoch)
        # A lone decode group cycling through an otherwise empty pipeline (event skipping).
        self.stretch: Group | None = None
        self.stretch_t0 = 0.0
        self.stretch_times: tuple[float, ...] = ()
        self.stretch_round = 0.0  # sum of stage times: one round
        self.stretch_k = 0
        self.stretch_epoch = 0
        self.seq = 0
        self.version = 0
        self.next_t = math.inf
        self.num_preemptions = 0
        self.num_steps = 0
        self.num_iterations = 0
        self.record_series = record_series
        self.s_time = array("d")
        self.s_running = array("q")
        self.s_waiting = array("q")
        self.s_used = array("q")

    # ------------------------------------------------------------------ driver interface
    @property
    def waiting(self) -> deque[int]:
        """Requests not yet admitted (for the cluster's replica table)."""
        return self.queue

    @property
    def running(self) -> range:
        """Admitted, unfinished requests (only its length is used)."""
        return range(self.admitted)

    def arrive(self, rid: int, now: float) -> None:
        """A request joins the FIFO queue; the scheduler runs."""
        st = self.st
        st.instance[rid] = self.idx
        st.status[rid] = WAITING
        self.queue.append(rid)
        if self.stretch is not None:
            self._cut_stretch(now)
        self._on_schedule(now)
        self._reschedule()
        if self.record_series:
            self._record(now)

    def step_end(self, now: float, version: int) -> None:
        """Process the internal event due at ``now``, and every later one due before the
        cluster's next event (nothing else can happen in between)."""
        if version != self.version:
            return
        ev = self.events
        horizon = self.horizon
        while True:
            if (self.fast and ev[0][2] == STAGE_END and not self.queue
                    and not self.prefills_in_flight and self.stretch is None):
                self._decode_loop(horizon())
                if not ev or ev[0][0] >= horizon():
                    break
            t, _, kind, arg = heapq.heappop(ev)
            if kind == STAGE_END:
                self._stage_end(arg, t)
            elif arg == self.stretch_epoch and self.stretch is not None:
                self._end_stretch(t)
            while ev and ev[0][2] == STRETCH_END and ev[0][3] != self.stretch_epoch:
                heapq.heappop(ev)
            if not ev or ev[0][0] >= horizon():
                break
        self.next_t = math.inf
        self._reschedule()

    def _push(self, t: float, stage: int, kind: int = STAGE_END) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, stage))

    def _reschedule(self) -> None:
        ev = self.events
        while ev and ev[0][2] == STRETCH_END and ev[0][3] != self.stretch_epoch:
            heapq.heappop(ev)  # a stretch that was cut
        if ev and ev[0][0] != self.next_t:
            self.next_t = self.events[0][0]
            self.version += 1
            self.schedule(self.next_t, self.idx, self.version)

    # ------------------------------------------------------------------ pipeline
    def _start_stage(self, s: int, now: float) -> None:
        if self.stage_busy[s] is None and self.stage_q[s]:
            batch = self.stage_q[s].popleft()
            self.stage_busy[s] = batch
            self.stage_end_t[s] = now + batch.times[s]
            self._push(self.stage_end_t[s], s)
            self.stage_seq[s] = self.seq

    def _stage_end(self, s: int, now: float) -> None:
        busy = self.stage_busy
        batch = busy[s]
        busy[s] = None
        if s == 0:
            self.running_stages -= 1
        if self.stage_q[s]:
            self._start_stage(s, now)
        last = self.pp - 1
        if s < last:
            self.stage_q[s + 1].append(batch)
            if busy[s + 1] is None:
                self._start_stage(s + 1, now)
        else:
            self.running_batches -= 1
            self._batch_end(batch, now)  # type: ignore[arg-type]
        if (s == 0 or s == last) and self.running_stages == 0:
            self._on_schedule(now)

    # ------------------------------------------------------------------ batch formation
    def _on_schedule(self, now: float) -> None:
        if self.running_batches < self.pp and self.running_stages == 0:
            batch = self._prefill_batch(now) or self._decode_batch(now)
            if (batch is not None and batch.group is not None and self.running_batches == 0
                    and self.fast and not self.queue and self._try_stretch(batch, now)):
                return
            if batch is not None:
                self.running_batches += 1
                self.running_stages += 1
                self.num_steps += 1
                self.stage_q[0].append(batch)
                self._start_stage(0, now)

    def _prefill_len(self, rid: int) -> int:
        # A restarted request re-prefills everything it had processed.
        st = self.st
        return st.prompt[rid] + st.gen[rid]

    def _prefill_batch(self, now: float) -> Batch | None:
        st, q = self.st, self.queue
        total = 0
        rids: list[int] = []
        while q:
            rid = q[0]
            p = self._prefill_len(rid)
            blocks = -(-p // self.bs)
            if self.total_blocks - self.used - blocks < self.watermark:
                break
            if total + p > self.max_tokens or self.admitted == self.cap or len(rids) == self.micro:
                break
            q.popleft()
            self.used += blocks
            st.held[rid] = blocks
            self.admitted += 1
            st.status[rid] = RUNNING
            if st.first_scheduled_at[rid] != st.first_scheduled_at[rid]:
                st.first_scheduled_at[rid] = now
            rids.append(rid)
            total += p
        if not rids:
            return None
        if self.record_series:
            self._record(now)
        self.prefills_in_flight += 1
        return Batch(self.stage_time.prefill_stages([self._prefill_len(r) for r in rids]),
                     prefill=rids)

    def _decode_batch(self, now: float) -> Batch | None:
        ready = self.ready
        if not ready:
            return None
        if len(ready) == 1 and len(ready[0].members) <= self.micro:
            g = ready.pop()
        else:
            g = self._gather()
        need = g.phase_cnt[(1 - g.r) % 16]
        if need >= self.total_blocks - self.used:
            g = self._make_room(g, now)  # rare: memory nearly full
            if g is None:
                return None
            need = g.phase_cnt[(1 - g.r) % 16]
        self.used += need
        b = len(g.members)
        mean_kv = (g.sum_proc + b) // b
        g.last_mean = mean_kv
        g.last_times = self.stage_time.decode_stages(b, mean_kv)
        return Batch(g.last_times, group=g, need=need)

    def _gather(self) -> Group:
        """Vidur's decode selection: every ready request, oldest arrival first, at most
        ``max_num_seqs / pp``. Ready groups merge into one."""
        groups = self.ready
        total = sum(len(g.members) for g in groups)
        if total <= self.micro:
            self.ready = []
            groups.sort(key=lambda g: -len(g.members))
            target = groups[0]
            for g in groups[1:]:
                self._absorb(target, g, list(g.members))
            return target
        # Split by arrival: the oldest `micro` form the batch, the rest stay ready.
        arr = self.st.arrival_at
        everyone = sorted((arr[m], m, g) for g in groups for m in g.members)
        chosen, rest = Group(), Group()
        for i, (_, m, g) in enumerate(everyone):
            self._absorb(chosen if i < self.micro else rest, g, [m])
        self.ready = [rest]
        return chosen

    def _absorb(self, target: Group, src: Group, rids: list[int]) -> None:
        """Move ``rids`` from ``src`` into ``target``, rebasing their progress."""
        st = self.st
        for m in rids:
            proc = st.computed[m] + (src.r - st.base_it[m])
            src.members.pop(m, None)
            src.phase_cnt[(st.computed[m] - st.base_it[m]) % 16] -= 1
            src.sum_proc -= proc
            self._join(target, m, proc)

    def _join(self, g: Group, rid: int, proc: int) -> None:
        st = self.st
        st.computed[rid] = proc
        st.base_it[rid] = g.r
        g.members[rid] = None
        g.sum_proc += proc
        g.phase_cnt[(proc - g.r) % 16] += 1
        st.epoch[rid] += 1
        # Finishes when processed reaches prompt + output.
        heapq.heappush(g.fin, (g.r + st.prompt[rid] + st.output[rid] - proc, rid))

    def _make_room(self, g: Group, now: float) -> Group | None:
        """Vidur's per-request allocation loop with restarts, when blocks are short."""
        st = self.st
        order = sorted(g.members, key=lambda m: (st.arrival_at[m], m))
        kept: list[int] = []
        while order:
            rid = order.pop(0)
            proc = st.computed[rid] + g.r - st.base_it[rid]
            need = 1 if (proc - 1) % 16 == 0 else 0
            while self.total_blocks - self.used < 1:
                victim = order.pop() if order else rid
                self._restart(g, victim)
                if victim == rid:
                    break
            else:
                self.used += need
                kept.append(rid)
        if not kept:
            return None
        fresh = Group()
        self._absorb(fresh, g, kept)
        fresh.r = 0
        self.used -= sum(1 for m in kept
                         if (st.computed[m] - 1) % 16 == 0)  # re-counted at formation
        return fresh

    def _restart(self, g: Group, rid: int) -> None:
        st = self.st
        proc = st.computed[rid] + g.r - st.base_it[rid]
        g.members.pop(rid, None)
        g.phase_cnt[(st.computed[rid] - st.base_it[rid]) % 16] -= 1
        g.sum_proc -= proc
        self.used -= -(-(proc - 1) // self.bs)
        self.admitted -= 1
        st.gen[rid] = proc - st.prompt[rid]
        st.computed[rid] = 0
        st.epoch[rid] += 1
        st.num_preemptions[rid] += 1
        self.num_preemptions += 1
        st.status[rid] = WAITING
        self.queue.appendleft(rid)

    # ------------------------------------------------------------------ event skipping
    def _round_needs(self, g: Group, first: int, count: int) -> int:
        """Blocks group ``g`` allocates at the formation of rounds ``first .. first+count-1``
        (relative to ``g.r``): one per member whose length crosses a block boundary."""
        b = len(g.members)
        full, rem = divmod(count, 16)
        total = full * b
        for i in range(rem):
            total += g.phase_cnt[(1 - (g.r + first + full * 16 + i)) % 16]
        return total

    def _try_stretch(self, batch: Batch, now: float) -> bool:
        """Run a lone decode group's next rounds as one event, if at least two fit."""
        g = batch.group
        assert g is not None
        b = len(g.members)
        k_fin = g.fin[0][0] - g.r
        m0 = (g.sum_proc + b) // b  # mean KV of round 0; +1 per round
        k_bucket = -(-m0 // 256) * 256 - m0 + 1
        k = min(k_fin, k_bucket)
        free = self.total_blocks - self.used  # round 0's blocks are already allocated
        while k >= 2 and self._round_needs(g, 1, k - 1) >= free:
            k //= 2  # memory tight: shorter stretch (the slow path takes over near full)
        if k < 2:
            return False
        self.running_batches = 1
        self.num_steps += 1
        self.stretch = g
        self.stretch_t0 = now
        self.stretch_times = batch.times
        self.stretch_round = sum(batch.times)
        self.stretch_k = k
        self.stretch_epoch += 1
        self._push(now + k * self.stretch_round, self.stretch_epoch, STRETCH_END)
        return True

    def _advance_stretch(self, rounds: int) -> Group:
        """Apply ``rounds`` completed rounds of the stretch (round 0's blocks already counted)."""
        g = self.stretch
        assert g is not None
        if rounds > 1:
            self.used += self._round_needs(g, 1, rounds - 1)
        g.r += rounds
        g.sum_proc += len(g.members) * rounds
        self.num_iterations += rounds
        return g

    def _end_stretch(self, now: float) -> None:
        k = self.stretch_k
        g = self._advance_stretch(k - 1)
        self.stretch = None
        # The last round ends like any decode batch (finishes, then the scheduler runs).
        self.running_batches = 0
        self._batch_end(Batch(self.stretch_times, group=g), now)
        self._on_schedule(now)

    def _cut_stretch(self, now: float) -> None:
        """An arrival: rounds before the one in progress complete; that round becomes an
        ordinary batch in the stage it occupies, so the pipeline proceeds as Vidur's would."""
        j = min(int((now - self.stretch_t0) / self.stretch_round), self.stretch_k - 1)
        g = self._advance_stretch(j)
        self.used += self._round_needs(g, 0, 1) if j > 0 else 0
        start = self.stretch_t0 + j * self.stretch_round
        self.stretch = None
        self.stretch_epoch += 1
        batch = Batch(self.stretch_times, group=g)
        t = start
        for stage, dt in enumerate(self.stretch_times):
            if now < t + dt or stage == self.pp - 1:
                self.stage_busy[stage] = batch
                self.running_stages = 1 if stage == 0 else 0
                self._push(t + dt, stage)
                return
            t += dt

    def _decode_loop(self, horizon: float) -> None:
        """Decode-only fast path: :meth:`_stage_end` and :meth:`_on_schedule` inlined for
        decode groups taking turns in the pipeline, with no heap, until the horizon, a round in
        which a request finishes, a merge of groups, memory pressure or a lone group (all left
        to the general path). Same semantics and tie order as the general path (tests compare
        the two with ``fast=False``)."""
        busy, end, seqs, sq = self.stage_busy, self.stage_end_t, self.stage_seq, self.stage_q
        pp, last, micro = self.pp, self.pp - 1, self.micro
        ready = self.ready
        decode_stages = self.stage_time.decode_stages
        while True:
            s = -1
            for i in range(pp):
                if busy[i] is not None and (s < 0 or (end[i], seqs[i]) < (end[s], seqs[s])):
                    s = i
            if s < 0:
                break
            t = end[s]
            batch = busy[s]
            g = batch.group  # type: ignore[union-attr]
            if t >= horizon or g is None or (s == last and g.fin[0][0] <= g.r + 1):
                break
            if s == last:
                t = self._skip_cycles(g, t, horizon)
            busy[s] = None
            if s == 0:
                self.running_stages -= 1
            for j in (s, s + 1) if s < last else (s,):
                if j == s + 1:
                    sq[j].append(batch)  # type: ignore[arg-type]
                if busy[j] is None and sq[j]:
                    nb = sq[j].popleft()
                    busy[j] = nb
                    end[j] = t + nb.times[j]
                    self.seq += 1
                    seqs[j] = self.seq
            if s == last:
                self.running_batches -= 1
                self.num_iterations += 1
                g.r += 1
                g.sum_proc += len(g.members)
                ready.append(g)
            if not ((s == 0 or s == last) and self.running_stages == 0
                    and self.running_batches < pp and ready):
                continue
            g2 = ready[0]
            b = len(g2.members)
            need = g2.phase_cnt[(1 - g2.r) % 16]
            if (len(ready) > 1 or b > micro or self.running_batches == 0
                    or need >= self.total_blocks - self.used):
                self._on_schedule(t)  # merge, split, lone group or memory: general path
                break
            ready.pop()
            self.used += need
            mean_kv = (g2.sum_proc + b) // b
            g2.last_mean = mean_kv
            g2.last_times = decode_stages(b, mean_kv)
            self.running_batches += 1
            self.running_stages += 1
            self.num_steps += 1
            sq[0].append(Batch(g2.last_times, group=g2, need=need))
            if busy[0] is None:
                nb = sq[0].popleft()
                busy[0] = nb
                end[0] = t + nb.times[0]
                self.seq += 1
                seqs[0] = self.seq
        # Hand the pipeline back to the heap.
        ev = [e for e in self.events if e[2] != STAGE_END]
        ev += [(end[i], seqs[i], STAGE_END, i) for i in range(pp) if busy[i] is not None]
        heapq.heapify(ev)
        self.events[:] = ev

    def _skip_cycles(self, g: Group, t: float, horizon: float) -> float:
        """Event skipping for decode groups taking turns: at ``g``'s batch end, if the pipeline
        is exactly as at ``g``'s previous batch end (same groups in the same places, same stage
        times, every group one round further, remaining stage times within 1 ns), the cycle
        repeats: skip ``n`` whole periods, up to just before the next finish, KV-bucket change,
        memory pressure or external event. Returns the (shifted) time of this batch end."""
        m = g.last_mean
        if g.fin[0][0] - g.r < 4 or -(-m // 256) * 256 - m < 2:
            g.cycle = None  # a finish or bucket change is due: nothing to skip
            return t
        busy, end = self.stage_busy, self.stage_end_t
        groups: list[Group] = []
        offs: list[float] = []
        for i, b in enumerate(busy):
            if b is not None:
                groups.append(b.group)  # type: ignore[arg-type]
                offs.append(end[i] - t)
        for q in self.stage_q:
            for b in q:
                groups.append(b.group)  # type: ignore[arg-type]
        inflight = len(groups)
        groups += self.ready
        key = (tuple(map(id, groups)), tuple(id(x.last_times) for x in groups), len(offs),
               inflight)
        rs = [x.r for x in groups]
        prev, g.cycle = g.cycle, (t, key, offs, rs)
        if prev is None or prev[1] != key:
            return t
        t0, _, offs0, rs0 = prev
        for r, r0 in zip(rs, rs0, strict=True):
            if r != r0 + 1:
                return t
        for a, b0 in zip(offs, offs0, strict=True):
            if abs(a - b0) > 1e-9:
                return t
        period = t - t0
        n = int((horizon - t) / period) - 1 if horizon < math.inf else 1 << 30
        for i, x in enumerate(groups):
            m = x.last_mean
            n = min(n, x.fin[0][0] - x.r - 2, -(-m // 256) * 256 - m - (i >= inflight))
        if n < 1:
            return t
        needs = sum(self._round_needs(x, 1 if i < inflight else 0, n)
                    for i, x in enumerate(groups))
        if needs >= self.total_blocks - self.used - sum(len(x.members) for x in groups):
            return t
        self.used += needs
        for x in groups:
            x.r += n
            x.sum_proc += len(x.members) * n
            x.last_mean += n
            x.cycle = None
        self.num_iterations += n * len(groups)
        shift = n * period
        for i, b in enumerate(busy):
            if b is not None:
                end[i] += shift
        return t + shift

    # ------------------------------------------------------------------ batch end
    def _batch_end(self, batch: Batch, now: float) -> None:
        self.num_iterations += 1
        st = self.st
        if batch.prefill is not None:
            self.prefills_in_flight -= 1
            g = Group()
            for rid in batch.prefill:
                proc = self._prefill_len(rid) + 1  # the prefill yields one token
                if st.first_token_at[rid] != st.first_token_at[rid]:
                    st.first_token_at[rid] = now
                if proc >= st.prompt[rid] + st.output[rid]:
                    self._finish(rid, proc, now)
                    continue
                self.used -= st.held[rid]  # blocks are re-derived from the length from now on
                self.used += -(-(proc - 1) // self.bs)
                st.held[rid] = 0
                self._join(g, rid, proc)
            if g.members:
                self.ready.append(g)
            return
        g = batch.group
        assert g is not None
        g.r += 1
        g.sum_proc += len(g.members)
        while g.fin and g.fin[0][0] <= g.r:
            _, rid = heapq.heappop(g.fin)
            if rid not in g.members:
                continue
            proc = st.computed[rid] + g.r - st.base_it[rid]
            g.members.pop(rid)
            g.phase_cnt[(st.computed[rid] - st.base_it[rid]) % 16] -= 1
            g.sum_proc -= proc
            self.used -= -(-(proc - 1) // self.bs)
            self._finish(rid, proc, now)
        if g.members:
            self.ready.append(g)

    def _finish(self, rid: int, proc: int, now: float) -> None:
        st = self.st
        if st.held[rid]:
            self.used -= st.held[rid]
            st.held[rid] = 0
        st.gen[rid] = st.output[rid]
        st.computed[rid] = proc
        st.status[rid] = FINISHED
        st.finish_at[rid] = now
        self.admitted -= 1
        self.on_finish(rid, now)
        if self.record_series:
            self._record(now)

    def _record(self, now: float) -> None:
        self.s_time.append(now)
        self.s_running.append(self.admitted)
        self.s_waiting.append(len(self.queue))
        self.s_used.append(self.used)


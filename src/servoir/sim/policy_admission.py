"""Policy-decided admission in the vLLM v1 engine: what a ``select`` policy sees of the batch,
and admitting its choice (:mod:`servoir.policies.scheduling.lookahead`).

A mixin of :class:`servoir.sim.instance.Instance` (its state lives there); split out as one
concept of the engine.
"""

from __future__ import annotations

import heapq
from typing import Any

from servoir.policies.scheduling.lookahead import BatchView, make_view
from servoir.sim.engine_params import IterationPlan


class PolicyAdmission:
    """``select``-policy admission for :class:`~servoir.sim.instance.Instance`."""

    def _run_row(self, rid: int) -> tuple[int, int, int, float, Any]:
        st = self.st
        g = st.gen[rid] + (self.it - st.base_it[rid] if rid in self.phase else 0)
        return rid, st.prompt[rid] + g, g, self.pred[rid], self.tenant[rid]

    def batch_view(self, now: float) -> BatchView:
        """What a ``select`` policy sees now (running in admission order)."""
        st = self.st
        wait = [(rid, st.prompt[rid] + st.gen[rid], st.gen[rid], st.gen[rid], self.pred[rid],
                 st.arrival_at[rid], self.tenant[rid]) for _, _, rid in self.waiting]
        return make_view(now, self.total_blocks * self.bs, self.bs,
                         [self._run_row(rid) for rid in self.running], wait, self.fin_since)

    def _admit_selected(self, plan: IterationPlan, now: float) -> None:
        """Admit the policy's choice, in its order, while cap and budget allow; a request whose
        first chunk does not fit in the free blocks now is skipped."""
        p = self.p
        if (not self.waiting or plan.budget <= 0
                or len(self.running) + self.held_slots >= p.max_num_seqs):
            return
        view = self.batch_view(now)
        chosen = self.sched.select(view)
        self.fin_since = []
        admitted: set[int] = set()
        for i in chosen:
            if plan.budget <= 0 or len(self.running) + self.held_slots >= p.max_num_seqs:
                break
            rid = int(view.wait_ids[i])
            first = self._first_chunk(rid, plan)
            if first is None:
                continue
            admitted.add(rid)
            self._admit_one(plan, rid, *first, now)
        if admitted:
            self.waiting = [e for e in self.waiting if e[2] not in admitted]
            heapq.heapify(self.waiting)

"""Recompute preemption of the vLLM v1 engine: which running request gives way, and how its
blocks go back (to the free list, or to the free-block queue of the prefix cache).

A mixin of :class:`servoir.sim.instance.Instance` (its state lives there); split out as one
concept of the engine.
"""

from __future__ import annotations

from servoir.policies.scheduling.lookahead import make_view
from servoir.sim.state import WAITING


class Preemption:
    """Victim choice and recompute preemption for :class:`~servoir.sim.instance.Instance`."""

    def _pick_victim(self, exclude: set[int], now: float = 0.0) -> int:
        if self.custom_victim:
            rids = [rid for rid in self.running if rid not in exclude]
            if not rids:
                return -1
            view = make_view(now, self.total_blocks * self.bs, self.bs,
                             [self._run_row(rid) for rid in rids], [], [])
            return rids[self.sched.choose_victim(view)]
        if self.last_admitted_victim:
            for rid in reversed(self.running):
                if rid not in exclude:
                    return rid
            return -1
        rank = self.st.rank
        best, best_key = -1, None
        for rid, s in self.running.items():
            if rid in exclude:
                continue
            key = (rank[rid], s)
            if best_key is None or key > best_key:
                best, best_key = rid, key
        return best

    def _preempt(self, rid: int, now: float) -> None:
        """Recompute preemption: free all of ``rid``'s blocks and requeue it."""
        st = self.st
        del self.running[rid]
        fq = self.fq
        if fq is not None:
            self._fq_sync()
        if rid in self.phase:
            # Decoding: derive its progress at the current iteration, leave the aggregates.
            adv = self.it - st.base_it[rid]
            comp = st.computed[rid] + adv
            st.gen[rid] += adv
            self._remove_decoder(rid, comp)
            freed = -(-comp // self.bs)
        else:
            self.prefilling.remove(rid)
            self.used -= st.held[rid]
            comp, freed = st.computed[rid], st.held[rid]
        if fq is not None:
            fq.push(freed, comp // self.bs, rid)
        st.computed[rid] = 0
        st.held[rid] = 0
        st.epoch[rid] += 1
        st.num_preemptions[rid] += 1
        self.num_preemptions += 1
        st.status[rid] = WAITING
        self._enqueue(rid, now)

    def _fq_sync(self) -> None:
        """Bring the free-block queue up to the allocations made since its last sync."""
        self.fq.sync(self.total_blocks - self.used + self.held_in_used)  # type: ignore[union-attr]

    def _remove_decoder(self, rid: int, comp: int) -> None:
        ph = self.phase.pop(rid)
        self.phase_cnt[ph] -= 1
        self.n_dec -= 1
        self.K -= comp
        self.used -= -(-comp // self.bs)

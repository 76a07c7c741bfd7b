"""The MoE layer step-time model: the busiest GPU drives the step, monotone in load."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.moe.step_model import MoELayerStepModel


def test_monotone_in_every_gpu_load() -> None:
    m = MoELayerStepModel()
    rng = np.random.default_rng(0)
    for _ in range(200):
        loads = rng.random(16) * 40000
        base = m.step_s(loads, 6)
        bumped = loads.copy()
        bumped[rng.integers(16)] += rng.random() * 5000
        assert m.step_s(bumped, 6) >= base
        assert m.step_s(loads, 7) >= base


def test_max_gpu_drives_step_and_balance_helps() -> None:
    m = MoELayerStepModel()
    loads = np.array([10000.0, 30000.0, 20000.0])
    assert m.step_s(loads, 4) == m.gpu_s(loads, 4).max() == m.gpu_s(np.array([30000.0]), 4)[0]
    assert m.step_s(np.full(3, 20000.0), 4) < m.step_s(loads, 4)


def test_memory_floor_and_validation() -> None:
    m = MoELayerStepModel()
    floor = m.overhead_s + 4 * m.expert_bytes / m.hbm_bytes_per_s
    assert m.step_s(np.zeros(4), 4) == pytest.approx(floor)
    with pytest.raises(InputError):
        MoELayerStepModel(efficiency=0.0)
    with pytest.raises(InputError):
        m.step_s(np.array([-1.0]), 4)

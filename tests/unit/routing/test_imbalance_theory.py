"""The sqrt(2 B ln G) round-robin imbalance estimate against saturated lock-step simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoir.analysis.imbalance import (
    expected_max_normal,
    harmonic,
    predict_rr_imbalance,
    rr_expected_imbalance,
    sawtooth_imbalance,
    slot_load_moments,
)
from servoir.errors import InputError
from servoir.experiments.family_routing import saturated
from servoir.workload.readers import read_trace


def test_expected_max_normal_known_values() -> None:
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert expected_max_normal(3) == pytest.approx(1.5 / math.sqrt(math.pi), rel=1e-9)
    rng = np.random.default_rng(0)
    mc = rng.standard_normal((200_000, 16)).max(axis=1).mean()
    assert expected_max_normal(16) == pytest.approx(mc, abs=0.01)
    assert expected_max_normal(16) < math.sqrt(2 * math.log(16))  # the asymptote overestimates


def test_slot_load_moments_brute_force() -> None:
    rng = np.random.default_rng(1)
    s, o = rng.integers(0, 50, 30), rng.integers(1, 20, 30)
    loads = np.concatenate([si + np.arange(1, oi + 1) for si, oi in zip(s, o, strict=True)])
    m, sd = slot_load_moments(s, o)
    assert m == pytest.approx(loads.mean())
    assert sd == pytest.approx(loads.std())
    with pytest.raises(InputError):
        slot_load_moments(np.array([1]), np.array([0]))
    with pytest.raises(InputError):
        rr_expected_imbalance(0, 4, 1.0)


def test_round_robin_imbalance_follows_the_theory_and_bf_io_beats_it() -> None:
    w = read_trace("azure_conv")
    p, o = w.num_prompt_tokens, w.num_output_tokens
    measured = {}
    for b, g in ((8, 2), (32, 2), (8, 8), (32, 8)):
        rr = saturated(p, o, b, g, "round_robin", seed=0, turns=8)
        bf = saturated(p, o, b, g, "bf_io_greedy", seed=0, turns=8)
        pred = predict_rr_imbalance(p, o, b, g)
        assert rr["full_frac"] > 0.3
        assert 0.6 < rr["imbalance"] / pred < 1.6, (b, g, rr["imbalance"], pred)
        assert bf["imbalance"] < rr["imbalance"] / 2
        assert bf["idle"] < rr["idle"]
        measured[b, g] = rr["imbalance"]
    # Grows with B and with G, as sigma sqrt(B) m_G does.
    assert measured[32, 2] > measured[8, 2] and measured[32, 8] > measured[8, 8]
    assert measured[8, 8] > measured[8, 2] and measured[32, 8] > measured[32, 2]


def test_sawtooth_estimate() -> None:
    assert harmonic(1) == 1.0 and harmonic(3) == pytest.approx(11 / 6)
    assert sawtooth_imbalance(200.0, 1) == 0.0
    assert sawtooth_imbalance(200.0, 2) == pytest.approx(100.0)
    # E[max of G exponentials] - E[mean] = m (H_G - 1), by Monte Carlo.
    rng = np.random.default_rng(0)
    x = rng.exponential(50.0, (200_000, 8))
    mc = (x.max(axis=1) - x.mean(axis=1)).mean()
    assert sawtooth_imbalance(50.0, 8) == pytest.approx(mc, rel=0.01)
    with pytest.raises(InputError):
        sawtooth_imbalance(-1.0, 2)


def test_bf_io_imbalance_grows_with_g_not_with_b() -> None:
    """Why the RR / BF-IO ratio grows with B but not with G (docs/explanation/routing.md):
    a saturated group's BF-IO imbalance follows E[o] (H_G - 1), flat in B, rising with G."""
    w = read_trace("azure_conv")
    p, o = w.num_prompt_tokens, w.num_output_tokens
    bf = {(b, g): saturated(p, o, b, g, "bf_io_greedy", seed=0, turns=8)["imbalance"]
          for b in (8, 32) for g in (2, 16)}
    for b in (8, 32):
        assert bf[b, 16] > 2.5 * bf[b, 2], bf
        for g in (2, 16):
            assert sawtooth_imbalance(float(o.mean()), g) < bf[b, g], bf
    for g in (2, 16):
        assert 0.4 < bf[32, g] / bf[8, g] < 2.5, bf

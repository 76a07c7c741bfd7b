"""Length predictors: each kind's defining property, parsing, errors, and what policies see."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.config import load_config
from servoir.errors import InputError
from servoir.experiments.run import predicted_output_tokens, run
from servoir.workload.predictors import parse_predictor, predict

RNG = np.random.default_rng(0)
TRUTH = RNG.integers(1, 2000, 5000).astype(float)
PROMPT = RNG.integers(1, 4000, 5000).astype(float)


def test_oracle_is_the_truth() -> None:
    p = predict("oracle", {}, TRUTH, PROMPT, seed=0)
    for col in (p.lower, p.point, p.upper):
        np.testing.assert_array_equal(col, TRUTH)


def test_noisy_has_the_requested_log_spread() -> None:
    p = predict("noisy", {"sigma": 0.5}, TRUTH, PROMPT, seed=3)
    logs = np.log(p.point / TRUTH)
    assert abs(logs.mean()) < 0.03 and abs(logs.std() - 0.5) < 0.02
    q = predict("noisy", {"sigma": 0.5}, TRUTH, PROMPT, seed=3)
    np.testing.assert_array_equal(p.point, q.point)  # seeded, deterministic


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.2])
def test_interval_contains_truth_with_ratio_alpha(alpha: float) -> None:
    p = predict("interval", {"alpha": alpha}, TRUTH, PROMPT, seed=1)
    assert np.all(p.lower <= TRUTH) and np.all(p.upper >= TRUTH) and np.all(p.lower >= 1)
    big = p.upper > 200  # rounding dominates tiny intervals
    assert np.allclose(p.lower[big] / p.upper[big], alpha, atol=0.01)
    np.testing.assert_allclose(p.point, 0.5 * (p.lower + p.upper))
    if alpha < 1:  # uniform placement: position (truth - l) / (u - l) covers [0, 1] evenly
        pos = (TRUTH[big] - p.lower[big]) / (p.upper[big] - p.lower[big])
        assert abs(pos.mean() - 0.5) < 0.02 and pos.min() < 0.05 and pos.max() > 0.95


def test_adversarial_interval_puts_truth_where_it_hurts() -> None:
    for trusts, end in (("lower", "upper"), ("point", "upper"), ("upper", "lower")):
        p = predict("interval", {"alpha": 0.25, "placement": "adversarial"}, TRUTH, PROMPT,
                    seed=0, trusts=trusts)
        np.testing.assert_array_equal(getattr(p, end), TRUTH)
        assert np.all(p.lower <= TRUTH) and np.all(p.upper >= TRUTH)


def test_learned_uses_only_the_first_fifth() -> None:
    p = predict("learned", {}, TRUTH, PROMPT, seed=0)
    changed = TRUTH.copy()
    changed[1000:] = 1.0  # the held-out 80% may be anything
    q = predict("learned", {}, changed, PROMPT, seed=0)
    np.testing.assert_array_equal(p.point, q.point)
    assert np.all(p.lower <= p.point) and np.all(p.point <= p.upper)


def test_learned_tracks_a_prompt_dependence() -> None:
    prompt = RNG.integers(1, 1000, 4000).astype(float)
    truth = prompt * 2 + RNG.integers(0, 10, 4000)
    p = predict("learned", {"buckets": 16}, truth, prompt, seed=0)
    held = slice(800, None)
    rel = np.abs(p.point[held] - truth[held]) / truth[held]
    base = np.abs(np.median(truth[:800]) - truth[held]) / truth[held]
    assert np.median(rel) < 0.5 * np.median(base)


@pytest.mark.parametrize(("text", "kind", "params"), [
    ("oracle", "oracle", {}), ("learned", "learned", {}), ("noisy:0.3", "noisy", {"sigma": 0.3}),
    ("interval:0.5", "interval", {"alpha": 0.5}),
    ("interval:0.5:adversarial", "interval", {"alpha": 0.5, "placement": "adversarial"}),
])
def test_parse(text: str, kind: str, params: dict) -> None:
    assert parse_predictor(text) == (kind, params)


@pytest.mark.parametrize("text", ["", "interval", "noisy:x", "bogus:1", "oracle:1"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(InputError, match="predictor"):
        parse_predictor(text)


@pytest.mark.parametrize(("kind", "params"), [
    ("interval", {"alpha": 0.0}), ("interval", {"alpha": 1.5}), ("noisy", {"sigma": -1}),
    ("interval", {"alpha": 0.5, "placement": "middle"}), ("oracle", {"x": 1}), ("noisy", {}),
])
def test_bad_params_are_input_errors(kind: str, params: dict) -> None:
    with pytest.raises(InputError):
        predict(kind, params, TRUTH, PROMPT, seed=0)


def _cfg(scheduler: str, kind: str, **params: object):
    return load_config(None, {"instance.scheduler.name": scheduler, "prediction.kind": kind,
                              "prediction.params": params or None},
                       ["workload.num_requests=50", "workload.rate=5"])


def test_policies_see_the_column_they_trust() -> None:
    cfg = _cfg("a_min", "interval", alpha=0.5)
    from servoir.experiments.run import build_workload

    w = build_workload(cfg)
    lo = predicted_output_tokens(cfg, w)
    hi = predicted_output_tokens(_cfg("a_max", "interval", alpha=0.5), w)
    mid = predicted_output_tokens(_cfg("mc_sf", "interval", alpha=0.5), w)
    assert np.all(lo <= w.num_output_tokens) and np.all(w.num_output_tokens <= hi)
    np.testing.assert_allclose(mid, 0.5 * (lo + hi))
    assert predicted_output_tokens(_cfg("fcfs", "interval", alpha=0.5), w) is None
    assert predicted_output_tokens(_cfg("mc_sf", "none"), w) is None


def test_fcfs_ignores_any_predictor() -> None:
    a = run(_cfg("fcfs", "none")).requests["finish_at"]
    b = run(_cfg("fcfs", "noisy", sigma=1.0)).requests["finish_at"]
    np.testing.assert_array_equal(a, b)

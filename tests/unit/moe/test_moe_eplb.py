"""EPLB: the README example exactly, and the placement invariants."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.moe.eplb import balanced_packing, rebalance, replicate_experts

README_WEIGHT = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                          [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]])
README_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]


def test_readme_example_exact() -> None:
    phy2log, log2phy, logcnt = rebalance(README_WEIGHT, 16, 4, 2, 8)
    assert phy2log.dtype == log2phy.dtype == logcnt.dtype == np.int64
    assert phy2log.tolist() == README_PHY2LOG
    assert phy2log.shape == (2, 16) and log2phy.shape == (2, 12, 2) and logcnt.shape == (2, 12)
    _check_consistent(phy2log, log2phy, logcnt)


def _check_consistent(phy2log: np.ndarray, log2phy: np.ndarray, logcnt: np.ndarray) -> None:
    layers, experts = logcnt.shape
    for layer in range(layers):
        assert np.array_equal(np.bincount(phy2log[layer], minlength=experts), logcnt[layer])
        for e in range(experts):
            slots = log2phy[layer, e]
            real = slots[slots >= 0]
            assert len(real) == logcnt[layer, e]
            assert np.all(slots[logcnt[layer, e]:] == -1)
            assert np.all(phy2log[layer, real] == e)


@pytest.mark.parametrize(("groups", "nodes"), [(4, 2), (3, 2), (8, 4), (1, 1)])
def test_invariants_random(groups: int, nodes: int) -> None:
    rng = np.random.default_rng(7)
    weight = rng.integers(0, 1000, size=(3, 24)).astype(float)
    phy2log, log2phy, logcnt = rebalance(weight, 32, groups, nodes, 8)
    assert np.all(logcnt >= 1) and np.all(logcnt.sum(-1) == 32)
    _check_consistent(phy2log, log2phy, logcnt)


def test_global_policy_when_groups_not_divisible() -> None:
    # 3 groups on 2 nodes: global policy == hierarchical with one group and one node
    a = rebalance(README_WEIGHT, 16, 3, 2, 8)
    b = rebalance(README_WEIGHT, 16, 1, 1, 8)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_replicate_is_water_filling() -> None:
    phy2log, rank, logcnt = replicate_experts(np.array([[200.0, 150.0, 10.0]]), 5)
    assert logcnt.tolist() == [[2, 2, 1]] and phy2log.tolist() == [[0, 1, 2, 0, 1]]
    assert rank.tolist() == [[0, 0, 0, 1, 1]]


def test_balanced_packing_cardinality() -> None:
    w = np.array([[5.0, 4, 3, 3, 2, 1]])
    pack, rank = balanced_packing(w, 2)
    assert np.bincount(pack[0]).tolist() == [3, 3]
    loads = np.bincount(pack[0], weights=w[0])
    assert loads.tolist() == [9.0, 9.0]
    assert sorted(rank[0][pack[0] == 0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("args", [(16, 5, 2, 8), (15, 4, 2, 8), (16, 4, 3, 8), (8, 4, 2, 8),
                                  (16, 0, 2, 8)])
def test_bad_input(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(InputError):
        rebalance(README_WEIGHT, *args)


def test_negative_weight() -> None:
    with pytest.raises(InputError, match="non-negative"):
        rebalance(-README_WEIGHT, 16, 4, 2, 8)

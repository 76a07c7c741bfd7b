"""LPLB: the LP built exactly, the three solvers, balance targets, redirection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from servoir.errors import InputError
from servoir.moe import lplb
from servoir.moe.bench import balance_case
from servoir.moe.topology import CUBE_8P2E, HYPERCUBE_16P2E, RING_8, replica_graph, torus

TOPOLOGIES = {"cube8p2e": CUBE_8P2E, "ring8": RING_8, "hypercube16p2e": HYPERCUBE_16P2E,
              "torus8x4": torus(8, 4), "torus2x3": torus(2, 3)}


def _random_instance(rng: np.random.Generator, g: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Expert-count-like loads, normalised by their max (as LPLB does), with zeros and spikes."""
    c = int(rng.integers(1, 4))
    fixed_n = int(rng.integers(0, 6))
    counts = rng.gamma(rng.choice([0.5, 2.0, 20.0]), size=(g, d * c + fixed_n))
    counts[rng.random(counts.shape) < rng.choice([0.0, 0.2])] = 0.0
    counts = np.floor(counts * rng.choice([1.0, 1000.0])) + (rng.random() < 0.5)
    counts = counts / max(counts.max(), 1.0)
    w = counts[:, : d * c].reshape(g, c, d).sum(1)
    return w, counts[:, d * c:].sum(1)


def _densest(w: np.ndarray, f: np.ndarray, r2o: np.ndarray) -> float:
    """Brute-force t* = max_S (F(S) + W(E(S))) / |S| (small G only)."""
    graph = replica_graph(r2o)
    g = graph.num_ranks
    wf = w.reshape(-1)
    best = 0.0
    for mask in range(1, 1 << g):
        inside = [(mask >> r) & 1 for r in range(g)]
        load = sum(f[r] for r in range(g) if inside[r])
        load += sum(wf[e] for e in range(wf.size) if inside[graph.home[e]] and inside[graph.copy[e]])
        best = max(best, load / sum(inside))
    return best


def test_lp_shape_and_big_m_start() -> None:
    rng = np.random.default_rng(0)
    w, f = rng.random((8, 2)), rng.random(8)
    lp = lplb.build_lp(w, f, CUBE_8P2E)
    assert lp.a.shape == (1, 24, 42) and lp.b.shape == (1, 24) and lp.c.shape == (42,)
    np.testing.assert_allclose(lp.a[0] @ np.ones(42), lp.b[0], atol=1e-12)
    assert lp.c[-2] == 1.0 and lp.c[-1] == 1000.0 and np.all(lp.c[:-2] == 0)
    a = lp.a[0]
    # rank 0's load row: p[0,k] with W[0,k]; q[o,k] with W[o,k] for o = r2o[0,k]; slack; -t
    for k in range(2):
        assert a[0, k] == w[0, k]
        o = CUBE_8P2E[0, k]
        assert a[0, 16 + o * 2 + k] == w[o, k]
    assert a[0, 32] == 1.0 and a[0, 40] == -1.0 and lp.b[0, 0] == -f[0]
    assert np.count_nonzero(a[:8, :32]) == 32  # each p and each q loads exactly one rank
    assert np.all(a[8:, :32].sum(1) == 2) and np.all(lp.b[0, 8:] == 1)


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_fast_matches_highs_property(name: str) -> None:
    """Fast optimum == HiGHS (tol 1e-10) to 1e-9 relative; 1000 instances per topology."""
    _compare_with_highs(TOPOLOGIES[name], 1000 if TOPOLOGIES[name].shape[0] <= 16 else 400)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_fast_matches_highs_property_long(name: str) -> None:
    _compare_with_highs(TOPOLOGIES[name], 20000, seed=99)


def _compare_with_highs(topo: np.ndarray, n: int, seed: int = 0) -> None:
    g, d = topo.shape
    rng = np.random.default_rng(20240 + g * 10 + d + seed)
    worst = 0.0
    for _ in range(n):
        w, f = _random_instance(rng, g, d)
        fast = lplb.solve(w, f, topo, "fast")
        ref = lplb.solve(w, f, topo, "highs")
        t, t_ref = fast.objective[0], ref.objective[0]
        worst = max(worst, abs(t - t_ref) / max(t_ref, 1e-300))
        p = fast.p
        assert np.all((p >= 0) & (p <= 1))
        assert fast.max_load[0] <= t * (1 + 1e-11) + 1e-300
    assert worst <= 1e-9


def test_fast_matches_highs_random_topologies() -> None:
    """Random permutation topologies, self-loops included (a bundle that cannot move)."""
    rng = np.random.default_rng(5)
    for _ in range(600):
        g, d = int(rng.integers(2, 11)), int(rng.integers(1, 4))
        topo = np.stack([rng.permutation(g) for _ in range(d)], axis=1)
        w, f = _random_instance(rng, g, d)
        t = lplb.solve(w, f, topo).objective[0]
        t_ref = lplb.solve(w, f, topo, "highs").objective[0]
        assert abs(t - t_ref) <= 1e-9 * t_ref


def test_fast_equals_densest_subgraph_bruteforce() -> None:
    rng = np.random.default_rng(11)
    for topo in (CUBE_8P2E, RING_8, torus(2, 3)):
        for _ in range(40):
            w, f = _random_instance(rng, *topo.shape)
            t = lplb.solve(w, f, topo).objective[0]
            assert t == pytest.approx(_densest(w, f, topo), rel=1e-12)


def test_batched_equals_one_by_one() -> None:
    rng = np.random.default_rng(3)
    pairs = [_random_instance(rng, 8, 2) for _ in range(16)]
    w = np.stack([x for x, _ in pairs])
    f = np.stack([y for _, y in pairs])
    batch = lplb.solve(w, f, CUBE_8P2E)
    for i in range(16):
        one = lplb.solve(w[i], f[i], CUBE_8P2E)
        assert one.objective[0] == batch.objective[i]
        assert np.array_equal(one.p[0], batch.p[i])


def test_zero_and_degenerate_loads() -> None:
    z = lplb.solve(np.zeros((8, 2)), np.zeros(8), CUBE_8P2E)
    assert z.objective[0] == 0.0 and z.max_load[0] == 0.0
    w = np.zeros((8, 2))
    w[0, 0] = 1.0  # one bundle: best is an even split between its two homes
    s = lplb.solve(w, np.zeros(8), CUBE_8P2E)
    assert s.objective[0] == pytest.approx(0.5)


@pytest.mark.parametrize("case", [
    ("Cube8P2E EP32", CUBE_8P2E, 32, 2, True, 1.07),
    ("Hypercube16P2E EP16", HYPERCUBE_16P2E, 16, 2, True, 1.03),
    ("Torus 8x4 EP32", torus(8, 4), 32, 2, False, 1.01),
    ("Cube8P2E EP64", CUBE_8P2E, 64, 2, True, 1.10),
], ids=lambda c: c[0])
def test_balance_targets_seed42(case: tuple) -> None:
    _, topo, ep, red, reorder, target = case
    r = balance_case(topo, ep, red, reorder, seed=42)
    assert r["ipm_accepted"], "every group's 5-step LP must be accepted"
    assert r["after"] < target
    assert r["after_ipm"] < target
    assert r["after"] <= r["after_ipm"] + 1e-12 and r["after"] < r["before"]


def test_ipm_gap_sane() -> None:
    """The truncated IPM is feasible-ish and never beats the optimum (gap reported in bench)."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        w, f = _random_instance(rng, 8, 2)
        ipm = lplb.solve(w, f, CUBE_8P2E, "ipm")
        t = lplb.solve(w, f, CUBE_8P2E).objective[0]
        assert ipm.max_load[0] >= t * (1 - 1e-12)
        if ipm.accepted[0]:
            assert ipm.max_load[0] <= 1.5 * t + 1e-12
    for opts in ({"lane_max_quirk": True}, {"dtype": np.float32}):
        w, f = _random_instance(rng, 8, 2)
        assert lplb.solve(w, f, CUBE_8P2E, "ipm", **opts).p.shape == (1, 8, 2)


def test_plan_layout_and_redirection_conserve_tokens() -> None:
    rng = np.random.default_rng(42)
    hist = rng.random(256) * 1e6
    lay = lplb.plan(CUBE_8P2E, 256, 32, 4, hist)
    assert lay.num_local_physical == 12 and lay.bundle_size == 2
    counts = np.bincount(lay.phy2log, minlength=256)
    assert counts.min() == 1 and counts.max() == 2 and counts.sum() == 32 * 12
    tokens = rng.integers(-1, 256, size=(4096, 8))
    p = rng.random((4, 8, 2))
    p[0, 0, 0], p[0, 1, 1] = 0.0, 1.0
    phys = lplb.redirect_tokens(tokens, p, lay)
    assert phys.shape == tokens.shape
    assert np.array_equal(phys == -1, tokens == -1)
    ok = tokens >= 0
    assert np.array_equal(lay.phy2log[phys[ok]], tokens[ok])  # same expert, some replica
    n_e = np.bincount(tokens[ok], minlength=256)
    to_phys = np.bincount(phys[ok], minlength=lay.phy2log.size)
    # per logical expert the tokens are conserved and the original gets ceil(p * n)
    assert np.array_equal(np.bincount(lay.phy2log, weights=to_phys, minlength=256), n_e)
    nlp = lay.num_local_physical
    for rank in range(lay.ep_size):
        grp, r = divmod(rank, 8)
        for pos in range(4):
            e = lay.phy2log[rank * nlp + pos]
            assert to_phys[rank * nlp + pos] == np.ceil(p[grp, r, pos % 2] * n_e[e] - 1e-9)


def test_bundle_loads_match_rank_totals() -> None:
    rng = np.random.default_rng(4)
    lay = lplb.plan(CUBE_8P2E, 256, 64, 2, rng.random(256))
    batch = np.floor(rng.random(256) * 4096)
    w, f = lplb.bundle_loads(lay, batch, normalize=False)
    assert w.shape == (8, 8, 2) and f.shape == (8, 8)
    assert w.sum() + f.sum() == batch.sum()
    loads = lplb.rank_loads(w, f, rng.random(w.shape), CUBE_8P2E)
    assert loads.sum() == pytest.approx(batch.sum(), rel=1e-12)


@pytest.mark.parametrize("bad", [np.array([[0, 0], [0, 1]]), np.array([[0, 2]]),
                                 np.zeros((2, 2, 2), int), np.array([[0.0], [1.0]])])
def test_bad_topology(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        lplb.solve(np.ones((2, 2)), np.ones(2), bad)


def test_bad_loads_and_method() -> None:
    with pytest.raises(InputError, match="non-negative"):
        lplb.solve(-np.ones((8, 2)), np.ones(8), CUBE_8P2E)
    with pytest.raises(InputError, match="bundle loads"):
        lplb.solve(np.ones((8, 3)), np.ones(8), CUBE_8P2E)
    with pytest.raises(InputError, match="valid: fast, highs, ipm"):
        lplb.solve(np.ones((8, 2)), np.ones(8), CUBE_8P2E, "simplex")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        lplb.plan(CUBE_8P2E, 256, 12, 2)
    with pytest.raises(InputError):
        lplb.plan(CUBE_8P2E, 256, 32, 3)


def test_named_topologies() -> None:
    assert CUBE_8P2E[:, 0].tolist() == [3, 0, 1, 2, 7, 4, 5, 6]
    assert CUBE_8P2E[:, 1].tolist() == [6, 7, 4, 5, 0, 1, 2, 3]
    t = torus(8, 4)
    for i, j in itertools.product(range(8), range(4)):
        assert t[i * 4 + j].tolist() == [((i + 1) % 8) * 4 + j, i * 4 + (j + 1) % 4]

"""PD-disaggregated simulation and the fluid LPs of ``servoir.analysis.pd``."""

from __future__ import annotations

import numpy as np
import pytest

from servoir.analysis.pd import PoolRates, colocated_lp, disaggregated_lp, split_for_rate
from servoir.config import load_config
from servoir.experiments.pd_planning import pd_sim_point
from servoir.experiments.run import run
from servoir.rng import stream
from servoir.workload import generators as gen
from servoir.workload import lengths as ln


def _pd(link: float, n_p: int = 1, n: int = 3, rate: float = 4.0, num: int = 400) -> object:
    cfg = load_config(None, {"cluster.instances": n, "seed": 1}, [
        "cluster.mode=pd", f"cluster.prefill_instances={n_p}", f"cluster.link_gb_per_s={link}"])
    w = gen.poisson(rate, num, ln.Uniform(200, 2000, 1, 300), stream(1, "test.pd"))
    return run(cfg, workload=w)


def test_pd_run_accounts_for_every_request() -> None:
    r = _pd(25.0)
    req = r.requests
    assert (req["status"] == "finished").all()
    # TTFT is the prefill instance's first token; decode starts after the KV arrives.
    assert (req["first_token_at"] >= req["arrival_at"]).all()
    multi = req["num_output_tokens"] > 1
    assert (req["kv_arrived_at"][multi] >= req["first_token_at"][multi]).all()
    assert (req["finish_at"][multi] > req["kv_arrived_at"][multi]).all()
    assert np.isnan(req["kv_arrived_at"][~multi]).all()
    # Transfer time at least bytes / bandwidth (llama-3-8b: 131072 bytes per token).
    gap = req["kv_arrived_at"][multi] - req["first_token_at"][multi]
    need = req["num_prompt_tokens"][multi] * 131072 / 25e9
    assert (gap >= need - 1e-12).all()
    assert r.headline()["queue_slope_per_s"] < 0.04


def test_slow_link_raises_tpot() -> None:
    fast = np.nanmean(_pd(100.0).requests["tpot_s"])
    slow = np.nanmean(_pd(0.5).requests["tpot_s"])
    assert slow > fast


def test_pd_config_checked() -> None:
    from servoir.errors import InputError

    cfg = load_config(None, {"cluster.instances": 2}, ["cluster.mode=pd",
                                                        "cluster.prefill_instances=2"])
    with pytest.raises(InputError):
        run(cfg, workload=gen.poisson(1.0, 5, ln.Fixed(10, 5), stream(0, "x")))


def test_lps() -> None:
    rates = PoolRates(colocated_rps=3.0, prefill_rps=10.0, link_rps=50.0, decode_rps=5.0,
                      transfer_s=0.01)
    d = disaggregated_lp(rates, 6)
    assert d["throughput_rps"] == pytest.approx(6 / (1 / 10 + 1 / 5))
    assert d["prefill_instances"] + d["decode_instances"] == pytest.approx(6)
    assert d["value_per_instance_rps"] == pytest.approx(1 / (1 / 10 + 1 / 5))
    assert colocated_lp(rates, 6)["throughput_rps"] == pytest.approx(18.0)
    assert rates.disaggregation_wins
    assert split_for_rate(rates, 12.0) == (2, 3)


def test_crossover_regimes_in_simulation() -> None:
    """Prefill-heavy with strict TPOT: PD wins; tight TTFT with relaxed TPOT: co-location."""
    heavy = pd_sim_point(2048, 128, 10.0, 0.025, instances=3, num_requests=600)
    assert heavy["sim_disaggregation_wins"] and heavy["fluid_disaggregation_wins"]
    tight = pd_sim_point(512, 512, 0.3, 0.5, instances=3, num_requests=600)
    assert not tight["sim_disaggregation_wins"] and not tight["fluid_disaggregation_wins"]

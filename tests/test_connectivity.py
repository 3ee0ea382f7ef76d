import json

import numpy as np
import pytest
import torch

from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.recombination.connectivity import METHODS, ConnectivityConfig, _barriers, paths
from recomb.recombination.crossover import CrossoverConfig, crossover
from recomb.training.tasks import Task, task
from test_pipeline import one_line_error

ARCH = Architecture(4, 2, 16, 0.0)
STATES = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))


def config(**changes) -> ConnectivityConfig:
    body = {"alphas": [0.0, 0.5, 1.0], "eval_episodes": 5, "eval_seed": 0, **changes}
    return ConnectivityConfig.from_mapping(body, "params.yaml: connectivity")


@pytest.mark.parametrize("alphas, message", [
    ([], "needs at least the endpoints 0 and 1 (got [])"),
    ([0.0, 1.5, 1.0], "must be in [0, 1] (got [0.0, 1.5, 1.0])"),
    ([0.0, 0.5], "must hold 0 and 1: the barrier is measured against the endpoints (got [0.0, 0.5])"),
    ([0.0, 0.7, 0.3, 1.0], "must rise, each α once (got [0.0, 0.7, 0.3, 1.0])"),
])
def test_a_bad_alpha_list_is_one_line_naming_the_key(alphas, message):
    with pytest.raises(RecombError) as err:
        config(alphas=alphas)
    assert str(err.value) == f"params.yaml: connectivity.alphas: {message}"


def test_the_barrier_is_the_largest_departure_from_the_line_and_reduction_is_against_plain():
    alphas = np.array([0.0, 0.5, 1.0])
    # per method (METHODS order), the loss at α = 0, 0.5, 1: plain bulges by 1 above the line from 0 to 2 (which is 1
    # at α = 0.5), plain + REPAIR by 0.5, weights dips below it (no barrier: 0 at the endpoints at most), ...
    loss = np.array([[0, 2, 2], [0, 1.5, 2], [0, 0.5, 2], [0, 1.25, 2], [1, 3, 1], [0, 1, 2]], dtype=float)
    found = _barriers(loss, alphas, 1.0)
    barriers, reductions = found[:6], found[6:]
    assert barriers.tolist() == [1.0, 0.5, 0.0, 0.25, 2.0, 0.0]
    assert reductions.tolist() == [0.5, 1.0, 0.75, -1.0, 1.0]  # 1 − barrier / plain's
    # a return path: worse means below the line, and no barrier on plain averaging leaves nothing to reduce
    flat = np.tile([[500.0, 500.0, 500.0]], (6, 1))
    flat[1, 1] = 100.0
    found = _barriers(flat, alphas, -1.0)
    assert found[:6].tolist() == [0.0, 400.0, 0.0, 0.0, 0.0, 0.0] and np.isnan(found[6:]).all()


def test_each_path_network_is_the_child_crossover_builds_at_that_alpha():
    a, b = seeded_qnetwork(ARCH, 1).eval(), seeded_qnetwork(ARCH, 2).eval()
    found = paths(a, b, [0.0, 0.3, 1.0], STATES, 20)
    assert list(found) == list(METHODS)
    for method, mode, matching in (("plain", "weighted", "weights"), ("weights", "aligned", "weights"),
                                   ("activations", "aligned", "activations")):
        for repair, name in ((False, method), (True, f"{method}_repair")):
            cfg = CrossoverConfig.from_mapping({"parents": "students", "mode": mode, "alpha": 0.3, "seed": 0,
                                                "align_max_passes": 20, "matching": matching, "repair": repair},
                                               "params.yaml: crossover")
            child, _ = crossover(a, b, cfg, STATES)
            assert all(torch.equal(x, y) for x, y in zip(found[name][1].state_dict().values(),
                                                         child.state_dict().values())), name
    assert torch.equal(found["plain"][2](STATES), a(STATES)) and torch.equal(found["plain"][0](STATES), b(STATES))


def test_a_population_plays_cartpole_as_each_network_alone():
    cartpole = task("CartPole-v1")
    networks = [seeded_qnetwork(ARCH, seed).eval() for seed in range(4)]
    together = cartpole.population_returns(networks, 6, 123)
    assert together.shape == (4, 6) and np.array_equal(together, Task.population_returns(cartpole, networks, 6, 123))
    assert len({row.mean() for row in together}) > 1  # the networks play differently


@pytest.mark.longest
def test_the_stage_reports_every_method_and_refuses_a_bad_alpha(synthetic_project):
    p = synthetic_project
    p.set(**{"crossover.parents": "parents", "connectivity.alphas": [0.0, 0.5, 1.5]})
    p.stage("parents")
    assert one_line_error(p.stage("connectivity", check=False)) == (
        "params.yaml: connectivity.alphas: must be in [0, 1] (got [0.0, 0.5, 1.5])")
    assert not (p.path / "data/reports/connectivity").exists() and not (p.path / "data/plots/connectivity").exists()
    p.set(**{"connectivity.alphas": [0.0, 0.25, 0.5, 0.75, 1.0]})
    p.stage("connectivity")
    summary = json.loads((p.path / "data/reports/connectivity/summary.json").read_text())
    assert set(summary["methods"]) == set(METHODS) and summary["episodes"] is None  # synthetic: no task
    for method, entry in summary["methods"].items():
        assert [row["alpha"] for row in entry["path"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert entry["return"] is None and entry["loss"]["barrier"]["low"] <= entry["loss"]["barrier"]["value"]
        assert ("reduction" in entry["loss"]) == (method != "plain")
        ends = entry["path"][0], entry["path"][-1]
        assert ends[0]["agreement_b"] == pytest.approx(1.0) and ends[1]["agreement_a"] == pytest.approx(1.0)
    report = (p.path / "data/reports/connectivity/report.md").read_text()
    assert "| activation matching + REPAIR |" in report and (p.path / "data/plots/connectivity/barrier.png").exists()

"""The in-process search: presets, vectorized runs on any backend, multi-generation selection."""

import sys

import numpy as np
import pytest
import torch

from recomb.config import load_params
from stages.common import with_task_values
from recomb.recombination.crossover import CrossoverConfig, crossover
from recomb.errors import RecombError
from recomb.training.finetune import finetune_config, regimes
from recomb.evaluation.leaderboard import ranked, row_from_report
from recomb.recombination.multigen import MultigenConfig, evolve, mutate, promote
from recomb.networks import Architecture, seeded_qnetwork
from recomb.parallel import RAY_MISSING, import_ray
from recomb.quantization.quantize import PTQConfig
from recomb.recombination.search import (Pair, Recipe, Scoring, SearchConfig, crossover_config, grid, jobs_for, parse_recipe,
                                       run_grid)
from recomb.selection import SelectionConfig
from recomb.stats import UncertaintyConfig
from recomb.evaluation.validation import ValidateRecombConfig
from scratch import ROOT

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))
PARENT = Architecture(8, 4, 32, 0.0)
STATES = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
VALIDATION = torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
HELDOUT = np.random.default_rng(1).standard_normal((100, 8)).astype(np.float32)


def search_config(**overrides) -> SearchConfig:
    return SearchConfig.from_mapping({**PARAMS["search"], **overrides}, "params.yaml: search")


def small_regimes(params: dict) -> dict:
    """The named regimes with 2 epochs and batch 64: the same code paths, a fraction of the steps."""
    params = {**params, "regimes": {name: {**body, "epochs": 2, "batch_size": 64}
                                    for name, body in params["regimes"].items()}}
    return params


def setting(heldout: np.ndarray = HELDOUT):
    params = small_regimes(PARAMS)
    a, b = seeded_qnetwork(PARENT, 42).eval(), seeded_qnetwork(PARENT, 43).eval()
    scoring = Scoring(a, b, heldout, VALIDATION, None, ValidateRecombConfig.from_params(params, "validate_recombination"),
                      SelectionConfig.from_params(params, "selection"),
                      UncertaintyConfig.from_mapping({**params["uncertainty"], "resamples": 200}, "uncertainty"))
    return params, Pair(a, b, a, b), scoring


def run(points, params, pair, scoring, cfg):
    cfgs = {r: finetune_config(params, r) for r in dict.fromkeys(p.regime for p in points)}
    return run_grid(points, pair, STATES, CrossoverConfig.from_params(params, "crossover"), cfgs,
                    PTQConfig.from_params(params, "ptq"), scoring, cfg)


@pytest.mark.parametrize("preset, size", [("minimal", 9), ("default", 14), ("minimal-qat", 9), ("default-qat", 21),
                                          ("recomb", 6), ("recomb-wide", 27)])
def test_presets_have_the_seeds_sizes(preset, size):
    points = grid(search_config(preset=preset), regimes(PARAMS))
    assert len(points) == size and len({p.child_id for p in points}) == size
    if preset.endswith("qat"):
        assert {p.regime for p in points} >= {"short_qat"}


def test_the_default_preset_holds_the_pipelines_own_recipe():
    points = grid(search_config(), regimes(PARAMS))
    own = (PARAMS["crossover"]["mode"], PARAMS["crossover"]["alpha"], PARAMS["finetune"]["regime"])
    assert own in {(p.recipe.mode, p.recipe.alpha, p.regime) for p in points}


@pytest.mark.parametrize("text, message", [
    ("blend 0.5", "the mode must be one of"), ("random 0.5", "write it as `random <alpha> <seed>`"),
    ("layer 0.5", "write it as `layer`"), ("weighted 1.5", "with alpha in [0, 1]"),
    ("aligned x", "write it as `aligned <alpha> [weights|activations] [repair]`"),
    ("weighted 0.5 activations", "write it as `weighted <alpha> [repair]`"),
    ("random 0.5 1 repair", "write it as `random <alpha> <seed>`"), ("layer repair", "write it as `layer`"),
    ("aligned 0.5 repair activations", "write it as `aligned <alpha> [weights|activations] [repair]`")])
def test_a_malformed_preset_recipe_is_one_line_naming_it(text, message):
    with pytest.raises(RecombError) as err:
        search_config(presets={**PARAMS["search"]["presets"], "mine": {"recipes": ["layer", text], "regimes": ["short"]}})
    assert str(err.value).startswith(f"params.yaml: search.presets.mine.recipes[1]: {text!r}: ")
    assert message in str(err.value)
    assert parse_recipe("random 0.3 2", "x") == parse_recipe(" random  0.3 2 ", "x")
    assert parse_recipe("aligned 0.4 activations repair", "x") == Recipe("aligned", 0.4, 0, "activations", True)
    assert parse_recipe("aligned 0.4 weights", "x") == parse_recipe("aligned 0.4", "x") == Recipe("aligned", 0.4)
    assert parse_recipe("slerp 0.2 repair", "x").label == "slerp_a0p20_repair"
    with pytest.raises(RecombError, match=r"^params.yaml: search.preset: must be one of minimal, "):
        search_config(preset="mine")


def test_custom_grid_drops_duplicate_children_and_caps_runs():
    cfg = search_config(preset="custom", modes=["random", "layer", "weighted"], alphas=[0.3, 0.7], seeds=[0, 1],
                        regimes=["short", "long"])
    labels = [p.recipe.label for p in grid(cfg, regimes(PARAMS))[::2]]
    assert labels == ["random_a0p30_s0", "random_a0p30_s1", "random_a0p70_s0", "random_a0p70_s1", "layer",
                      "weighted_a0p30", "weighted_a0p70"]
    capped = grid(search_config(preset="default", max_runs=3), regimes(PARAMS))
    assert [p.child_id for p in capped] == ["000_random_a0p50_s0_short", "001_random_a0p50_s0_long",
                                            "002_random_a0p50_s1_short"]
    with pytest.raises(RecombError, match=r"^params.yaml: search: regime 'huge' \(preset custom\) is not one of"):
        grid(search_config(preset="custom", regimes=["huge"]), regimes(PARAMS))
    knobs = search_config(preset="custom", modes=["layer", "weighted", "aligned"], alphas=[0.5], seeds=[0, 1],
                          matchings=["weights", "activations"], repairs=[False, True], regimes=["short"])
    assert [p.recipe.label for p in grid(knobs, regimes(PARAMS))] == [
        "layer", "weighted_a0p50", "weighted_a0p50_repair", "aligned_a0p50", "aligned_a0p50_repair",
        "aligned_a0p50_act", "aligned_a0p50_act_repair"]  # a knob a mode does not read makes no second child
    with pytest.raises(RecombError, match=r"^params.yaml: search.matchings: must be among weights, activations"):
        search_config(matchings=["outputs"])


def test_a_grid_child_measured_on_the_train_states_is_the_crossover_stages_child():
    """Activation matching and REPAIR read the states: the grid crosses on the pair's train states, all of them,
    as the crossover stage does, so `dvc exp run -S` of the recipe rebuilds the very child."""
    params, pair, scoring = setting()
    pair = Pair(pair.cross_a, pair.cross_b, pair.teach_a, pair.teach_b, torch.cat([VALIDATION, VALIDATION * 0.5]))
    point = grid(search_config(preset="custom", modes=["aligned"], alphas=[0.3], seeds=[0],
                               matchings=["activations"], repairs=[True], regimes=["short"]), regimes(params))[0]
    base = CrossoverConfig.from_params(params, "crossover")
    job = jobs_for([point], pair, VALIDATION, base, {"short": finetune_config(params, "short")}, None, scoring, 1)[0]
    alone, info = crossover(pair.cross_a, pair.cross_b, crossover_config(base, point.recipe), pair.train_states)
    assert info["matching"] == "activations" and info["repair"]
    assert all(torch.equal(x, y) for x, y in zip(job.raw[0].state_dict().values(), alone.state_dict().values()))


def test_children_are_the_same_on_one_or_two_workers_and_a_qat_regime_adds_an_int8_child():
    params, pair, scoring = setting()
    points = grid(search_config(preset="custom", modes=["random", "weighted"], alphas=[0.5], seeds=[0],
                                regimes=["short", "short_qat"]), regimes(params))
    one = run(points, params, pair, scoring, search_config(workers=1))
    two = run(points, params, pair, scoring, search_config(workers=2))
    assert list(one) == [p.child_id for p in points]
    for child_id, outcome in one.items():
        assert outcome.report == two[child_id].report
        assert outcome.result.history == two[child_id].result.history
        for key, value in outcome.result.child.state_dict().items():
            assert torch.equal(two[child_id].result.child.state_dict()[key], value)
        assert ("child_int8" in outcome.report["children"]) == child_id.endswith("short_qat")
    report = one[points[0].child_id].report
    assert report["children"]["child"]["primary"] == min(report["children"]["child"]["vs_a"]["action_agreement"],
                                                        report["children"]["child"]["vs_b"]["action_agreement"])


def test_each_stack_reports_its_epochs_then_done_once_scored():
    params, pair, scoring = setting()
    points = grid(search_config(preset="custom", modes=["random", "weighted"], alphas=[0.5], seeds=[0],
                                regimes=["short"]), regimes(params))
    calls = []
    cfgs = {"short": finetune_config(params, "short")}  # 2 epochs (small_regimes), one stack on one worker
    run_grid(points, pair, STATES, CrossoverConfig.from_params(params, "crossover"), cfgs,
             PTQConfig.from_params(params, "ptq"), scoring, search_config(workers=1),
             progress=lambda *call: calls.append(call))
    label = "stack 1: 2 children × 2 epochs"
    assert calls == [(0, label, 1, 3), (0, label, 2, 3), (0, label, 3, 3)]


def test_asking_for_ray_without_ray_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RecombError) as err:
        import_ray("search")
    assert str(err.value) == RAY_MISSING.format("search") and "pip install" in RAY_MISSING


def test_mutation_is_seeded_touches_about_the_fraction_and_std_zero_copies():
    net = seeded_qnetwork(PARENT, 0)
    cfg = MultigenConfig.from_params(PARAMS, "multigen").mutation
    mutated = mutate(net, cfg, seed=5)
    assert torch.equal(mutate(net, cfg, seed=5).network[0].weight, mutated.network[0].weight)
    changed = (mutated.network[4].weight != net.network[4].weight).double().mean().item()
    assert abs(changed - cfg.fraction) < 0.05
    still = mutate(net, type(cfg)(std=0.0, fraction=cfg.fraction, seed=0), seed=5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in still.state_dict().items())


def fake_outcomes(n: int):
    """n children with distinct weights and given primaries, as `run_grid` would return them."""
    from types import SimpleNamespace
    return {f"c{i}": SimpleNamespace(result=SimpleNamespace(child=seeded_qnetwork(PARENT, 100 + i))) for i in range(n)}


@pytest.mark.parametrize("strategy, top_k, expected_b", [("best", 3, "c1"), ("best", 1, "original_B"),
                                                         ("best_vs_original", 3, "original_B")])
def test_promotion_follows_the_selection_strategy(strategy, top_k, expected_b):
    _, pair, _ = setting()
    outcomes = fake_outcomes(3)
    rows = [{"experiment": f"c{i}"} for i in range(3)]
    cfg = MultigenConfig.from_mapping({**PARAMS["multigen"], "selection_strategy": strategy, "keep_top_k": top_k},
                                      "params.yaml: multigen")
    promotion = promote(rows, outcomes, pair, cfg, generation=0)
    assert promotion.names == ("c0", expected_b)
    assert not torch.equal(promotion.pair.cross_a.network[0].weight, outcomes["c0"].result.child.network[0].weight)
    if expected_b == "original_B":
        assert promotion.pair.cross_b is pair.cross_b and promotion.pair.teach_b is pair.teach_b  # never mutated


def evolve_small(heldout: np.ndarray, generations: int = 2, **multigen):
    """Two generations of a two-child grid on the test's parents, scored on `heldout`."""
    params, pair, scoring = setting(heldout)
    cfg = MultigenConfig.from_mapping({**PARAMS["multigen"], "generations": generations, **multigen},
                                      "params.yaml: multigen")
    points = grid(search_config(preset="custom", modes=["weighted"], alphas=[0.3, 0.7], seeds=[0],
                                regimes=["short"]), regimes(params))
    finetune_cfgs = {"short": finetune_config(params, "short")}
    seen, results = [], {}

    def run_generation(gen_points, gen_pair, cfgs):
        seen.append((gen_pair, cfgs["short"].seed, [p.recipe.seed for p in gen_points]))
        outcomes = run(gen_points, params, gen_pair, scoring, search_config(workers=1))
        results.update(outcomes)
        return outcomes

    def rank_rows(gen_points, outcomes):
        return ranked([row_from_report(p.child_id, crossover_config(CrossoverConfig.from_params(params, "crossover"),
                                                                    p.recipe).to_dict(), p.regime,
                                       outcomes[p.child_id].report) for p in gen_points], 0.0, None)

    lineage, summary, best = evolve(points, finetune_cfgs, pair, cfg, run_generation, rank_rows)
    return pair, cfg, seen, results, lineage, summary, best


def test_generations_are_scored_against_the_original_parents_and_lineage_keeps_every_child():
    pair, cfg, seen, _, lineage, summary, best = evolve_small(HELDOUT, teachers="promoted", elitism=False)
    assert len(lineage) == 4 and [s["generation"] for s in summary] == [0, 1] and set(best) == {0, 1}
    assert seen[0][0] is pair and seen[1][0] is not pair and seen[1][0].teach_a is seen[1][0].cross_a
    assert seen[1][1] == seen[0][1] + cfg.seed_offset
    promoted = [row for row in lineage if row["promoted_as"]]
    assert [row["generation"] for row in promoted] == [0, 0, 1, 1]
    assert lineage[2]["parent_a"] == summary[0]["best_child"] and lineage[0]["parent_a"] == "original_A"
    assert summary[1]["best_val_primary"] == max(r["val_primary"] for r in lineage if r["generation"] == 1)


def test_elitism_keeps_the_best_child_competing_and_original_teachers_stay():
    pair, _, seen, _, lineage, summary, _ = evolve_small(HELDOUT, generations=3, teachers="original", elitism=True)
    assert seen[1][0].teach_a is pair.teach_a and seen[1][0].teach_b is pair.teach_b
    assert seen[1][0].cross_a is not pair.cross_a
    assert [r["generation"] for r in lineage] == [0, 0, 1, 1, 1, 2, 2, 2]
    carried = [r for r in lineage if r["carried_over"]]
    assert [r["experiment"] for r in carried] == [summary[0]["best_child"], summary[1]["best_child"]]
    keys = [(s["best_val_primary"]) for s in summary]
    assert keys == sorted(keys)  # without an environment the validation primary alone ranks: it never falls


def test_held_out_states_change_no_choice_only_the_reported_figures():
    """Replace the held-out states by other states: every choice (best epochs, ranks, ties, promotions, the
    best child per generation) stays; only the figures reported on them move."""
    other = np.random.default_rng(99).standard_normal(HELDOUT.shape).astype(np.float32)
    first, second = evolve_small(HELDOUT), evolve_small(other)
    choices = ("experiment", "rank", "tied", "promoted_as", "val_primary", "val_primary_low", "val_primary_high",
               "val_return", "degenerate")
    assert [{k: r[k] for k in choices} for r in first[4]] == [{k: r[k] for k in choices} for r in second[4]]
    assert [s["best_child"] for s in first[5]] == [s["best_child"] for s in second[5]]
    for child_id, outcome in first[3].items():
        assert outcome.result.best_epoch == second[3][child_id].result.best_epoch
        assert outcome.result.history == second[3][child_id].result.history
    assert [r["primary"] for r in first[4]] != [r["primary"] for r in second[4]]


@pytest.fixture
def ray_cluster():
    """A local Ray head of its own (what a user's cluster would be), stopped afterwards.

    `ray stop` stops every Ray on the machine. Instead the head runs as `ray start
    --block` in the foreground with its own --temp-dir: its Ray processes share that
    one process's fate (Linux parent-death signal, and its SIGTERM handler stops
    them), so terminating it stops this cluster and nothing else. Any descendant
    still alive afterwards is killed by its pid.
    """
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    import psutil
    from scratch import BIN
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log_path = os.path.join(temp_dir, "head.log")
    with open(log_path, "wb") as log:
        head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
                                 f"--temp-dir={temp_dir}", "--num-cpus=2", "--include-dashboard=false",
                                 "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(temp_dir, "ray_current_cluster")):  # written once the head is up
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not come up:\n{open(log_path).read()}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        import_ray("search").shutdown()
        try:
            descendants = psutil.Process(head.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for proc in alive:  # only processes this head started, by pid
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_backend_gives_the_local_results(ray_cluster):
    params, pair, scoring = setting()
    points = grid(search_config(preset="custom", modes=["random", "weighted"], alphas=[0.5], seeds=[0],
                                regimes=["short"]), regimes(params))
    local = run(points, params, pair, scoring, search_config(workers=1))
    remote = run(points, params, pair, scoring, search_config(backend="ray", ray_address=ray_cluster))
    for child_id, outcome in local.items():
        assert remote[child_id].report == outcome.report
        for key, value in outcome.result.child.state_dict().items():
            assert torch.equal(remote[child_id].result.child.state_dict()[key], value)


def test_the_search_section_is_validated_with_its_grid_against_the_regimes():
    """`SearchConfig.validate` (the params stage's rule) returns the grid the stage would run, and refuses a
    grid that names a regime the `regimes` section does not have."""
    params = with_task_values(load_params(ROOT / "params.yaml"))
    assert SearchConfig.validate(params) == grid(SearchConfig.from_params(params, "search"), regimes(params))
    custom = {**params["search"], "preset": "custom", "regimes": ["nope"]}
    with pytest.raises(RecombError, match=r"nope"):
        SearchConfig.validate({**params, "search": custom})
    with pytest.raises(RecombError, match=r"^params\.yaml: search\.preset: must be one of"):
        SearchConfig.validate({**params, "search": {**params["search"], "preset": "nope"}})

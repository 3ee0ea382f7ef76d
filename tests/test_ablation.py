"""The ablation stage: conditions × seeds through the pipeline's own stages, shared work once, statistics."""

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import SMALL_SYNTHETIC
from scratch import ROOT, Project
from stages import ablation, crossover, distill, finetune, parents, ptq, qat
from stages.common import run

SEEDS = [0, 1]
RUN_FILES = ("students/student_A.safetensors", "students/student_B.safetensors", "states/train.npy",
             "parents/parent_A.safetensors", "reports/distillation.json", "run.json")


def tree(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def rows(project: Project) -> list[dict]:
    with open(project.path / "data/reports/ablation/ablation_summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def ablated(tmp_path_factory, worker_id) -> tuple[Project, str]:
    """A synthetic project after `dvc repro ablation/dvc.yaml` (the default 4 conditions, 2 seeds, one worker,
    so every job runs in the stage's process and logs there), and what it logged. Built once per test run (the
    first process to need it, under a lock, in the folder every process shares); tests read it or copy it."""
    shared = tmp_path_factory.getbasetemp()
    shared = shared if worker_id == "master" else shared.parent
    p, logged = Project.at(shared / "ablated" / "project"), shared / "ablated.log"
    with FileLock(str(shared / "ablated.lock")):
        if not logged.exists():
            p = Project(p.path)
            (p.path / "ablation").mkdir()
            shutil.copy(ROOT / "ablation/dvc.yaml", p.path / "ablation/dvc.yaml")
            p.set(**SMALL_SYNTHETIC, **{"ablation.seeds": SEEDS, "ablation.workers": 1})
            p.run("dvc", "repro", "inputs")
            logged.write_text(p.run("dvc", "repro", "ablation/dvc.yaml").stderr)
    return p, logged.read_text()


def test_shared_work_runs_once(ablated):
    """Each job logs under its run's folder and steps: one parent pair (synthetic parents are the same for every
    seed), students and int8 students once per seed, crossover and comparison once per run that has them."""
    _, log = ablated
    jobs = sorted(set(re.findall(r"recomb: (\S+/seed_\d+ \([a-z, ]+\)): ", log)))
    assert jobs == sorted(["distill_only/seed_0 (parents)", "distill_only/seed_0 (distill)",
                           "distill_only/seed_1 (distill)", "distill_quantize/seed_0 (quantize)",
                           "distill_quantize/seed_1 (quantize)"]
                          + [f"{c}/seed_{s} (crossover, compare)" for c in ("full_pipeline", "full_recipe")
                             for s in SEEDS])


def test_every_run_has_its_tree_and_shared_files_are_the_same_bytes(ablated):
    p, _ = ablated
    root = p.path / "data/ablation"
    assert sorted(d.name for d in root.iterdir()) == ["distill_only", "distill_quantize", "full_pipeline",
                                                      "full_recipe"]
    for condition in ("distill_only", "distill_quantize", "full_pipeline", "full_recipe"):
        for seed in SEEDS:
            folder = root / condition / f"seed_{seed}"
            assert all((folder / f).is_file() for f in RUN_FILES), folder
            assert not (folder / "data").exists() and not (folder / "inputs").exists()  # the links are gone
            assert (folder / "qat").is_dir() == (condition != "distill_only")
            assert (folder / "reports/recombination.md").is_file() == condition.startswith("full_")
            assert (folder / "children").is_dir() == condition.startswith("full_")
            shared = root / "distill_only" / f"seed_{seed}"
            for f in RUN_FILES[:-1]:
                assert (folder / f).read_bytes() == (shared / f).read_bytes()
    assert not (p.path / "data/ablation.partial").exists()
    run_config = json.loads((root / "full_pipeline/seed_1/run.json").read_text())
    assert run_config["params"]["crossover"]["mode"] == "weighted" and run_config["params"]["distill"]["seed"] == 1


def test_summary_rows_statistics_and_metrics(ablated):
    p, _ = ablated
    summary = rows(p)
    assert [(r["condition"], int(r["seed"])) for r in summary] == [
        (c, s) for c in ("distill_only", "distill_quantize", "full_pipeline", "full_recipe") for s in SEEDS]
    for row in summary:
        has_child = row["condition"].startswith("full_")
        assert (row["primary_over_bound"] != "n/a") == has_child and row["child_return"] == "n/a"  # no env
        assert row["int8"] == {"distill_only": "n/a", "full_recipe": "qat"}.get(row["condition"], "ptq")
    recipe = [float(r["primary_over_bound"]) for r in summary if r["condition"] == "full_recipe"]
    with open(p.path / "data/reports/ablation/ablation_aggregates.csv") as f:
        stat = next(r for r in csv.DictReader(f)
                    if (r["condition"], r["figure"]) == ("full_recipe", "primary_over_bound"))
    assert float(stat["mean"]) == pytest.approx(sum(recipe) / 2) and int(stat["n_seeds"]) == 2
    assert float(stat["low"]) <= float(stat["mean"]) <= float(stat["high"])
    metrics = json.loads((p.path / "data/reports/ablation/summary.json").read_text())

    def leaves(node):
        return [x for v in node.values() for x in leaves(v)] if isinstance(node, dict) else [node]
    assert all(isinstance(v, (int, float)) for v in leaves(metrics))  # numbers and booleans only
    assert metrics["full_recipe"]["primary_over_bound"]["mean"] == pytest.approx(sum(recipe) / 2)
    report = (p.path / "data/reports/ablation/ablation_summary.md").read_text()
    assert "## Does full_recipe beat full_pipeline?" in report and "| distill_only | 0 | distill |" in report
    assert (p.path / "data/plots/ablation/seeds.png").stat().st_size > 10_000


def test_a_run_is_what_the_pipeline_builds_with_its_params(ablated, tmp_path, monkeypatch):
    """full_recipe/seed_1's child, bit for bit, from the pipeline's stages run with the run's params."""
    origin, _ = ablated
    shutil.copytree(origin.path, tmp_path / "copy", symlinks=True)
    params = json.loads((tmp_path / "copy/data/ablation/full_recipe/seed_1/run.json").read_text())["params"]
    monkeypatch.chdir(tmp_path / "copy")
    for stage in (parents, distill, ptq, qat, crossover, finetune):  # as `python -m stages.<name>` runs them
        stage.main(params)
    for made in ("children/finetuned/child.safetensors", "qat/student_A_qat_int8.safetensors"):
        assert (tmp_path / "copy/data" / made).read_bytes() == (
            tmp_path / "copy/data/ablation/full_recipe/seed_1" / made).read_bytes()


def test_ray_builds_the_same_run_as_local_workers(ablated, tmp_path, monkeypatch):
    """The fixture ran locally (one worker, in process); full_recipe/seed_1 alone as Ray tasks: the same bits.
    `ray_address: ''` starts a private local Ray even where RAY_ADDRESS names a dead cluster (it used to retry
    that address for minutes)."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there
    origin, _ = ablated
    p = Project.at(tmp_path / "copy")
    shutil.copytree(origin.path, p.path, symlinks=True)
    recipe = p.params()["ablation"]["conditions"]["full_recipe"]
    p.set(**{"ablation.workers": 2, "ablation.backend": "ray", "ablation.seeds": [1], "ablation.improvement": {},
             "ablation.conditions": {"full_recipe": recipe}})
    p.stage("ablation")
    run = "data/ablation/full_recipe/seed_1"
    assert tree(p.path / run) == tree(origin.path / run)
    assert rows(p) == [r for r in rows(origin) if (r["condition"], r["seed"]) == ("full_recipe", "1")]


@pytest.mark.parametrize("change, message", [
    ({"ablation.conditions.full_recipe.stages": ["distill", "compare"]},
     "ablation.conditions.full_recipe.stages: compare needs crossover"),
    ({"ablation.conditions.full_recipe.overrides": {"distill.temprature": 2.0}},
     "ablation.conditions.full_recipe.overrides.distill.temprature: no such key in params.yaml"),
    ({"ablation.conditions.full_recipe.overrides": {"qat.epochs": 0}},
     "ablation.conditions.full_recipe.overrides.qat.epochs: must be ≥ 1"),
    ({"ablation.conditions.full_recipe.repeat": 2},
     "ablation.conditions.full_recipe.repeat: unknown key (expected one of: stages, overrides)"),
    ({"ablation.seeds": []}, "ablation.seeds: must list at least one seed"),
])
def test_bad_params_stop_the_stage_in_one_line_with_nothing_written(tmp_path, monkeypatch, capsys, change, message):
    p = Project(tmp_path / "project")
    p.set(**change)
    monkeypatch.chdir(p.path)
    with pytest.raises(SystemExit) as exited:
        run(ablation.main)
    err = capsys.readouterr().err
    assert exited.value.code == 1 and err.startswith(f"error: params.yaml: {message}") and err.count("\n") == 1
    assert not (p.path / "data/ablation").exists() and not (p.path / "data/reports").exists()


def test_its_own_pipeline_file_reruns_only_when_what_it_reads_changes(ablated, tmp_path):
    """`dvc repro` and `dvc exp run` read ./dvc.yaml and never run it; a key it does not read keeps it fresh."""
    p = Project.at(tmp_path / "copy")
    shutil.copytree(ablated[0].path, p.path, symlinks=True)
    assert "up to date" in p.run("dvc", "status", "ablation/dvc.yaml").stdout
    assert "ablation" not in p.run("dvc", "stage", "list").stdout  # `dvc repro`'s default target: ./dvc.yaml
    p.set(**{"search.max_runs": 3, "generalize.states": 40})
    assert "up to date" in p.run("dvc", "status", "ablation/dvc.yaml").stdout
    p.set(**{"distill.epochs": 2})
    assert "changed" in p.run("dvc", "status", "ablation/dvc.yaml").stdout


def test_a_clone_that_never_ran_it_still_checks_out(tmp_path):
    """No ablation output is cached, so `dvc checkout` (and `dvc exp apply`, which runs it) in a clone that never
    ran the ablation does not fail on outputs its cache cannot have (real DVC on the committed pipeline files)."""
    origin = Project(tmp_path / "origin", git=True)
    (origin.path / "ablation").mkdir()
    for name in ("dvc.yaml", "dvc.lock"):
        shutil.copy(ROOT / "ablation" / name, origin.path / "ablation" / name)
    origin.commit("the committed ablation pipeline and its lock")
    clone = Project.clone(origin, tmp_path / "clone")
    checkout = clone.run("dvc", "checkout", "ablation/dvc.yaml", check=False)
    assert checkout.returncode == 0, checkout.stderr

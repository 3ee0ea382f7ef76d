"""The ablation's plan (`recomb ablation --dry-run`): parse rules, overrides checked by their sections, sharing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import run_recomb
from stages.common import with_task_values
from recomb.config import load_params, pipeline_stages
from recomb.errors import RecombError
from recomb.evaluation.ablation import plan, sharing
from scratch import ROOT, Project
from stages.params_check import VALIDATORS

BASE = with_task_values(load_params(ROOT / "params.yaml"))  # as the stages see it
PIPELINE = pipeline_stages(ROOT / "dvc.yaml")
STAGES_ALL = ["distill", "quantize", "crossover", "compare"]


def validate(params: dict, section: str) -> object:
    return VALIDATORS[section](params)


def with_ablation(conditions: dict, seeds=(4,), source: str = "dqn") -> dict:
    params = copy.deepcopy(BASE)
    params["parents"]["source"] = source
    params["ablation"] = {"seeds": list(seeds), "conditions": conditions, "improvement": {}, "workers": 2,
                          "backend": "local", "ray_address": ""}
    return params


def error(conditions: dict, **kwargs) -> str:
    with pytest.raises(RecombError) as exc:
        plan(with_ablation(conditions, **kwargs), validate, "out")
    assert "\n" not in str(exc.value)
    return str(exc.value)


@pytest.mark.parametrize("stages, message", [
    (["quantize"], "quantize needs distill (got ['quantize'])"),
    (["crossover"], "crossover needs distill (got ['crossover'])"),
    (["distill", "compare"], "compare needs crossover (got ['distill', 'compare'])"),
    (["distill", "finetune"],
     "unknown stage 'finetune' (expected some of: distill, quantize, crossover, compare) "
     "(got ['distill', 'finetune'])"),
    (["distill", "distill"], "a stage is listed twice (got ['distill', 'distill'])"),
    ([], "must list at least one of: distill, quantize, crossover, compare (got [])"),
])
def test_each_parse_rule_is_one_line_naming_the_stages(stages, message):
    assert error({"c": {"stages": stages, "overrides": {}}}) == f"params.yaml: ablation.conditions.c.stages: {message}"


def test_an_unknown_condition_field_is_named():
    assert error({"c": {"stages": ["distill"], "overrides": {}, "seed": 1}}) == (
        "params.yaml: ablation.conditions.c.seed: unknown key (expected one of: stages, overrides)")


def test_empty_seeds_is_one_line():
    assert error({"c": {"stages": ["distill"], "overrides": {}}}, seeds=()) == (
        "params.yaml: ablation.seeds: must list at least one seed (got [])")


def test_stages_run_in_pipeline_order_whatever_the_file_says():
    planned = plan(with_ablation({"c": {"stages": ["compare", "crossover", "quantize", "distill"], "overrides": {}}},
                                 seeds=(2,)), validate, "out")
    (run,) = planned.runs
    assert run.stages == ("distill", "quantize", "crossover", "compare")
    assert run.directory == "out/c/seed_2/"


@pytest.mark.parametrize("key, value, message", [
    ("distill.lrr", 0.1, "distill.lrr: no such key in params.yaml"),
    ("distill.lr.x", 0.1, "distill.lr.x: no such key in params.yaml"),
    ("nosection.lr", 0.1, "nosection.lr: no such key in params.yaml"),
    ("distill.lr", -1, "distill.lr: must be > 0 (got -1.0)"),
    ("crossover.mode", "blend", "crossover.mode: must be one of random, layer, weighted, aligned, slerp (got 'blend')"),
    ("ablation.workers", 3, "ablation.workers: a condition cannot override the ablation section"),
])
def test_each_override_is_checked_by_its_sections_rules(key, value, message):
    assert error({"c": {"stages": ["distill"], "overrides": {key: value}}}) == (
        f"params.yaml: ablation.conditions.c.overrides.{message}")


def test_an_override_breaking_another_key_of_its_section_names_the_override():
    """finetune.regime must name a regime: the check runs on the whole finetune section, the override is blamed."""
    message = error({"c": {"stages": STAGES_ALL, "overrides": {"finetune.regime": "slow"}}})
    assert message.startswith("params.yaml: ablation.conditions.c.overrides.finetune.regime: ")
    assert "slow" in message


def test_crossing_int8_students_needs_the_quantize_stage():
    assert error({"c": {"stages": ["distill", "crossover"], "overrides": {"crossover.parents": "qat"}}}) == (
        "params.yaml: ablation.conditions.c.stages: crossover reads int8 students (crossover.parents qat), "
        "so it needs quantize")


def test_a_condition_cannot_override_what_the_seed_sets():
    assert error({"c": {"stages": ["distill"], "overrides": {"parents.dqn.seed": 3}}}) == (
        "params.yaml: ablation.conditions.c.overrides.parents.dqn.seed: each seed of ablation.seeds sets it "
        "(parents.source dqn); remove the override")


def groups(planned, what: str) -> list[list[str]]:
    return [[f"{r.condition}/{r.seed}" for r in g.runs] for g in planned.shared if g.what == what]


def test_students_are_shared_by_conditions_with_equal_distill_and_split_by_temperature():
    conditions = {"a": {"stages": ["distill"], "overrides": {"distill.epochs": 3}},
                  "b": {"stages": STAGES_ALL, "overrides": {"distill.epochs": 3, "crossover.mode": "weighted"}},
                  "c": {"stages": ["distill"], "overrides": {"distill.epochs": 3, "distill.temperature": 2.0}}}
    planned = sharing(plan(with_ablation(conditions, seeds=(0, 2), source="synthetic"), validate, "out"), PIPELINE)
    # synthetic parents do not depend on the seed: one pair for all six runs; the seed sets distill.seed
    assert groups(planned, "parents") == [["a/0", "a/2", "b/0", "b/2", "c/0", "c/2"]]
    assert groups(planned, "students") == [["a/0", "b/0"], ["a/2", "b/2"], ["c/0"], ["c/2"]]
    assert [r.params["distill"]["seed"] for r in planned.runs] == [0, 2, 0, 2, 0, 2]
    assert {r.params["crossover"]["seed"] for r in planned.runs if r.condition == "b"} == {0, 2}
    assert BASE["distill"]["epochs"] != 3  # the overrides worked on copies


def test_dqn_seeds_are_parent_pairs_shared_across_conditions():
    conditions = {"a": {"stages": ["distill"], "overrides": {}},
                  "b": {"stages": ["distill"], "overrides": {"distill.temperature": 2.0}}}
    planned = sharing(plan(with_ablation(conditions, seeds=(4, 0)), validate, "out"), PIPELINE)
    assert groups(planned, "parents") == [["a/4", "b/4"], ["a/0", "b/0"]]
    assert groups(planned, "students") == [["a/4"], ["a/0"], ["b/4"], ["b/0"]]
    assert [r.params["parents"]["dqn"]["seed"] for r in planned.runs] == [4, 0, 4, 0]
    assert {r.params["distill"]["seed"] for r in planned.runs} == {BASE["distill"]["seed"]}


DEFAULT_SECTION = {
    "seeds": [4, 0],
    "conditions": {
        "distill_only": {"stages": ["distill"], "overrides": {}},
        "full_pipeline": {"stages": ["crossover", "distill", "compare", "quantize"],
                          "overrides": {"crossover.parents": "quantized", "crossover.mode": "weighted"}},
    },
    "improvement": {"condition": "full_pipeline", "over": "distill_only"},
    "workers": 2, "backend": "local", "ray_address": "",
}


def write_section(path: Path, section: dict) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["ablation"] = section
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dry_run_prints_the_plan_and_writes_the_stub_summary(tmp_path, monkeypatch, capsys):
    p = Project(tmp_path / "project")
    write_section(p.path, DEFAULT_SECTION)
    monkeypatch.chdir(p.path)
    code, out, err = run_recomb(capsys, "ablation", "--dry-run")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "ablation plan: 2 conditions × 2 seeds = 4 runs (local, 2 workers)"
    assert lines[1].startswith("A seed s sets parents.dqn.seed: the parent pair DQN-trained with seeds s and s + 1")
    assert ("  full_pipeline  seed 0   distill → quantize → crossover → compare  data/ablation/full_pipeline/seed_0/"
            in lines)
    assert ("  distill_only   seed 4   distill                                   data/ablation/distill_only/seed_4/"
            in lines)
    assert "shared: 2 parent pairs, 2 student pairs and 2 int8 student sets made for 4 runs" in lines
    assert ("  students made once in data/ablation/distill_only/seed_4/, used by distill_only/seed_4, "
            "full_pipeline/seed_4") in lines
    assert lines[-1] == ("wrote data/reports/latest/ablation_plan/ablation_plan.json and .md (dry run: nothing trained; "
                         "the runs: dvc repro ablation/dvc.yaml)")
    summary = json.loads((p.path / "data/reports/latest/ablation_plan/ablation_plan.json").read_text())
    assert [(r["condition"], r["seed"]) for r in summary["runs"]] == [
        ("distill_only", 4), ("distill_only", 0), ("full_pipeline", 4), ("full_pipeline", 0)]
    assert summary["conditions"]["full_pipeline"]["stages"] == STAGES_ALL
    assert "| full_pipeline | 0 | distill → quantize → crossover → compare |" in (
        p.path / "data/reports/latest/ablation_plan/ablation_plan.md").read_text()
    assert sorted(f.name for f in (p.path / "data/reports/latest").iterdir()) == ["ablation_plan"]

    code, out, err = run_recomb(capsys, "ablation")  # a mode is required: the runs are a DVC stage
    assert (code, out) == (2, "")
    assert "one of the arguments --dry-run --from-exps is required" in err


@pytest.mark.parametrize("change, message", [
    ({"full_pipeline": {"stages": ["distill"], "overrides": {"distill.lr": -1}}},
     "params.yaml: ablation.conditions.full_pipeline.overrides.distill.lr: must be > 0 (got -1.0)"),
    ({"seeds": []}, "params.yaml: ablation.seeds: must list at least one seed (got [])"),
    ({"improvement": {"condition": "full_recipe", "over": "distill_only"}},
     "params.yaml: ablation.improvement: condition: no condition 'full_recipe' (expected one of: distill_only, "
     "full_pipeline) (got {'condition': 'full_recipe', 'over': 'distill_only'})"),
])
def test_a_bad_params_file_writes_nothing(tmp_path, monkeypatch, capsys, change, message):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    section = copy.deepcopy(DEFAULT_SECTION)
    if "seeds" in change or "improvement" in change:
        section.update(change)
    else:
        section["conditions"].update(change)
    write_section(tmp_path, section)
    monkeypatch.chdir(tmp_path)
    assert run_recomb(capsys, "ablation", "--dry-run") == (1, "", f"error: {message}\n")
    assert not (tmp_path / "data").exists()


def test_what_runs_share_comes_from_the_pipelines_declaration():
    """The sections each kind of shared work reads are dvc.yaml's params of its stages: a stage that starts
    reading a new section there makes runs that differ in it stop sharing that work."""
    from recomb.evaluation.ablation import shared_sections
    from stages.ablation_runs import made
    found = shared_sections(PIPELINE)
    assert found == {"parents": ("runtime", "parents", "tasks"),
                     "students": ("runtime", "parents", "tasks", "distill", "validate_distillation"),
                     "quantized": ("runtime", "parents", "tasks", "distill", "validate_distillation", "ptq", "qat",
                                   "validate_quantized")}
    reading_more = {**PIPELINE, "distill": {**PIPELINE["distill"], "params": ["runtime", "distill", "crossover.seed"]}}
    assert "crossover" in shared_sections(reading_more)["students"]
    assert "data/students" in made(PIPELINE, "students") and "data/reports/distillation.json" in made(PIPELINE, "students")
    assert "data/parents" in made(PIPELINE, "parents") and "data/students" not in made(PIPELINE, "parents")

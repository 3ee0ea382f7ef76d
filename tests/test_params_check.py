"""`recomb params` checks every section before DVC runs anything, with each stage's own rules."""

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run_recomb
from recomb.config import Section, load_params
from stages.params_check import CHECKED, SECTIONS, VALIDATORS

ROOT = Path(__file__).resolve().parents[1]


def test_the_sections_are_params_yamls_and_each_is_checked_by_the_class_that_names_it():
    """One source: the classes name their sections; params.yaml holds exactly those, in that order."""
    assert list(load_params(ROOT / "params.yaml")) == list(SECTIONS) == list(VALIDATORS)
    assert len(set(SECTIONS)) == len(SECTIONS)
    named = {name for cls in CHECKED for name in cls.sections}
    defined = {cls for cls in _subclasses(Section) if cls.sections}
    assert defined == set(CHECKED), f"classes that name sections but are not checked: {defined - set(CHECKED)}"
    assert named == set(SECTIONS)


def _subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct} | _subclasses(direct)}


@pytest.mark.parametrize("section, key, value, message", [
    ("distill", "lr", -1, "params.yaml: distill.lr: must be > 0 (got -1.0)"),
    ("multigen", "generations", 0, "params.yaml: multigen.generations: must be ≥ 1 (got 0)"),
    ("search", "preset", "nope", "params.yaml: search.preset: must be one of "),
    ("selection", "eval_seed", 20000, "params.yaml: selection.eval_seed: episodes 20000..20099 overlap"),
    ("finetune", "epochs", 3, "params.yaml: finetune.epochs: a regime's key"),
])
def test_a_mistake_in_any_section_is_one_line_before_dvc_runs(tmp_path, monkeypatch, capsys, section, key, value,
                                                              message):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    assert run_recomb(capsys, "params") == (0, f"params.yaml: all {len(SECTIONS)} sections valid\n", "")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, out, err = run_recomb(capsys, "params")
    assert (code, out) == (1, "") and err.startswith("error: " + message) and err.count("\n") == 1

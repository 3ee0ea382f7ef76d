"""`recomb params` checks every section before DVC runs anything, with each stage's own rules."""

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run_recomb
from stages.common import SECTIONS
from stages.params_check import VALIDATORS

ROOT = Path(__file__).resolve().parents[1]


def test_every_section_has_its_validator():
    assert list(VALIDATORS) == list(SECTIONS)


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

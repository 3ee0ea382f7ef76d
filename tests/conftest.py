"""Shared fixtures: a throw-away copy of the project for end-to-end stage runs."""

from __future__ import annotations

import os
from pathlib import Path

import recomb  # noqa: F401  (first: its dispatch pins must precede torch and numpy)
import pytest
import torch
from scratch import Project

torch.set_num_threads(1)
# The tests' Ray clusters are local and short-lived. A local `ray.init()` turns token auth on and writes
# ~/.ray/auth_token, and a head started by another test process at the same moment may not see it.
os.environ["RAY_AUTH_MODE"] = "disabled"

SMALL_SYNTHETIC = {
    "parents.source": "synthetic",
    "parents.synthetic.seed": 42,
    "parents.synthetic.n_states": 400,
    "distill.epochs": 3,
    "validate_distillation.latency_repeats": 20,
    "qat.epochs": 1,
    "validate_quantized.latency_repeats": 20,
    "validate_quantized.throughput_batch_size": 64,
    "validate_quantized.throughput_repeats": 2,
    "regimes.tuned.epochs": 1,
    "search.max_runs": 2,
    "multigen.generations": 2,
    "generalize.states": 50,
    "generalize.noise_std": [0.5],
    "generalize.input_scaling": [2.0],
    "analyze.max_states": 100,
    "analyze.activation_states": 10,
    "compare_distillation.epochs": 1,
    "compare_operators.seeds": [0],
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


@pytest.fixture
def synthetic_project(project: Project) -> Project:
    project.set(**SMALL_SYNTHETIC)
    return project


def run_recomb(capsys, *argv: str) -> tuple[int, str, str]:
    """`recomb <argv>` in this process: (exit code, stdout, stderr)."""
    from stages import cli
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def pytest_collection_modifyitems(items):
    """Tests marked `longest` first: with two xdist processes the other one works through the rest meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)

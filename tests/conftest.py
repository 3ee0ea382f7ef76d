"""Shared fixtures: a throw-away copy of the project for end-to-end stage runs."""

from __future__ import annotations

import os
from pathlib import Path

import recomb  # noqa: F401  (first: its dispatch pins must precede torch and numpy)
import pytest
import torch
import yaml
from scratch import Project

torch.set_num_threads(1)
# The tests' Ray clusters are local and short-lived. A local `ray.init()` turns token auth on and writes
# ~/.ray/auth_token, and a head started by another test process at the same moment may not see it.
os.environ["RAY_AUTH_MODE"] = "disabled"

# For Project.set: synthetic parents and small budgets (dotted key → value), checked against params.yaml
SMALL_SYNTHETIC = yaml.safe_load((Path(__file__).parent / "data" / "small_budgets.yaml").read_text())


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

"""A throw-away copy of the pipeline (code, params, dvc.yaml) with its own DVC repo.

Used by the end-to-end tests and the benchmarks, so neither depends on, nor
disturbs, the artifacts in the real `data/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Project:
    """A copy of recomb's pipeline in a temp dir, with its own DVC repo and params."""

    def __init__(self, path: Path, git: bool = False):
        """`git=True` makes it a git repository too (what `dvc exp` needs)."""
        self.path = path
        for name in ("recomb", "stages"):
            shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "params.yaml", path / "params.yaml")
        shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
        (path / "data" / "user").mkdir(parents=True)
        (path / "data" / "user" / ".gitkeep").touch()
        if git:
            self.run("git", "init", "-q")
            self.run("git", "config", "user.email", "tests@recomb.invalid")
            self.run("git", "config", "user.name", "recomb tests")
            self.run("dvc", "init", "-q")
        else:
            self.run("dvc", "init", "--no-scm", "-q")

    @classmethod
    def at(cls, path: Path) -> "Project":
        """A project already on disk (e.g. a copy of another)."""
        project = cls.__new__(cls)
        project.path = path
        return project

    @classmethod
    def clone(cls, origin: "Project", path: Path) -> "Project":
        """A `git clone` of a git-backed project: what a teammate or CI checks out (no DVC-cached data)."""
        subprocess.run(["git", "clone", "-q", str(origin.path), str(path)], check=True, capture_output=True)
        return cls.at(path)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(self.path)
        env["DVC_NO_ANALYTICS"] = "1"
        env["COLUMNS"] = "120"  # DVC's tables render for a 120-column terminal  # a scratch repo's `dvc init` would otherwise spawn a reporting daemon
        return env

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.path, env=self.env(), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set(self, **dotted) -> None:
        """Set params by dotted key, e.g. set(**{"distill.epochs": 2})."""
        params = self.params()
        for key, value in dotted.items():
            node = params
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def stage(self, name: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", f"stages.{name}", check=check)

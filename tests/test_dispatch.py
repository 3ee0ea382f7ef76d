"""The same bits on every x86-64 CPU with AVX2: the dispatch pins (recomb/dispatch.py) and their proof.

The invariance tests run the pipeline's core in subprocesses under settings in which real machines
differ — MKL seeing an older instruction set, numpy without its AVX-512 loops (an AVX2-only CPU),
OpenBLAS's and MKL's own kernel choice left to the environment, oneDNN capped at AVX2, one worker
instead of two — and assert identical output hashes. Without the pins they differ (MKL's SSE4.2
branch and OpenBLAS's SkylakeX kernels round otherwise on this machine). One run also checks that no
operator reaching MKL's VML runs in the core: VML ignores every pin (`recomb.portable`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recomb import dispatch
from recomb.reproducibility import cpu
from scratch import Project

DRIVER = Path(__file__).with_name("dispatch_core.py")
AVX2_ONLY_NUMPY = " ".join(dispatch.NUMPY_ABOVE_AVX2)

# Small budgets (a few thousand DQN steps, no return bar, a few epochs): every kernel still runs many times.
CORE = {
    "parents.dqn.buffer.n_states": 600,
    "distill.epochs": 2,
    "regimes.tuned.epochs": 2,
}
TASKS = {
    "CartPole-v1": {"total_steps": 2048, "learning_starts": 512, "eval_interval": 1024, "eval_episodes": 3, "pass_return": 1.0},
    "Acrobot-v1": {"total_steps": 1536, "learning_starts": 512, "eval_interval": 768, "eval_episodes": 1, "pass_return": -500.0},
}
# name -> (environment variables, params): each a way one real machine differs from another
OLDER_MKL = {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "AUTO", "OPENBLAS_CORETYPE": "SkylakeX"}
AVX2_ONLY = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "NPY_DISABLE_CPU_FEATURES": AVX2_ONLY_NUMPY, "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Zen"}
ONE_WORKER = {"parents.dqn.workers": 1}
MACHINES = {  # CartPole takes them one at a time; Acrobot (numpy's sin/cos in its dynamics) all at once, to save time
    "CartPole-v1": {"older MKL branch, unpinned MKL/OpenBLAS asked for": (OLDER_MKL, {}),
                    "AVX2-only CPU, one worker": (AVX2_ONLY, ONE_WORKER)},
    "Acrobot-v1": {"AVX2-only CPU, older MKL branch, one worker": ({**AVX2_ONLY, **OLDER_MKL, "OPENBLAS_CORETYPE": "Zen"},
                                                                  ONE_WORKER)},
}


def core_project(path: Path, task: str, params: dict) -> Project:
    """A scratch project set up for the core of `task` on the small budgets above, with `params` on top."""
    project = Project(path)
    project.set(**CORE, **{"parents.env": task}, **params,
                **{f"parents.presets.{task}.{key}": value for key, value in TASKS[task].items()})
    return project


def core_hashes(project: Project, env: dict[str, str], *flags: str, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """The core's output hashes, run in a subprocess (behind `prefix`, e.g. an emulator) with `env` on top."""
    proc = subprocess.run([*prefix, sys.executable, str(DRIVER), *flags], cwd=project.path,
                          env={**project.env(), **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.longest
@pytest.mark.parametrize("task", TASKS)
def test_the_core_gives_the_same_bits_under_every_machine_setting(tmp_path, task):
    reference = None
    for name, (env, params) in {"this machine": ({}, {}), **MACHINES[task]}.items():
        project = core_project(tmp_path / name.replace(" ", "_").replace(",", "").replace("/", "_"), task, params)
        # The one-worker run also records what reached MKL's VML (a forked worker's calls would be lost).
        guarded = params == ONE_WORKER
        hashes = core_hashes(project, env, *(["--vml-guard"] if guarded else []))
        if guarded:
            assert hashes.pop("vml_calls") == {}, f"{task}: operators that reach MKL's VML ran in the core"
        if reference is None:
            reference = hashes
            assert any(key.endswith(".safetensors") for key in hashes) and "pca" in hashes
        else:
            differ = sorted(key for key in reference if hashes.get(key) != reference[key])
            assert not differ, f"{task}, {name}: {differ}"


def test_numpy_disabled_adds_the_targets_above_avx2_to_what_is_there():
    assert dispatch.numpy_disabled("") == "X86_V4 AVX512_ICL AVX512_SPR"
    assert dispatch.numpy_disabled("AVX512_SPR, X86_V3") == "AVX512_SPR X86_V3 X86_V4 AVX512_ICL"


def test_the_pins_hold_in_this_process_and_its_children():
    assert dispatch.check() == []
    for key, value in dispatch.PINS.items():
        assert os.environ[key] == value
    out = subprocess.run([sys.executable, "-c", "import recomb, json; from recomb.reproducibility import fingerprint;"
                          "print(json.dumps(fingerprint()))"],
                         env={**os.environ, "MKL_CBWR": "AUTO", "ATEN_CPU_CAPABILITY": "default"},
                         capture_output=True, text=True, check=True).stdout
    fingerprint = json.loads(out)
    assert fingerprint["unpinned"] == [] and fingerprint["aten_capability"] == "AVX2"
    assert fingerprint["pins"]["MKL_CBWR"] == "COMPATIBLE"
    assert not set(fingerprint["numpy_dispatch"]) & set(dispatch.NUMPY_ABOVE_AVX2)


def test_numpy_imported_before_recomb_is_named_and_stops_a_stage(tmp_path):
    code = "import numpy, recomb; from recomb import dispatch; print(dispatch.check())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NPY_DISABLE_CPU_FEATURES": ""},
                         capture_output=True, text=True, check=True).stdout
    has_avx512 = "avx512f" in cpu()["flags"]
    assert ("imported before recomb" in out) == has_avx512, out

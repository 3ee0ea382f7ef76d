"""Why a cold run did not reproduce the committed `dvc.lock`: the first stage whose outputs differ, and the machines.

`make repro-check` rebuilds every stage and compares the new lock with the committed one.
A plain `git diff` shows hundreds of changed hashes; what a user needs is where the
divergence starts (every later stage differs because its inputs do), which files, and
how this machine differs from the one that made the lock (`fingerprint`).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field

from . import dispatch

# Dispatch settings a machine may differ in that the pins make irrelevant (reported, never set).
MACHINE_VARIABLES = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
                     "MKL_NUM_THREADS", "OPENBLAS_L2_SIZE", "NPY_ENABLE_CPU_FEATURES")


def cpu() -> dict:
    """This CPU: model, vendor and the instruction-set flags that decide kernel choice (Linux /proc/cpuinfo)."""
    info = {"model": platform.processor() or "unknown", "vendor": "unknown", "family_model_stepping": "?", "flags": []}
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    wanted = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "avx_vnni")
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", info["model"]), "vendor": fields.get("vendor_id", "unknown"),
            "family_model_stepping": "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping")),
            "flags": [f for f in wanted if f in flags]}


def fingerprint() -> dict:
    """The machine and the dispatch in effect: what to compare when two machines' bits differ."""
    import numpy
    import torch
    from numpy._core._multiarray_umath import __cpu_features__, __cpu_dispatch__

    mkl = re.search(r"Math Kernel Library Version (\S+)", torch.__config__.show())
    return {
        "cpu": cpu(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkl": mkl.group(1) if mkl else "not used",
        "numpy": numpy.__version__,
        "numpy_dispatch": [name for name in __cpu_dispatch__ if __cpu_features__.get(name)],
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "pins": {key: os.environ.get(key) for key in (*dispatch.PINS, "NPY_DISABLE_CPU_FEATURES")},
        "machine_variables": {key: os.environ[key] for key in MACHINE_VARIABLES if key in os.environ},
        "unpinned": dispatch.check(),
    }


@dataclass
class StageDifference:
    stage: str
    outs: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (path, committed, now)
    deps: list[str] = field(default_factory=list)  # inputs whose hash differs (code, params files, data)
    params: list[str] = field(default_factory=list)


def _hashes(entries: list[dict] | None) -> dict[str, str | None]:
    return {entry["path"]: entry.get("md5") or entry.get("hash") for entry in entries or []}


def _inside(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def stage_order(lock: dict) -> list[str]:
    """The lock's stages in DAG order (a stage after every stage whose outputs it reads), file order kept
    among independent stages."""
    stages = lock.get("stages", {})
    outs = {name: list(_hashes(s.get("outs"))) for name, s in stages.items()}
    needs = {name: {other for dep in _hashes(s.get("deps")) for other, paths in outs.items()
                    if other != name and any(_inside(dep, out) for out in paths)}
             for name, s in stages.items()}
    order: list[str] = []
    while len(order) < len(stages):
        ready = [name for name in stages if name not in order and needs[name] <= set(order)]
        if not ready:  # a cycle cannot be in a DVC lock; keep the rest in file order rather than loop
            ready = [name for name in stages if name not in order]
        order.append(ready[0])
    return order


def lock_differences(committed: dict, current: dict) -> list[StageDifference]:
    """Every stage whose recorded outputs, inputs or params differ between two locks, in DAG order."""
    before, after = committed.get("stages", {}), current.get("stages", {})
    differences = []
    for name in stage_order(current):
        old, new = before.get(name, {}), after[name]
        diff = StageDifference(name)
        old_outs, new_outs = _hashes(old.get("outs")), _hashes(new.get("outs"))
        diff.outs = [(path, old_outs.get(path), new_outs.get(path)) for path in sorted({*old_outs, *new_outs})
                     if old_outs.get(path) != new_outs.get(path)]
        old_deps, new_deps = _hashes(old.get("deps")), _hashes(new.get("deps"))
        diff.deps = sorted(path for path in {*old_deps, *new_deps} if old_deps.get(path) != new_deps.get(path))
        diff.params = sorted(path for path in {*old.get("params", {}), *new.get("params", {})}
                             if old.get("params", {}).get(path) != new.get("params", {}).get(path))
        if diff.outs or diff.deps or diff.params:
            differences.append(diff)
    differences += [StageDifference(name, deps=["(stage gone from the new lock)"]) for name in before
                    if name not in after]
    return differences


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def fingerprint_differences(first: dict, second: dict) -> list[str]:
    """`key: first → second` for every field two machine fingerprints disagree on."""
    a, b = _flat(first), _flat(second)
    return [f"{key}: {a.get(key)!r} → {b.get(key)!r}" for key in sorted({*a, *b}) if a.get(key) != b.get(key)]


def describe_machine(fingerprint: dict) -> str:
    """One line: CPU, vendor, ISA flags, the pins and the library versions."""
    cpu = fingerprint.get("cpu", {})
    pins = " ".join(f"{k}={v}" for k, v in fingerprint.get("pins", {}).items())
    return (f"{cpu.get('model')} ({cpu.get('vendor')} {cpu.get('family_model_stepping', '?')}; "
            f"{' '.join(cpu.get('flags', []))}); pins: {pins}; "
            f"torch {fingerprint.get('torch')}, MKL {fingerprint.get('mkl')}, numpy {fingerprint.get('numpy')} "
            f"(dispatch {'/'.join(fingerprint.get('numpy_dispatch', []))}), aten {fingerprint.get('aten_capability')}")


def explain(differences: list[StageDifference], here: dict, lock_machine: dict | None) -> list[str]:
    """The lines `make repro-check` prints when the locks differ."""
    if not differences:
        return []
    first = next((d for d in differences if d.outs), None)
    lines = []
    if first is None:
        lines.append("dvc.lock differs from the committed one in recorded inputs only (code, params or data files "
                     "changed without the lock being regenerated): " + ", ".join(d.stage for d in differences))
    else:
        lines.append(f"not reproduced: the first stage (DAG order) whose outputs differ is '{first.stage}':")
        lines += [f"  {path}: committed {old or '(none)'}, this run {new or '(none)'}" for path, old, new in first.outs]
        if first.deps:
            lines.append(f"  its recorded inputs differ too: {', '.join(first.deps)}"
                         " (an input changed upstream or in the code: not a machine difference alone)")
        later = [d.stage for d in differences[differences.index(first) + 1:]]
        if later:
            lines.append(f"  later stages that differ (their inputs did): {', '.join(later)}")
    lines.append(f"this machine: {describe_machine(here)}")
    if lock_machine is not None:
        lines.append(f"lock made on: {describe_machine(lock_machine)}")
        changed = fingerprint_differences(lock_machine, here)
        lines += [f"  {line}" for line in changed] if changed else ["  (same fingerprint)"]
    return lines

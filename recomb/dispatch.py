"""The same bits on every x86-64 CPU with AVX2, Intel or AMD: the runtime dispatch pins.

Torch, MKL, numpy and OpenBLAS each pick their kernels for the CPU they find, and
kernels of different instruction sets round differently. `pin()` holds every such
choice in the hashed path to one that all AVX2 machines share:

- aten's vectorised kernels: the AVX2 family (`ATEN_CPU_CAPABILITY`);
- MKL (torch's matrix products and its exp/log/tanh): the `COMPATIBLE` branch, which
  Intel's oneMKL guide documents as the one branch that is the same on Intel and
  compatible (AMD) processors; the `AVX2` branch holds on Intel CPUs only;
- numpy's dispatched loops (exp, log, argsort…): nothing above x86-64-v3 (AVX2);
- OpenBLAS (numpy's and matplotlib's small matrix products): the Haswell kernels,
  which every AVX2 CPU runs, on one thread.

It must run before numpy or torch is first imported (numpy reads its variable at import,
OpenBLAS when it loads), so `recomb/__init__.py` calls it and every entry point imports
`recomb` first. `check()` tells whether the pins did take effect in this process.
Imports nothing heavy: it is the lowest layer.
"""

from __future__ import annotations

import os
import platform
import re
import sys

# numpy's dispatch targets above AVX2 (numpy 2.x names); disabling one a CPU lacks is a no-op
NUMPY_ABOVE_AVX2 = ("X86_V4", "AVX512_ICL", "AVX512_SPR")

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
}

# Dispatch settings a machine may differ in that the pins make irrelevant (reported, never set).
MACHINE_VARIABLES = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
                     "MKL_NUM_THREADS", "OPENBLAS_L2_SIZE", "NPY_ENABLE_CPU_FEATURES")


def numpy_disabled(current: str) -> str:
    """`NPY_DISABLE_CPU_FEATURES` with every target above AVX2 added to what is already there."""
    names = current.replace(",", " ").split()
    return " ".join(names + [n for n in NUMPY_ABOVE_AVX2 if n not in names])


def pin() -> None:
    """Set the pins in this process's environment (inherited by every worker it starts)."""
    os.environ.update(PINS)
    os.environ["NPY_DISABLE_CPU_FEATURES"] = numpy_disabled(os.environ.get("NPY_DISABLE_CPU_FEATURES", ""))


def check() -> list[str]:
    """What is not pinned in this process, one line each (empty when all is well): a pin
    changed after `pin()`, or numpy imported before it ran (its AVX-512 loops still live)."""
    problems = [f"{key}={os.environ.get(key)!r}, expected {value!r}"
                for key, value in PINS.items() if os.environ.get(key) != value]
    if "numpy" in sys.modules:
        from numpy._core._multiarray_umath import __cpu_features__
        live = [name for name in NUMPY_ABOVE_AVX2 if __cpu_features__.get(name)]
        if live:
            problems.append(f"numpy dispatches {', '.join(live)} (it was imported before recomb pinned "
                            "NPY_DISABLE_CPU_FEATURES: import recomb first)")
    return problems


def cpu() -> dict:
    """This CPU: model, vendor and the instruction-set flags that decide kernel choice (Linux /proc/cpuinfo)."""
    info = {"model": platform.processor() or "unknown", "vendor": "unknown", "flags": []}
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
        "pins": {key: os.environ.get(key) for key in (*PINS, "NPY_DISABLE_CPU_FEATURES")},
        "machine_variables": {key: os.environ[key] for key in MACHINE_VARIABLES if key in os.environ},
        "unpinned": check(),
    }

"""The same bits on every x86-64 CPU with AVX2, Intel or AMD: the runtime dispatch pins.

Torch, MKL, numpy and OpenBLAS each pick their kernels for the CPU they find, and
kernels of different instruction sets round differently. `pin()` holds every such
choice in the hashed path to one that all AVX2 machines share:

- aten's vectorised kernels: the AVX2 family (`ATEN_CPU_CAPABILITY`);
- MKL (torch's matrix products and its exp/log/tanh): the `COMPATIBLE` branch, which
  Intel's oneMKL guide documents as the one branch that is the same on Intel and
  compatible (AMD) processors; the `AVX2` branch holds on Intel CPUs only;
- numpy's dispatched loops (exp, log, argsort…): nothing above x86-64-v3 (AVX2);
- OpenBLAS (numpy's matrix products and SVD, e.g. `analyze`'s PCA): the Haswell kernels,
  which every AVX2 CPU runs, on one thread.

It must run before numpy or torch is first imported (numpy reads its variable at import,
OpenBLAS when it loads), so `recomb/__init__.py` calls it and every entry point imports
`recomb` first. `check()` tells whether the pins did take effect in this process.
Imports nothing heavy: it is the lowest layer.
"""

from __future__ import annotations

import os
import sys

# numpy's dispatch targets above AVX2 (numpy 2.x names); numpy refuses to disable only its baseline ones
NUMPY_ABOVE_AVX2 = ("X86_V4", "AVX512_ICL", "AVX512_SPR")

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
}


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

"""The pipeline's core on other CPUs, emulated: the same bits on this machine and under QEMU's Intel and AMD models.

    python benchmarks/emulated_cpus.py [--task CartPole-v1] [--cpus Haswell-v4 EPYC-Rome-v2]

A session only ever has one real CPU, so a lock made here is only checked on another machine in a later
session. QEMU's user-mode emulator runs the same Python, torch and MKL on a CPU model of our choosing: its
vendor string (GenuineIntel or AuthenticAMD), its feature flags (AVX2 and FMA, no AVX-512: QEMU 7.2 has no
AVX-512) and CPUID's cache sizes, which is what MKL, OpenBLAS, numpy and torch look at to pick kernels. This
runs `tests/dispatch_core.py` (parents → distill → crossover → finetune and the PCA, on the small budgets of
`tests/test_dispatch.py`) natively and under each model, and prints every output whose hash differs.
Needs `qemu-x86_64` (Debian package `qemu-user`); each emulated run takes a few minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_dispatch import TASKS, core_hashes, core_project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="CartPole-v1", choices=sorted(TASKS))
    parser.add_argument("--cpus", nargs="+", default=["Haswell-v4", "EPYC-Rome-v2"],
                        help="QEMU CPU models (qemu-x86_64 -cpu help)")
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        sys.exit("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    runs = {"native": []} | {cpu: ["qemu-x86_64", "-cpu", cpu] for cpu in args.cpus}
    reference, differing = None, 0
    with tempfile.TemporaryDirectory() as scratch:
        for name, prefix in runs.items():
            project = core_project(Path(scratch) / name, args.task, {})
            start = time.perf_counter()
            try:
                hashes = core_hashes(project, {}, prefix=prefix)
            except AssertionError as failed:  # the core's own error, its stderr's tail
                sys.exit(f"{name}: the core failed: {failed}")
            seconds = time.perf_counter() - start
            if reference is None:
                reference = hashes
                print(f"native: {len(hashes)} outputs in {seconds:.0f} s")
                continue
            differ = sorted(key for key in reference if hashes.get(key) != reference[key])
            differing += bool(differ)
            print(f"{name}: {len(hashes)} outputs in {seconds:.0f} s, "
                  + (f"{len(differ)} differ: {', '.join(differ)}" if differ else "every hash the same as native"))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()

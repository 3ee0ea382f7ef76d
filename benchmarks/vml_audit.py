"""Which pipeline stages reach MKL's vector math library (VML), whose bits depend on the CPU: the gdb audit.

    python benchmarks/vml_audit.py [--stages distill finetune …]

`recomb.portable.VmlGuard` sees the aten operators known to reach VML; this sees VML itself. It copies the
project (code, params, data of the last `make run`) to a scratch folder, sets every `workers` key to 1 (gdb
follows one process), and runs each stage of dvc.yaml in order under gdb with a breakpoint on every VML entry
point exported by libtorch_cpu (`vms*`/`vmd*`). A breakpoint records the aten kernel that called it and lets
the program go on. Prints, per stage, each VML function and the kernel calling it, with the count; exit 1
when any stage reached VML. Needs gdb (Debian package `gdb`); takes about twice a `dvc repro`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Run inside gdb's Python: argv[1] is where to write the counts.
GDB_SCRIPT = r'''
import collections, json, re, subprocess, gdb
counts = collections.Counter()

class VmlBreakpoint(gdb.Breakpoint):
    def stop(self):
        frame, caller = gdb.newest_frame().older(), "?"
        for _ in range(6):  # up to the aten kernel, e.g. at::native::AVX2::sqrt_kernel
            if frame is None:
                break
            found = re.search(r"at::native::(?:\w+::)?(\w+_kernel)", frame.name() or "")
            if found:
                caller = found.group(1)
                break
            frame = frame.older()
        counts[f"{self.location} from {caller}"] += 1
        return False

gdb.execute("set breakpoint pending on")
gdb.execute("set pagination off")
for symbol in subprocess.run(["nm", "-D", "--defined-only", LIBRARY], capture_output=True, text=True).stdout.split():
    if re.fullmatch(r"vm[sd][A-Z]\w*", symbol):
        VmlBreakpoint(symbol, internal=True)
gdb.events.exited.connect(lambda event: open(OUT, "w").write(json.dumps(counts)))
gdb.execute("run")
'''


def stage_order() -> list[str]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def one_worker_copy(target: Path) -> None:
    """The project without its venv, git and mutmut folders; every `workers:` key in params.yaml set to 1."""
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(".venv", ".git", "mutants", ".dvc"))
    params = target / "params.yaml"
    params.write_text(re.sub(r"^(\s*workers:\s*)\d+", r"\g<1>1", params.read_text(), flags=re.M))


def audit(stage: str, project: Path, library: str) -> dict[str, int]:
    out = project / f"vml_{stage}.json"
    script = project / "vml_gdb.py"
    script.write_text(f"LIBRARY = {library!r}\nOUT = {str(out)!r}\n" + GDB_SCRIPT)
    proc = subprocess.run(["gdb", "-q", "-batch", "-x", str(script), "--args", sys.executable, "-m", f"stages.{stage}"],
                          cwd=project, capture_output=True, text=True)
    if not out.exists():
        sys.exit(f"{stage}: gdb wrote no counts (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="*", help="stage names (default: every stage of dvc.yaml, in order)")
    args = parser.parse_args()
    if shutil.which("gdb") is None:
        sys.exit("gdb is not installed (Debian: apt-get install gdb)")
    import torch  # only for where its library lies
    library = str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")
    reached = 0
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch) / "project"
        one_worker_copy(project)
        for stage in args.stages or stage_order():
            counts = audit(stage, project, library)
            reached += bool(counts)
            print(f"{stage}: " + ("no VML call" if not counts else
                                 ", ".join(f"{name} ×{n}" for name, n in sorted(counts.items()))), flush=True)
    print(f"{reached} stage(s) reached MKL's VML")
    sys.exit(1 if reached else 0)


if __name__ == "__main__":
    main()

"""`make mutants`: mutation testing of the code that chooses, gates and reports (mutmut, issue 20).

    python benchmarks/mutants.py [--minutes 17] [--workers 2] [--report-only]

What is mutated and which tests run is mutmut's config, pyproject.toml [tool.mutmut]. This script
1. starts from an empty mutants/ (mutmut's scratch copy; it would otherwise keep results across code changes);
2. runs `mutmut run` on `--workers` processes for the mutants of MUTANTS, and stops it (Ctrl-C, which mutmut
   handles) if it is still running after `--minutes`: what it has not reached is reported as "not checked";
3. prints, from mutmut's own verdict of each mutant, per module: mutants, killed, timeouts, survived, the kill
   rate (mutmut's score: killed + timeout over all mutants), and every surviving mutant (file:line,
   original → mutated). Equivalent mutants listed in ALLOWED are left out of the rate and the list.
Exit status 1 when a mutant survives or was not checked. mutmut's full log: mutants/mutmut.log.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = ROOT / "tests" / "mutants_allowed.txt"
# mutmut names a mutant <module>.x_<function>__mutmut_<n> (methods: <module>.xǁ<Class>ǁ<method>__mutmut_<n>).
# mutmut cannot restrict a file to some of its functions: of finetune.py, only `finetune` (the validation
# primary, the best epoch, early stopping) is run; its other mutants stay "not checked" and are not counted.
MUTANTS = ["recomb.evaluation.*", "recomb.metrics.*", "recomb.selection.*", "recomb.stats.*", "recomb.recombination.*",
           "recomb.training.finetune.x_finetune__mutmut_*"]


def allowed() -> dict[str, str]:
    """ALLOWED: `<mutant name> <why it is equivalent>` a line; `#` starts a comment line."""
    if not ALLOWED.exists():
        return {}
    lines = [line.split(None, 1) for line in ALLOWED.read_text().splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    bad = [" ".join(parts) for parts in lines if len(parts) < 2]
    if bad:
        sys.exit(f"{ALLOWED.name}: each line is a mutant's name and the reason it is equivalent: {bad[0]!r}")
    return {name: reason.strip() for name, reason in lines}


def run_mutmut(minutes: float, workers: int) -> None:
    """`mutmut run` in a fresh mutants/, its output to mutants/mutmut.log; a progress line a minute."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir()
    log_path = ROOT / "mutants" / "mutmut.log"
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(workers), *MUTANTS]
    start = time.monotonic()
    deadline = start + 60 * minutes
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None:
            try:
                proc.wait(timeout=max(1.0, min(60.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            progress = re.findall(r"\d+/\d+ +🎉.*?🧙 \d+", log_path.read_text(errors="replace"))  # mutmut's status line
            print(f"  {(time.monotonic() - start) / 60:4.1f} min: "
                  f"{progress[-1] if progress else 'generating mutants, running the tests once'}", flush=True)
            if time.monotonic() >= deadline:
                print(f"  time limit ({minutes:g} min): stopping mutmut", flush=True)
                os.killpg(proc.pid, signal.SIGINT)  # mutmut stops its workers and keeps every verdict so far
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    print(f"mutmut ran {(time.monotonic() - start) / 60:.1f} min (exit {proc.returncode}); log: {log_path}")
    if proc.returncode:  # e.g. a test failing without a mutant: mutmut's own words
        lines = [line for line in re.split(r"[\r\n]+", log_path.read_text(errors="replace")) if line.strip()]
        print("\n".join(lines[-20:]))


def where(path: str, mutant: str) -> tuple[int, str, str]:
    """(source line, original, mutated) of a mutant: the first difference between mutmut's copies of its function."""
    import difflib

    import libcst as cst
    from mutmut.mutation.diff_apply import read_functions_from_index
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    original, mutated = (cst.Module([f]).code.strip().splitlines() for f in read_functions_from_index(mutant, path))
    lead = next(i for i, line in enumerate(original) if line.lstrip().startswith(("@", "def ", "async def ")))
    tag, i1, i2, j1, j2 = next(op for op in difflib.SequenceMatcher(None, original, mutated).get_opcodes()
                               if op[0] != "equal")
    function, cls = orig_function_and_class_names_from_key(mutant)
    tree = ast.parse((ROOT / path).read_text())
    scope = next(n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls) if cls else tree.body
    node = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])  # the line of the copy's first `@`/`def`
    text = lambda lines: " ⏎ ".join(line.strip() for line in lines)  # noqa: E731
    return first + i1 - lead, text(original[i1:i2]), text(mutated[j1:j2]) or "(removed)"


def clip(before: str, after: str, room: int = 30) -> tuple[str, str]:
    """The part of a line a mutant changes, with `room` characters of context each side."""
    start = len(os.path.commonprefix([before, after]))
    end = len(os.path.commonprefix([before[start:][::-1], after[start:][::-1]]))  # common suffix
    low = max(0, start - room)

    def cut(text: str) -> str:
        high = min(len(text), len(text) - end + room)
        return ("…" if low else "") + text[low:high] + ("…" if high < len(text) else "")
    return cut(before), cut(after)


def report(equivalent: dict[str, str]) -> bool:
    """Per-module counts, the kill rate and the survivors, from mutants/**/*.py.meta; True when all were killed."""
    from mutmut.stats import status_by_exit_code  # mutmut's reading of its workers' exit codes

    os.chdir(ROOT)  # mutmut's helpers read mutants/ relative to the project root
    rows, survivors, seen = [], [], set()
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        path = str(meta.relative_to(ROOT / "mutants"))[:-len(".meta")]
        verdicts = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter()
        for mutant, code in sorted(verdicts.items(), key=lambda kv: (kv[0].split("__mutmut_")[0],
                                                                    int(kv[0].rsplit("_", 1)[1]))):
            if not any(fnmatch.fnmatch(mutant, pattern) for pattern in MUTANTS):
                continue
            seen.add(mutant)
            status = status_by_exit_code[code]
            if mutant in equivalent:
                counts["allowed"] += 1
                continue
            counts["mutants"] += 1
            counts[status] += 1
            if status not in ("killed", "timeout", "not checked"):  # not checked: mutmut was stopped first
                survivors.append((path, mutant, status))
        rows.append((path, counts))

    total = Counter()
    print(f"\n{'module':38s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} {'other':>5s} "
          f"{'allowed':>7s} {'rate':>6s}")
    for path, c in rows + [("all", None)]:
        c = total if c is None else c
        if c is not total:
            total.update(c)
        other = c["mutants"] - c["killed"] - c["timeout"] - c["survived"]
        rate = (c["killed"] + c["timeout"]) / c["mutants"] if c["mutants"] else 1.0
        print(f"{path:38s} {c['mutants']:7d} {c['killed']:6d} {c['timeout']:7d} {c['survived']:8d} {other:5d} "
              f"{c['allowed']:7d} {rate:6.1%}")
    print(f"\nkill rate {total['killed'] + total['timeout']}/{total['mutants']} = "
          f"{(total['killed'] + total['timeout']) / max(1, total['mutants']):.1%} (mutmut's verdicts; "
          f"excluded as equivalent in {ALLOWED.name}: {total['allowed']})")
    others = {s: n for s, n in total.items() if s not in ("mutants", "killed", "timeout", "survived", "allowed")}
    if others:
        print("other verdicts: " + ", ".join(f"{n} {s}" for s, n in sorted(others.items())))
    if total["not checked"]:
        print(f"INCOMPLETE: mutmut was stopped before it reached {total['not checked']} mutants (see --minutes)")
    stale = sorted(set(equivalent) - seen)
    if stale:
        print(f"{ALLOWED.name}: {len(stale)} entries name no mutant of this run (renumbered? remove them): "
              + ", ".join(stale))

    if survivors:
        print(f"\n{len(survivors)} mutants not killed (copy a name into {ALLOWED.name} with a reason only if equivalent):")
    for path, mutant, status in survivors:
        line, before, after = where(path, mutant)
        tag = "" if status == "survived" else f"  ({status})"
        print(f"{path}:{line}: {' → '.join(clip(before, after))}{tag}  [{mutant}]")
    return not survivors and not total["not checked"]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--minutes", type=float, default=17.0, help="stop mutmut after this long (default 17)")
    cli.add_argument("--workers", type=int, default=2, help="mutants tested at once (default 2)")
    cli.add_argument("--report-only", action="store_true", help="only print the report of the last run")
    args = cli.parse_args()
    equivalent = allowed()
    if not args.report_only:
        run_mutmut(args.minutes, args.workers)
    sys.exit(0 if report(equivalent) else 1)


if __name__ == "__main__":
    main()

"""The first-hour budgets of a checkout whose pipeline is built (`make run`): prints figures, asserts nothing.

    python benchmarks/first_hour.py

- no-op `dvc repro` (the lock up to date: every stage skipped), median of 5, beside `dvc --version` (DVC's
  start-up) and what parsing params.yaml costs DVC (it parses the whole file once per stage with params);
- `recomb ablation --dry-run`, median of 3 (it writes data/reports/latest/ablation_plan, not a DVC output).
`make test` prints its own time; the `search` stage's is `python benchmarks/search.py stage`.
Run it on a quiet machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wall(*cmd: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def params_parse_seconds() -> tuple[int, float]:
    """(stages that declare params, seconds DVC's YAML parser takes for params.yaml once)."""
    from dvc.utils.serialize._yaml import parse_yaml
    text = (ROOT / "params.yaml").read_text()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    start = time.perf_counter()
    for _ in range(20):
        parse_yaml(text, "params.yaml")
    return sum(bool(s.get("params")) for s in stages.values()), (time.perf_counter() - start) / 20


def main() -> None:
    status = subprocess.run([str(BIN / "dvc"), "status", "--quiet", "dvc.yaml"], cwd=ROOT)
    if status.returncode != 0:
        sys.exit("the pipeline is not up to date (dvc status): run `make run` first, so `dvc repro` is a no-op")
    noop = wall(str(BIN / "dvc"), "repro", runs=5)
    startup = wall(str(BIN / "dvc"), "--version", runs=5)
    with_params, parse = params_parse_seconds()
    dry_run = wall(str(BIN / "recomb"), "ablation", "--dry-run", runs=3)
    print(f"no-op dvc repro: median {statistics.median(noop):.2f} s (runs: {', '.join(f'{t:.2f}' for t in noop)})")
    print(f"  dvc --version (start-up): median {statistics.median(startup):.2f} s")
    print(f"  params.yaml parsed by DVC {with_params}× (once per stage with params), {1000 * parse:.1f} ms each: "
          f"{with_params * parse:.2f} s; one parse per run would save {(with_params - 1) * parse:.2f} s")
    print(f"recomb ablation --dry-run: median {statistics.median(dry_run):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in dry_run)})")


if __name__ == "__main__":
    main()

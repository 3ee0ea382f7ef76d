"""Regenerate the leaderboard's fixtures exp_show_rows.json and exp_show.csv with real DVC (not run by the tests).

    .venv/bin/python tests/data/make_exp_show.py [SCRATCH_DIR]     # default: a new directory under /tmp

Builds a scratch git + DVC repo whose one stage (`python make.py`) writes, for the recipe in
params.yaml, the recombination report of exp_show_reports.json (plus `n_heldout`) to
data/reports/recombination.json, and two other metrics files: data/reports/quantized.json shares
`n_heldout`, `passed` and `confidence` with it (so DVC prefixes those columns with their file) and
data/reports/search/summary.json has a top-level `children` count. A recipe with no report fails.
params.yaml also has a `selection` section, as the project's has.

Then: baseline commit `main` (aligned); `random-s1` and `layer-short` run in the workspace (no
executor, State None); `weighted-07`, `slerp-quantized` and `layer-long` (fails) run from the queue;
`still-queued` is left queued; `dvc exp apply weighted-07` makes the workspace a duplicate of it.
Finally it saves `json.dumps(dvc.api.exp_show())` as exp_show_rows.json and `dvc exp show --csv` as
exp_show.csv next to this file.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

MAKE = '''import json, sys, yaml
from pathlib import Path

params = yaml.safe_load(open("params.yaml"))
recipe = {**{k: params["crossover"][k] for k in ("parents", "mode", "alpha", "seed")},
          "regime": params["finetune"]["regime"]}
found = [e for e in json.load(open("reports.json")) if e["recipe"] == recipe]
if not found:
    sys.exit(f"no report for {recipe}")
Path("data/reports/search").mkdir(parents=True, exist_ok=True)
report = {**found[0]["report"], "n_heldout": 2000}
Path("data/reports/recombination.json").write_text(json.dumps(report, indent=1))
Path("data/reports/quantized.json").write_text(json.dumps(
    {"n_heldout": 2000, "passed": False, "confidence": 0.9, "students": {"primary": 0.97}}, indent=1))
Path("data/reports/search/summary.json").write_text(json.dumps(
    {"best": {"primary": 0.79}, "children": 6, "degenerate": 0, "tied_with_best": 1}, indent=1))
'''

PARAMS = {"crossover": {"parents": "students", "mode": "aligned", "alpha": 0.5, "seed": 0, "align_max_passes": 20},
          "finetune": {"regime": "tuned"}, "selection": {"val_fraction": 0.1, "seed": 0},
          "validate_recombination": {"parents_role": "parents"}}

DVC_YAML = {"stages": {"validate_recombination": {
    "cmd": "python make.py", "deps": ["make.py", "reports.json"],
    "params": ["crossover", "finetune.regime", "validate_recombination.parents_role"],
    "metrics": [{f"data/reports/{name}": {"cache": False}}
                for name in ("recombination.json", "quantized.json", "search/summary.json")]}}}


def recipe(parents="students", mode="aligned", alpha=0.5, seed=0, regime="tuned") -> list[str]:
    sets = {"crossover.parents": parents, "crossover.mode": mode, "crossover.alpha": alpha, "crossover.seed": seed,
            "finetune.regime": regime}
    return [arg for key, value in sets.items() for arg in ("-S", f"{key}={value}")]


def main(scratch: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def run(*cmd: str, check: bool = True) -> str:
        done = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
        if check and done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {done.stderr}")
        return done.stdout

    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "make.py").write_text(MAKE)
    (scratch / "reports.json").write_text((HERE / "exp_show_reports.json").read_text())
    (scratch / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (scratch / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    run("git", "init", "-q", "-b", "main")
    run("git", "config", "user.email", "fixture@example.com")
    run("git", "config", "user.name", "fixture")
    run("dvc", "init", "-q")
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run("dvc", "exp", "run", "-n", "random-s1", *recipe(mode="random", seed=1, regime="short"))
    run("dvc", "exp", "run", "-n", "layer-short", *recipe(mode="layer", regime="short"))
    run("dvc", "exp", "run", "--queue", "-n", "weighted-07", *recipe(mode="weighted", alpha=0.7))
    run("dvc", "exp", "run", "--queue", "-n", "slerp-quantized", *recipe(parents="quantized", mode="slerp", alpha=0.3))
    run("dvc", "exp", "run", "--queue", "-n", "layer-long", *recipe(mode="layer", regime="long"))
    run("dvc", "exp", "run", "--run-all", "-j", "1", check=False)  # layer-long fails
    run("dvc", "exp", "run", "--queue", "-n", "still-queued", *recipe(alpha=0.9))
    run("dvc", "exp", "apply", "weighted-07")
    rows = run(sys.executable, "-c", "import json, dvc.api; print(json.dumps(dvc.api.exp_show(), indent=1))")
    (HERE / "exp_show_rows.json").write_text(rows)
    (HERE / "exp_show.csv").write_text(run("dvc", "exp", "show", "--csv"))
    print(f"wrote {HERE / 'exp_show_rows.json'} and {HERE / 'exp_show.csv'} from {scratch}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="exp_show_", dir="/tmp")))

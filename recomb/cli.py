"""The `recomb` console command: `recomb leaderboard | check | timing | params`.

The subcommands work on a recomb project (its params.yaml, dvc.yaml and artifacts),
so they live beside the DVC entry points in the project's `stages/` package, which
is not installed: this command runs them from the project's root, in-process.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    root = Path.cwd()
    if not (root / "stages" / "cli.py").is_file():
        print(f"error: {root}: not a recomb project's root (no stages/cli.py); run recomb where dvc.yaml is",
              file=sys.stderr)
        sys.exit(1)
    sys.path.insert(0, str(root))
    importlib.import_module("stages.cli").main(argv)

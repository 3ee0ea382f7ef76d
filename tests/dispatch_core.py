"""Run the core of the pipeline (parents → distill → crossover → finetune, and analyze's PCA projection)
in one process in the current project directory, and print the sha256 of every file it wrote as JSON.
With `--vml-guard` the run happens under `recomb.portable.VmlGuard` and the JSON adds `vml_calls`: every
operator that reached MKL's VML (whose bits depend on the CPU).

`tests/test_dispatch.py` runs it under dispatch settings that differ between real machines.
"""

import recomb  # noqa: F401  (first: the dispatch pins must precede torch and numpy)

import hashlib
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from recomb.evaluation.analysis import projection
from recomb.portable import VmlGuard
from stages import crossover, distill, finetune, parents, paths
from stages.common import run


def content(path: Path) -> bytes:
    """The file's bytes; a sidecar's without the params that made it (they name the worker count)."""
    if path.suffix != ".json":
        return path.read_bytes()
    meta = json.loads(path.read_text())
    meta.pop("params", None)
    return json.dumps(meta, sort_keys=True).encode()


def main() -> None:
    guard = VmlGuard() if "--vml-guard" in sys.argv else None
    for stage in (parents, distill, crossover, finetune):
        with guard or nullcontext():
            run(stage.main)
    train = np.load(paths.STATES_TRAIN)  # written just now by `parents`
    coords, _ = projection(train, None)  # the PCA every non-CartPole task's analysis draws: numpy's SVD, OpenBLAS
    hashes = {str(p): hashlib.sha256(content(p)).hexdigest() for p in sorted(Path("data").rglob("*")) if p.is_file()}
    hashes["pca"] = hashlib.sha256(np.ascontiguousarray(coords).tobytes()).hexdigest()
    if guard:
        hashes["vml_calls"] = guard.calls
    print(json.dumps(hashes))


if __name__ == "__main__":
    main()

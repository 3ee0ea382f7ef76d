"""Stage `crossover`: one raw child from the chosen pair (parents, students, or their int8 versions)."""

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.recombination.crossover import CrossoverConfig, crossover
from recomb.errors import RecombError

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = CrossoverConfig.from_params(params, "crossover")
    pattern = paths.CROSSOVER_INPUTS[cfg.parents]
    a, b = (load_checkpoint(pattern.format(pair)) for pair in paths.PAIRS)
    if a.arch.shapes() != b.arch.shapes():
        raise RecombError(f"{b.path}: dims {b.arch.to_dict()} differ from {a.path}'s {a.arch.to_dict()}; "
                          "crossover needs two networks of one shape (the students share one: crossover.parents: "
                          "students)")
    states = torch.from_numpy(load_states(paths.STATES_TRAIN, a.arch.input_dim)) if cfg.needs_states else None
    child, info = crossover(a.float_model(), b.float_model(), cfg, states)
    out = Outputs()
    out.add_checkpoint(paths.CHILD_RAW, child, "child_raw",
                       {"params": cfg.to_dict(), "parent_a": str(a.path), "parent_b": str(b.path), "crossover": info})
    out.commit()
    log.info("child of %s and %s by %s crossover (alpha %.2f)", a.path, b.path, cfg.mode, cfg.alpha)


if __name__ == "__main__":
    run(main)

"""Stage `connectivity`: the interpolation barrier between the crossed pair, plain, aligned and REPAIRed."""

import time

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.recombination.connectivity import ConnectivityConfig, barrier_figure, connectivity, markdown
from recomb.recombination.crossover import CrossoverConfig
from recomb.stats import UncertaintyConfig
from recomb.training.tasks import of_parents

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = ConnectivityConfig.from_params(params, "connectivity")
    crossing = CrossoverConfig.from_params(params, "crossover")
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    a, b = (load_checkpoint(paths.CROSSOVER_INPUTS[crossing.parents].format(p)) for p in paths.PAIRS)
    b.expect_dims(a.arch.input_dim, a.arch.output_dim, str(a.path))
    teacher = load_checkpoint(paths.PARENTS.format("A"))
    train = torch.from_numpy(load_states(paths.STATES_TRAIN, a.arch.input_dim))
    heldout = load_states(paths.STATES_HELDOUT, a.arch.input_dim)
    started = time.perf_counter()
    summary = connectivity(a.float_model(), b.float_model(), train, heldout, of_parents(teacher.meta), cfg,
                           crossing.align_max_passes, unc)
    log.info("%d paths × %d α scored in %.2f s", len(summary["methods"]), len(cfg.alphas),
             time.perf_counter() - started)
    setup = (f"Pair: `{crossing.parents}` ({a.path}, {b.path}); α = {', '.join(f'{x:g}' for x in cfg.alphas)}; "
             f"matching and REPAIR statistics on the {len(train)} train states, figures on the {len(heldout)} "
             "held-out states" + (f" and {cfg.eval_episodes} fixed-seed episodes." if summary["episodes"] else "."))
    out = Outputs()
    out.add_json(paths.CONNECTIVITY_SUMMARY, summary)
    out.add_text(paths.CONNECTIVITY_MARKDOWN, markdown(summary, setup))
    out.add_figure(paths.CONNECTIVITY_PNG, barrier_figure(summary, f"Interpolation barrier between the "
                                                                   f"{crossing.parents} A and B"))
    out.commit()


if __name__ == "__main__":
    run(main)

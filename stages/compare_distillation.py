"""Stage `compare_distillation`: hard, blended, soft and the default objective, trained side by side."""

import time

import torch

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.stats import UncertaintyConfig
from recomb.training.distill import DistillConfig, initial_students
from recomb.evaluation.objectives import (CompareObjectivesConfig, curve_rows, curves_figure,
                                        mode_configs, objectives_markdown, score_modes, train_modes)

from . import paths
from .common import log, ret, run


def main(params: dict) -> None:
    cfg = CompareObjectivesConfig.from_params(params, "compare_distillation")
    base = DistillConfig.from_params(params, "distill")
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    parents = {pair: load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS}
    first = parents[paths.PAIRS[0]]
    for parent in parents.values():
        parent.expect_dims(first.arch.input_dim, first.arch.output_dim, str(first.path))
    train = torch.from_numpy(load_states(paths.STATES_TRAIN, first.arch.input_dim))
    heldout = load_states(paths.STATES_HELDOUT, first.arch.input_dim)
    seeds = [base.seed + i for i in range(len(parents))]
    students = initial_students([p.arch for p in parents.values()], base, seeds)
    teachers = {pair: parent.model for pair, parent in parents.items()}
    configs = mode_configs(base, cfg)

    start = time.perf_counter()
    results = train_modes(students, list(teachers.values()), train, configs, seeds, cfg.workers)
    log.info("trained %d modes × %d students in %.2f s", len(results), len(students), time.perf_counter() - start)
    summary = score_modes(teachers, results, configs, heldout, of_parents(first.meta), cfg, unc)
    for mode, entry in summary["modes"].items():
        for pair, f in entry["pairs"].items():
            log.info("%s %s: agreement %.4g [%.4g, %.4g], prob. similarity %.4g, centred cosine %.4g, "
                     "relative MSE (Q) %.4g, return %s", mode, pair, f["agreement"], f["agreement_low"],
                     f["agreement_high"], f["prob_similarity"], f["centered_cosine"], f["relative_mse"],
                     ret(f.get("greedy_return")))

    out = Outputs()
    out.add_json(paths.OBJECTIVES_SUMMARY, summary)
    out.add_text(paths.OBJECTIVES_MARKDOWN, objectives_markdown(summary))
    for mode, result in results.items():
        out.add_csv(paths.OBJECTIVES_CURVES.format(mode), curve_rows(result, paths.PAIRS))
    out.add_figure(paths.OBJECTIVES_PNG, curves_figure(results, paths.PAIRS))
    out.commit()


if __name__ == "__main__":
    run(main)

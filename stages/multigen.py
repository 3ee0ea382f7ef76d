"""Stage `multigen`: the search grid over generations, the best children promoted to parents."""

import torch

from recomb.artifacts import Outputs
from recomb.metrics import parents_reference
from recomb.recombination.multigen import MultigenConfig, evolve
from recomb.plots import learning_curves
from recomb.reports import multigen_markdown

from . import paths
from .common import log, ret, run
from .grid import GridInputs


def main(params: dict) -> None:
    cfg = MultigenConfig.validate(params)
    inputs = GridInputs(params)
    lineage, summary, best = evolve(inputs.points, inputs.finetune, inputs.pair, cfg, inputs.run, inputs.ranked)
    out = Outputs()
    out.add_json(paths.MULTIGEN_LINEAGE, {"params": cfg.to_dict(), "preset": inputs.search.preset,
                                          "scored_against": inputs.inputs["scored_against"], "children": lineage})
    for generation, child in best.items():
        out.add_checkpoint(paths.MULTIGEN_BEST.format(generation), child, "child",
                           {"generation": generation, "summary": summary[generation]})
    numbers = [{k: v for k, v in s.items() if not isinstance(v, str)} for s in summary]
    out.add_json(paths.MULTIGEN_SUMMARY, {"generations": numbers})
    out.add_text(paths.MULTIGEN_MARKDOWN, multigen_markdown(summary, cfg.selection_strategy,
                                                            inputs.scoring.uncertainty.confidence))
    panels = ["best_primary_over_bound"] + (["best_online_return"] if inputs.scoring.task else [])
    parents = parents_reference(inputs.scoring.role_a, inputs.scoring.role_b, torch.from_numpy(inputs.scoring.heldout))
    references = {"best_primary_over_bound": {"either parent (a / U)": parents["parents' agreement"] / parents["U"]},
                  "best_online_return": {"return bar": inputs.scoring.cfg.thresholds.min_child_return}}
    figure = learning_curves({"best child": summary}, "generation", panels,
                             f"Best child per generation vs the original parents "
                             f"({100 * inputs.scoring.uncertainty.confidence:g} % intervals)", references=references)
    for ax in figure.axes:
        ax.set_xticks([s["generation"] for s in summary])
    out.add_figure(paths.MULTIGEN_PNG, figure)
    out.commit()
    for s in summary:
        log.info("generation %d: best %s, held-out primary %.4f, primary/U %.4f, return %s", s["generation"],
                 s["best_child"], s["best_primary"], s["best_primary_over_bound"], ret(s["best_online_return"]))


if __name__ == "__main__":
    run(main)

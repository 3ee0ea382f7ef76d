"""Stage `multigen`: the search grid over generations, the best children promoted to parents."""

from recomb.artifacts import Outputs
from recomb.leaderboard import rank, row_from_report
from recomb.multigen import MultigenConfig, evolve
from recomb.plots import learning_curves
from recomb.reports import multigen_markdown
from recomb.search import crossover_config, run_grid

from . import paths
from .common import RuntimeConfig, log, run
from .grid import GridInputs


def main(params: dict) -> None:
    cfg = MultigenConfig.from_params(params, "multigen")
    inputs = GridInputs(params)
    threads = RuntimeConfig.from_params(params, "runtime").torch_threads

    def run_generation(points, pair, finetune_cfgs):
        return run_grid(points, pair, inputs.states, inputs.crossover, finetune_cfgs, inputs.quant, inputs.scoring,
                        inputs.search, threads)

    def ranked(points, outcomes):
        return rank([row_from_report(p.child_id, crossover_config(inputs.crossover, p.recipe).to_dict(), p.regime,
                                     outcomes[p.child_id].report) for p in points], inputs.search.degenerate_threshold)

    lineage, summary, best = evolve(inputs.points, inputs.finetune, inputs.pair, cfg, run_generation, ranked)
    out = Outputs()
    out.add_json(paths.MULTIGEN_LINEAGE, {"params": cfg.to_dict(), "preset": inputs.search.preset,
                                          "scored_against": inputs.inputs["scored_against"], "children": lineage})
    for generation, child in best.items():
        out.add_checkpoint(paths.MULTIGEN_BEST.format(generation), child, "child",
                           {"generation": generation, "summary": summary[generation]})
    out.add_json(paths.MULTIGEN_SUMMARY, {"generations": summary})
    out.add_text(paths.MULTIGEN_MARKDOWN, multigen_markdown(summary, cfg.selection_strategy))
    panels = ["best_primary_over_bound"] + (["best_online_return"] if inputs.scoring.env else [])
    out.add_figure(paths.MULTIGEN_PNG, learning_curves({"best child": summary}, "generation", panels,
                                                       "Best child per generation, against the original parents"))
    out.commit()
    for s in summary:
        log.info("generation %d: best %s, primary %.4f, primary/U %.4f, return %s", s["generation"], s["best_child"],
                 s["best_primary"], s["best_primary_over_bound"], s["best_online_return"])


if __name__ == "__main__":
    run(main)

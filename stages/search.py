"""Stage `search`: a preset crossover × fine-tune grid in one process, ranked into a leaderboard."""

import time

from recomb.artifacts import Outputs
from recomb.evaluation.leaderboard import baseline_rows, markdown, recommendation
from recomb.plots import children_scatter
from recomb.recombination.search import crossover_config, return_bar, score

from . import paths
from .common import log, ret, run
from .grid import GridInputs, add_child, reproduce_command


def main(params: dict) -> None:
    inputs = GridInputs(params)
    cfg, scoring = inputs.search, inputs.scoring
    started = time.perf_counter()
    outcomes = inputs.run(inputs.points, inputs.pair, inputs.finetune)
    log.info("%d children trained and scored in %.2f s (%s backend, %d workers)", len(outcomes),
             time.perf_counter() - started, cfg.backend, cfg.workers)

    rows = inputs.ranked(inputs.points, outcomes)
    roles = score({"parent_A": scoring.role_a, "parent_B": scoring.role_b}, scoring)  # the roles' own figures
    baselines = baseline_rows(roles["children"], roles["greedy_return_interval"], scoring.cfg.parents_role)
    out = Outputs()
    by_id = {row["experiment"]: row for row in rows}
    for point in inputs.points:
        add_child(out, point, outcomes[point.child_id], inputs, by_id[point.child_id])
    best = rows[0]
    chosen = next(p for p in inputs.points if p.child_id == best["experiment"])
    how = (f"Its checkpoint: {paths.SEARCH_CHILD.format(chosen.child_id)}. To make it the pipeline's child:\n"
           f"  {reproduce_command(crossover_config(inputs.crossover, chosen.recipe), chosen.regime)}\n"
           "then `dvc exp apply <that experiment>` (or set those keys in params.yaml and `dvc repro`).")
    confidence, min_return = scoring.uncertainty.confidence, return_bar(scoring)
    out.add_json(paths.SEARCH_LEADERBOARD,
                 {"rows": rows, "baselines": baselines, "confidence": confidence})
    out.add_text(f"{paths.SEARCH_REPORTS}/leaderboard.md", markdown(rows, baselines, min_return))
    out.add_text(f"{paths.SEARCH_REPORTS}/recommendation.txt",
                 recommendation(rows, baselines, how, min_return, confidence, paired=True))
    out.add_json(f"{paths.SEARCH_REPORTS}/summary.json", {
        "children": len(rows), "degenerate": sum(r["degenerate"] for r in rows),
        "tied_with_best": sum(r["tied"] for r in rows),
        "best": {k: best[k] for k in ("val_primary", "val_return", "primary", "primary_low", "primary_high",
                                      "primary_over_bound", "primary_over_bound_low", "primary_over_bound_high",
                                      "gain_over_copy", "gain_over_copy_low", "gain_over_copy_high", "agreement_a", "agreement_b", "online_return",
                                      "online_return_low", "online_return_high")}})
    out.add_figure(paths.SEARCH_PNG, children_scatter(rows, f"search preset {cfg.preset}: every child "
                                                            f"({100 * confidence:g} % intervals)", min_return))
    out.commit()
    log.info("best: %s, validation primary %.4f, held-out primary/U %.4f, return %s", best["experiment"],
             best["val_primary"], best["primary_over_bound"], ret(best["online_return"]))


if __name__ == "__main__":
    run(main)

"""Stage `search`: a preset crossover × fine-tune grid in one process, ranked into a leaderboard."""

import time

from recomb.artifacts import Outputs
from recomb.leaderboard import baseline_rows, markdown, recommendation, winner
from recomb.search import crossover_config, score

from . import paths
from .common import log, run
from .grid import GridInputs, add_child, reproduce_command


def main(params: dict) -> None:
    inputs = GridInputs(params)
    cfg = inputs.search
    started = time.perf_counter()
    outcomes = inputs.run(inputs.points, inputs.pair, inputs.finetune)
    log.info("%d children trained and scored in %.2f s (%s backend, %d workers)", len(outcomes),
             time.perf_counter() - started, cfg.backend, cfg.workers)

    rows = inputs.ranked(inputs.points, outcomes)
    roles = {"parent_A": inputs.scoring.role_a, "parent_B": inputs.scoring.role_b}
    baselines = baseline_rows(score(roles, inputs.scoring))  # the scoring roles' own agreement and returns
    out = Outputs()
    by_id = {row["experiment"]: row for row in rows}
    for point in inputs.points:
        add_child(out, point, outcomes[point.child_id], inputs, by_id[point.child_id])
    min_return = inputs.scoring.cfg.thresholds.min_child_return
    chosen = next(p for p in inputs.points if p.child_id == winner(rows, min_return)["experiment"])
    how = (f"Its checkpoint: {paths.SEARCH_CHILD.format(chosen.child_id)}. To make it the pipeline's child:\n"
           f"  {reproduce_command(crossover_config(inputs.crossover, chosen.recipe), chosen.regime)}\n"
           "then `dvc exp apply <that experiment>` (or set those keys in params.yaml and `dvc repro`).")
    out.add_json(f"{paths.SEARCH_REPORTS}/leaderboard.json", {"rows": rows, "baselines": baselines})
    out.add_text(f"{paths.SEARCH_REPORTS}/leaderboard.md", markdown(rows, baselines))
    out.add_text(f"{paths.SEARCH_REPORTS}/recommendation.txt", recommendation(rows, baselines, how, min_return))
    best = rows[0]
    out.add_json(f"{paths.SEARCH_REPORTS}/summary.json", {
        "preset": cfg.preset, "children": len(rows), "degenerate": sum(r["degenerate"] for r in rows),
        "best": {k: best[k] for k in ("experiment", "primary", "agreement_a", "agreement_b", "primary_over_bound",
                                      "online_return")}})
    out.commit()
    log.info("best: %s, primary %.4f, primary/U %.4f, return %s", best["experiment"], best["primary"],
             best["primary_over_bound"], best["online_return"])


if __name__ == "__main__":
    run(main)

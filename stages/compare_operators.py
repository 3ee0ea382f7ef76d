"""Stage `compare_operators`: every crossover operator on the pipeline's pair, raw and after the fine-tune regime."""

import time

from recomb.artifacts import Outputs
from recomb.recombination.operators import OperatorsConfig, compare, recipes
from recomb.recombination.search import GridPoint
from recomb.training.finetune import finetune_config

from . import paths
from .common import log, ret, run
from .grid import GridInputs


def main(params: dict) -> None:
    cfg = OperatorsConfig.from_params(params, "compare_operators")
    regime = finetune_config(params)
    inputs = GridInputs(params)
    base = inputs.crossover
    points = [GridPoint(r.label, r, regime.regime) for r in recipes(cfg.seeds, base.alpha)]
    started = time.perf_counter()
    outcomes = inputs.run(points, inputs.pair, {regime.regime: regime})
    log.info("%d children fine-tuned (regime %s) and scored in %.2f s", len(points), regime.regime,
             time.perf_counter() - started)
    result = compare(points, inputs.pair, base, inputs.ranked(points, outcomes), inputs.scoring)

    setup = (f"Pair crossed: `{base.parents}` ({', '.join(inputs.inputs['crossed'])}), alpha {base.alpha:g} "
             f"(`layer` reads none), `random` with seeds {', '.join(map(str, cfg.seeds))}; scored against "
             f"`{inputs.scoring.cfg.parents_role}`; every child fine-tuned with regime `{regime.regime}` as the "
             "search stage fine-tunes it.")
    out = Outputs()
    out.add_json(paths.OPERATORS_SUMMARY, result.summary())
    out.add_text(paths.OPERATORS_MARKDOWN, result.markdown(setup))
    out.add_figure(paths.OPERATORS_PNG, result.figure(
        f"Every crossover operator on the {base.parents}\nraw child and fine-tuned (regime {regime.regime}), "
        f"{100 * result.confidence:g} % intervals"))
    out.commit()
    tuned = result.tuned_by_id
    for cid, raw in result.raw.items():
        log.info("%s: raw primary/U %.4f, return %s → fine-tuned primary/U %.4f, return %s (rank %d)", cid,
                 raw["primary_over_bound"], ret(raw["online_return"]), tuned[cid]["primary_over_bound"],
                 ret(tuned[cid]["online_return"]), tuned[cid]["rank"])


if __name__ == "__main__":
    run(main)

"""Stage `baseline`: a DQN from scratch on both parents' variants, with the environment steps the parents and
their state buffer cost; the compute-matched bar a recombined child must beat."""

from recomb.artifacts import Outputs, load_checkpoint
from recomb.training.baseline import BaselineConfig, budget_steps, matched_parts, mixture, train_baseline
from recomb.training.parents import ParentsConfig

from . import paths
from .common import log, progress, run


def main(params: dict) -> None:
    cfg = BaselineConfig.from_params(params, "baseline")
    parents = ParentsConfig.from_params(params, "parents")
    if parents.source != "dqn":  # nothing to match: say so, and let the pipeline go on
        out = Outputs()
        out.add_json(paths.BASELINE_SKIPPED, {"reason": f"parents.source is {parents.source}: no environment steps "
                                                        "to match (the baseline needs DQN parents)"})
        out.add_csv(paths.BASELINE_CURVE, [], empty_header=["step", "mean_return"])
        out.commit()
        log.info("baseline: not trained (parents.source %s has no environment steps to match)", parents.source)
        return
    metrics = {pair: load_checkpoint(paths.PARENTS.format(pair)).meta.get("metrics") for pair in paths.PAIRS}
    parts = matched_parts(metrics, parents.dqn.buffer.n_states)
    steps, mode = budget_steps(cfg, parts), "matched" if cfg.budget == "matched" else "fixed"
    with progress(steps, "baseline, env steps") as bar:
        result = train_baseline(cfg, parents, steps, lambda row: bar.update(row["step"] - bar.n))
    passed = result.best_return >= parents.preset.pass_return
    meta = {"source": "dqn", "env": parents.env, "seed": cfg.seed, "budget": steps, "budget_mode": mode,
            "matched_parts": parts, "variants": [dict(s) for s in mixture(parents)], "env_steps": result.env_steps,
            "best_return": result.best_return, "best_step": result.best_step, "pass_return_reached": passed,
            "params": {"baseline": cfg.to_dict(), "parents": parents.provenance()}, "history": result.history}
    out = Outputs()
    out.add_checkpoint(paths.BASELINE, result.network, "baseline", meta)
    out.add_csv(paths.BASELINE_CURVE, result.history, empty_header=["step", "mean_return"])
    out.commit()
    log.info("baseline: %d env steps (budget %d: %s), best return %.1f at step %d (pass_return %g %s)",
             result.env_steps, steps, mode, result.best_return,
             result.best_step, parents.preset.pass_return, "reached" if passed else "missed")


if __name__ == "__main__":
    run(main)

"""Stage `parents`: two parent Q-networks and the shared train/heldout state buffer."""

from recomb.artifacts import Outputs
from recomb.parents import ParentsConfig, make_parents

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = ParentsConfig.from_params(params, "parents")
    result = make_parents(cfg)
    out = Outputs()
    for pair, model, summary, history in zip(paths.PAIRS, result.parents, result.summaries, result.histories):
        meta = {"source": cfg.source, "env": result.env, "params": cfg.to_dict(), "metrics": summary, "history": history}
        out.add_checkpoint(paths.PARENTS.format(pair), model, f"parent_{pair}", meta)
        out.add_csv(paths.PARENT_CURVES.format(pair), history, empty_header=["step", "mean_return"])
        log.info("parent %s: %s", pair, ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()))
    out.add_states(paths.STATES_TRAIN, result.train)
    out.add_states(paths.STATES_HELDOUT, result.heldout)
    out.commit()
    log.info("states: %d train, %d heldout", len(result.train), len(result.heldout))


if __name__ == "__main__":
    run(main)

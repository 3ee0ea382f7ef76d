"""Stage `parents`: two parent Q-networks and the shared train/heldout state buffer."""

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.training.parents import ImportedFiles, ParentsConfig, make_parents
from recomb.plots import learning_curves

from . import paths
from .common import WorkerBars, log, run


def imported_files(cfg: ParentsConfig) -> ImportedFiles | None:
    """What the `inputs` stage imported for the files source."""
    if cfg.source != "files":
        return None
    parents = [load_checkpoint(paths.IMPORTED_PARENTS.format(pair)) for pair in paths.PAIRS]
    return ImportedFiles(parents, load_states(paths.IMPORTED_STATES, parents[0].arch.input_dim)
                         if cfg.files.states else None)


def main(params: dict) -> None:
    cfg = ParentsConfig.from_params(params, "parents")
    result = make_parents(cfg, imported_files(cfg), WorkerBars())
    out = Outputs()
    for pair, model, summary, history, variant in zip(paths.PAIRS, result.parents, result.summaries,
                                                      result.histories, result.variants):
        meta = {"source": cfg.source, "env": result.env, "variant": dict(variant), "params": cfg.provenance(),
                "metrics": summary, "history": history}
        out.add_checkpoint(paths.PARENTS.format(pair), model, f"parent_{pair}", meta)
        out.add_csv(paths.PARENT_CURVES.format(pair), history, empty_header=["step", "mean_return"])
        log.info("parent %s: %s", pair, ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()))
    trained = cfg.source == "dqn"
    out.add_figure(paths.PARENT_PNG, learning_curves(
        dict(zip(paths.PAIRS, result.histories)), "step", ["mean_return"],
        f"DQN parents on {cfg.env}: greedy return over the evaluation episodes" if trained
        else f"parents from source {cfg.source}: no training curve",
        kept={pair: s["best_step"] for pair, s in zip(paths.PAIRS, result.summaries)} if trained else None,
        references={"mean_return": {"pass bar": cfg.preset.pass_return}} if trained else None))
    buffer = result.buffer
    out.add_states(paths.STATES_TRAIN, buffer.train)
    out.add_states(paths.STATES_HELDOUT, buffer.heldout)
    out.add_labels(paths.STATES_CONDITION.format("train"), buffer.train_condition)
    out.add_labels(paths.STATES_CONDITION.format("heldout"), buffer.heldout_condition)
    out.add_json(paths.STATES_CONDITIONS, buffer.competence.to_json())
    out.commit()
    log.info("states: %d train, %d heldout, from %s", len(buffer.train), len(buffer.heldout),
             ", ".join(buffer.competence.names))


if __name__ == "__main__":
    run(main)

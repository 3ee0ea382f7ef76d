"""Stage `distill`: a smaller student for each parent, trained on the train states."""

import time

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.training.distill import DistillConfig, distill, initial_students
from recomb.plots import learning_curves

from . import paths
from .common import log, progress, run


def main(params: dict) -> None:
    cfg = DistillConfig.from_params(params, "distill")
    parents = [load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS]
    states = load_states(paths.STATES_TRAIN, parents[0].arch.input_dim)
    parents[1].expect_dims(parents[0].arch.input_dim, parents[0].arch.output_dim, str(parents[0].path))
    seeds = [cfg.seed + i for i in range(len(parents))]
    students = initial_students([p.arch for p in parents], cfg, seeds)
    start = time.perf_counter()
    with progress(cfg.epochs, "distill") as bar:
        def on_epoch(epoch: int, rows: list[dict]) -> None:
            bar.update()
            bar.set_postfix(agreement=" ".join(f"{r['val_agreement']:.3f}" for r in rows))
        result = distill(students, [p.model for p in parents], torch.from_numpy(states), cfg, seeds, on_epoch)
    training_seconds = time.perf_counter() - start

    out = Outputs()
    for member, (pair, student, seed) in enumerate(zip(paths.PAIRS, result.students, seeds)):
        history, best = result.histories[member], result.best_row(member)
        meta = {"params": cfg.to_dict(), "teacher": paths.PARENTS.format(pair), "seed": seed,
                "best_epoch": best["epoch"], "metrics": best, "history": history}
        out.add_checkpoint(paths.STUDENTS.format(pair), student, f"student_{pair}", meta)
        out.add_csv(paths.DISTILL_CURVES.format(pair), history)
        log.info("student %s: best epoch %d, val agreement %.4f", pair, best["epoch"], best["val_agreement"])
    fig = learning_curves(dict(zip(paths.PAIRS, result.histories)), "epoch",
                          ["train_loss", "val_loss", "val_agreement", "val_prob_similarity"], "Distillation",
                          kept={pair: result.best_row(m)["epoch"] for m, pair in enumerate(paths.PAIRS)})
    out.add_figure(paths.DISTILL_PNG, fig)
    out.commit()
    log.info("distilled %d students in %.2f s", len(students), training_seconds)


if __name__ == "__main__":
    run(main)

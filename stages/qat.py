"""Stage `qat`: quantization-aware training of both students, then conversion to int8."""

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.plots import learning_curves
from recomb.quantization.quantize import PTQConfig, ptq
from recomb.training.qat import QATConfig, qat

from . import paths
from .common import log, progress, run


def main(params: dict) -> None:
    cfg = QATConfig.from_params(params, "qat")
    backend = PTQConfig.from_params(params, "ptq").backend  # kernels the int8 students run with
    teachers = [load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS]
    students = [load_checkpoint(paths.STUDENTS.format(pair)) for pair in paths.PAIRS]
    states = load_states(paths.STATES_TRAIN, teachers[0].arch.input_dim)
    for teacher, student in zip(teachers, students):
        student.expect_dims(teacher.arch.input_dim, teacher.arch.output_dim, str(teacher.path))
    seeds = [cfg.seed + i for i in range(len(students))]
    with progress(cfg.epochs, "qat") as bar:
        result = qat([s.float_model() for s in students], [t.model for t in teachers], torch.from_numpy(states),
                     cfg, seeds, lambda epoch, rows: bar.update())

    out = Outputs()
    for member, (pair, trained, seed) in enumerate(zip(paths.PAIRS, result.students, seeds)):
        history, best = result.histories[member], result.best_row(member)
        meta = {"params": cfg.to_dict(), "source": paths.STUDENTS.format(pair), "teacher": paths.PARENTS.format(pair),
                "seed": seed, "best_epoch": best["epoch"], "metrics": best, "history": history}
        out.add_checkpoint(paths.QAT_FLOAT.format(pair), trained, f"student_{pair}_qat", meta)
        if cfg.convert:
            summary = {k: v for k, v in meta.items() if k != "history"}  # the curve lives with the float checkpoint
            out.add_checkpoint(paths.QAT_INT8.format(pair), ptq(trained, "dynamic", backend=backend),
                               f"student_{pair}_qat_int8", {**summary, "source": paths.QAT_FLOAT.format(pair)})
        out.add_csv(paths.QAT_CURVES.format(pair), history)
        log.info("student %s: QAT best epoch %d, val agreement %.4f", pair, best["epoch"], best["val_agreement"])
    fig = learning_curves(dict(zip(paths.PAIRS, result.histories)), "epoch",
                          ["train_loss", "val_loss", "val_agreement", "val_prob_similarity"], "QAT",
                          kept={pair: result.best_row(m)["epoch"] for m, pair in enumerate(paths.PAIRS)})
    out.add_figure(paths.QAT_PNG, fig)
    out.commit()


if __name__ == "__main__":
    run(main)

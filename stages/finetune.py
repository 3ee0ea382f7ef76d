"""Stage `finetune`: train the raw child against both parents; int8 child when quantization-aware."""

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.training.finetune import finetune, finetune_config, int8_child
from recomb.plots import learning_curves
from recomb.quantization.quantize import PTQConfig
from recomb.selection import SelectionConfig, split
from recomb.metrics import parents_reference

from . import paths
from .common import log, progress, run
from .teaching import competent_sides


def main(params: dict) -> None:
    cfg = finetune_config(params)
    quant = PTQConfig.from_params(params, "ptq")  # backend and calibration of an int8 child
    teachers = [load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS]
    raw = load_checkpoint(paths.CHILD_RAW)
    train = torch.from_numpy(load_states(paths.STATES_TRAIN, teachers[0].arch.input_dim))
    states, validation = split(train, SelectionConfig.from_params(params, "selection"))
    for checkpoint in (teachers[1], raw):
        checkpoint.expect_dims(teachers[0].arch.input_dim, teachers[0].arch.output_dim, str(teachers[0].path))
    with progress(cfg.epochs, "finetune") as bar:
        [result] = finetune([raw.float_model()], teachers[0].model, teachers[1].model, states, validation, cfg,
                            lambda epoch: bar.update(), competent_sides(params, cfg.teacher_mode, len(train)))

    best = result.history[result.best_epoch]
    meta = {"params": cfg.to_dict(), "source": paths.CHILD_RAW, "teachers": [str(t.path) for t in teachers],
            "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, "balance": result.balance,
            "metrics": best, "history": result.history}
    out = Outputs()
    out.add_checkpoint(paths.CHILD, result.child, "child", meta)
    if cfg.quantization_applied != "none":
        summary = {k: v for k, v in meta.items() if k != "history"}
        out.add_checkpoint(paths.CHILD_INT8, int8_child(result.child, states, cfg, quant), "child_int8",
                           {**summary, "source": paths.CHILD})
    out.add_csv(paths.FINETUNE_CURVES, result.history)
    fig = learning_curves({"child": result.history}, "epoch",
                          ["val_loss", "val_agreement_a", "val_agreement_b", "val_primary"],
                          "Fine-tuning, scored on the validation split of the train states",
                          kept={"child": result.best_epoch},
                          references={"val_primary": parents_reference(teachers[0].model, teachers[1].model,
                                                                       validation)})
    out.add_figure(paths.FINETUNE_PNG, fig)
    out.commit()
    log.info("child: best epoch %d of %d, validation agreement A %.4f / B %.4f (primary %.4f)%s", result.best_epoch,
             len(result.history) - 1, best["val_agreement_a"], best["val_agreement_b"], best["val_primary"],
             f", {result.balance['disagreements_to_a']:.0%} of the parents' disagreements sided with A"
             if "disagreements_to_a" in result.balance else "")


if __name__ == "__main__":
    run(main)

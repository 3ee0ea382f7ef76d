"""Stage `ptq`: post-training int8 quantization of both students (dynamic or static)."""

import torch

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.quantization.quantize import PTQConfig, calibration_batches, ptq

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = PTQConfig.from_params(params, "ptq")
    students = [load_checkpoint(paths.STUDENTS.format(pair)) for pair in paths.PAIRS]
    calibration = None
    if cfg.mode == "static":
        states = torch.from_numpy(load_states(paths.STATES_TRAIN, students[0].arch.input_dim))
        calibration = calibration_batches(states, cfg.calibration_batches, cfg.calibration_batch_size,
                                          cfg.calibration_seed)
    out = Outputs()
    for pair, student in zip(paths.PAIRS, students):
        if calibration is not None:
            student.expect_dims(calibration[0].shape[1], students[0].arch.output_dim, paths.STATES_TRAIN)
        int8 = ptq(student.float_model(), cfg.mode, calibration, cfg.backend)
        meta = {"params": cfg.to_dict(), "source": str(student.path),
                "calibration_states": sum(len(b) for b in calibration) if calibration else 0}
        out.add_checkpoint(paths.PTQ_INT8.format(pair), int8, f"student_{pair}_int8", meta)
        log.info("student %s: int8 %s", pair, cfg.mode)
    out.commit()


if __name__ == "__main__":
    run(main)

"""Stage `validate_quantized`: each int8 student (PTQ, and QAT when converted) against its
float student and teacher on held-out states, online, and for size (speed: `recomb timing`)."""

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states, stored_bytes
from recomb.quantization.int8 import tensor_bytes
from recomb.training.qat import QATConfig
from recomb.reports import quantized_markdown
from recomb.evaluation.validation import ValidateQuantizedConfig, greedy_return, validate_quantized

from . import paths
from .common import log, run, warn_failed

DEFINITIONS = ("'float' is the distilled float student (for QAT rows too: the network QAT started from); "
               "relative_q_error = mean |Q_int8 − Q_float| / std of the float student's Q over states and actions "
               "(reported, not gated); advantage_relative_mse = MSE of the advantages (Q minus its per-state mean) "
               "/ their variance in the float student; centered_cosine = cosine of the advantages; "
               "KL(float ‖ int8) on softmax(Q / T).")


def main(params: dict) -> None:
    cfg = ValidateQuantizedConfig.validate(params)
    int8_paths = paths.int8_students(QATConfig.from_params(params, "qat").convert)
    quality = {"students": {}}
    heldout = None
    modes = {}
    for pair in paths.PAIRS:
        teacher = load_checkpoint(paths.PARENTS.format(pair))
        student = load_checkpoint(paths.STUDENTS.format(pair))
        heldout = load_states(paths.STATES_HELDOUT, teacher.arch.input_dim) if heldout is None else heldout
        student.expect_dims(heldout.shape[1], teacher.arch.output_dim, str(teacher.path))
        task = of_parents(teacher.meta)
        float_return = greedy_return(student.model, task, cfg)
        for method, pattern in int8_paths.items():
            int8 = load_checkpoint(pattern.format(pair))
            int8.expect_dims(heldout.shape[1], teacher.arch.output_dim, str(teacher.path))
            report = validate_quantized(teacher.model, student.model, int8.model, heldout, task, cfg, float_return,
                                        gate_return=cfg.gates_return_of(method))
            on_disk = {"float": stored_bytes(student.path), "int8": stored_bytes(int8.path)}
            report["size_bytes"] = {
                "tensors": {"float": tensor_bytes(student.model), "int8": tensor_bytes(int8.model)},
                "file": {who: sizes["tensors_file"] for who, sizes in on_disk.items()},
                "file_with_sidecar": {who: sum(sizes.values()) for who, sizes in on_disk.items()},
            }
            name = f"{method}_{pair}"
            modes[name] = int8.model.mode
            quality["students"][name] = report
            log.info("%s: int8/float agreement %.4f, teacher agreement %.4f", name,
                     report["int8_vs_float"]["action_agreement"], report["teacher_agreement"]["int8"])
            warn_failed(f"quantized {name}", report["checks"])
    quality["n_heldout"] = len(heldout)
    quality["passed"] = all(r["passed"] for r in quality["students"].values())
    out = Outputs()
    out.add_json(paths.QUANT_REPORT, quality)
    gated = {"both": "every int8 student's greedy return",
             "ptq": "the PTQ students' greedy return (the QAT students': reported, not gated)",
             "qat": "the QAT students' greedy return (the PTQ students': reported, not gated)"}[cfg.return_gated]
    definitions = f"{DEFINITIONS} The return bar gates {gated} (validate_quantized.return_gated)."
    out.add_text(paths.QUANT_MARKDOWN, quantized_markdown(quality, definitions, modes))
    out.commit()


if __name__ == "__main__":
    run(main)

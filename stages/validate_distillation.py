"""Stage `validate_distillation`: each student against its teacher on held-out states and online."""

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.reports import distillation_markdown
from recomb.validation import ValidateDistillConfig, all_passed, latency_report, validate_student

from . import paths
from .common import log, run, warn_failed


def main(params: dict) -> None:
    cfg = ValidateDistillConfig.from_params(params, "validate_distillation")
    quality = {"pairs": {}}
    timing = {"pairs": {}}
    teachers = {pair: load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS}
    heldout = load_states(paths.STATES_HELDOUT, teachers["A"].arch.input_dim)
    for pair, teacher in teachers.items():
        teacher.expect_dims(heldout.shape[1], teachers["A"].arch.output_dim, str(teachers["A"].path))
        student = load_checkpoint(paths.STUDENTS.format(pair))
        student.expect_dims(teacher.arch.input_dim, teacher.arch.output_dim, str(teacher.path))
        quality["pairs"][pair] = validate_student(teacher.model, student.model, heldout, teacher.meta.get("env"), cfg)
        latency = latency_report(teacher.model, student.model, heldout, cfg.latency_repeats,
                                 cfg.thresholds.max_latency_ratio)
        timing["pairs"][pair] = {**latency, "passed": all_passed(latency["checks"])}
        log.info("pair %s: agreement %.4f, quality %s, latency ratio %.2f", pair,
                 quality["pairs"][pair]["fidelity"]["action_agreement"],
                 "passed" if quality["pairs"][pair]["passed"] else "FAILED",
                 latency["checks"]["latency_ratio"]["value"])
        warn_failed(f"distillation pair {pair}", {**quality["pairs"][pair]["checks"], **latency["checks"]})
    quality["n_heldout"] = len(heldout)
    quality["passed"] = all(r["passed"] for r in quality["pairs"].values())
    timing["passed"] = all(r["passed"] for r in timing["pairs"].values())
    out = Outputs()
    out.add_json(paths.DISTILL_REPORT, quality)
    out.add_json(paths.DISTILL_TIMING, timing)
    out.add_text(paths.DISTILL_MARKDOWN, distillation_markdown(quality, timing, f"KL(teacher ‖ student) on softmax(Q / {cfg.kl_temperature:g})"))
    out.commit()


if __name__ == "__main__":
    run(main)

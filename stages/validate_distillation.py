"""Stage `validate_distillation`: each student against its teacher on held-out states and online."""

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.reports import distillation_markdown
from recomb.evaluation.validation import ValidateDistillConfig, validate_student

from . import paths
from .common import log, run, warn_failed


def main(params: dict) -> None:
    cfg = ValidateDistillConfig.from_params(params, "validate_distillation")
    quality = {"pairs": {}}
    teachers = {pair: load_checkpoint(paths.PARENTS.format(pair)) for pair in paths.PAIRS}
    heldout = load_states(paths.STATES_HELDOUT, teachers["A"].arch.input_dim)
    for pair, teacher in teachers.items():
        teacher.expect_dims(heldout.shape[1], teachers["A"].arch.output_dim, str(teachers["A"].path))
        student = load_checkpoint(paths.STUDENTS.format(pair))
        student.expect_dims(teacher.arch.input_dim, teacher.arch.output_dim, str(teacher.path))
        report = quality["pairs"][pair] = validate_student(teacher.model, student.model, heldout,
                                                           of_parents(teacher.meta), cfg)
        log.info("pair %s: agreement %.4f, %s", pair, report["fidelity"]["action_agreement"],
                 "passed" if report["passed"] else "FAILED")
        warn_failed(f"distillation pair {pair}", report["checks"])
    quality["n_heldout"] = len(heldout)
    quality["passed"] = all(r["passed"] for r in quality["pairs"].values())
    out = Outputs()
    out.add_json(paths.DISTILL_REPORT, quality)
    out.add_text(paths.DISTILL_MARKDOWN,
                 distillation_markdown(quality, f"KL(teacher ‖ student) on softmax(Q / {cfg.kl_temperature:g})"))
    out.commit()


if __name__ == "__main__":
    run(main)

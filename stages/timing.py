"""`recomb timing` (or `python -m stages.timing`): this machine's latencies, on request, never hashed.

Wall-clock figures vary from run to run, so they are no stage's output: `dvc.lock`
stays reproducible, and a fresh clone gets them by running this (`make run` does).
Each student against its teacher and each int8 student against its float student,
with the latency gates of `validate_distillation` and `validate_quantized`; and the
time of one crossover per operator on the pipeline's pair (`compare_operators`).
"""

import resource

import torch

from recomb.reproducibility import fingerprint

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.training.qat import QATConfig
from recomb.recombination.crossover import CrossoverConfig
from recomb.recombination.operators import OperatorsConfig, time_operators
from recomb.reports import timing_markdown
from recomb.evaluation.validation import (ValidateDistillConfig, ValidateQuantizedConfig, all_passed, latency_report,
                               quantized_timing)

from . import paths
from .common import log, run, warn_failed


def main(params: dict) -> None:
    distill = ValidateDistillConfig.from_params(params, "validate_distillation")
    quant = ValidateQuantizedConfig.from_params(params, "validate_quantized")
    crossing = CrossoverConfig.from_params(params, "crossover")
    operators = OperatorsConfig.from_params(params, "compare_operators")
    int8_paths = paths.int8_students(QATConfig.from_params(params, "qat").convert)
    timing = {"distillation": {}, "quantization": {}}
    heldout = None
    for pair in paths.PAIRS:
        teacher = load_checkpoint(paths.PARENTS.format(pair))
        student = load_checkpoint(paths.STUDENTS.format(pair))
        heldout = load_states(paths.STATES_HELDOUT, teacher.arch.input_dim) if heldout is None else heldout
        student.expect_dims(heldout.shape[1], teacher.arch.output_dim, str(teacher.path))
        latency = latency_report(teacher.model, student.model, heldout, distill.latency_repeats,
                                 distill.thresholds.max_latency_ratio)
        timing["distillation"][pair] = latency
        warn_failed(f"timing, student {pair}", latency["checks"])
        for method, pattern in int8_paths.items():
            int8 = load_checkpoint(pattern.format(pair))
            int8.expect_dims(heldout.shape[1], teacher.arch.output_dim, str(teacher.path))
            speed = timing["quantization"][f"{method}_{pair}"] = quantized_timing(student.model, int8.model,
                                                                                 heldout, quant)
            warn_failed(f"timing, {method}_{pair}", speed["checks"])
            log.info("%s_%s: batch-1 latency int8 / float %.2f", method, pair,
                     speed["checks"]["latency_ratio"]["value"])
    gates = [latency["checks"] for latency in timing["distillation"].values()]
    gates += [speed["checks"] for speed in timing["quantization"].values()]
    timing["passed"] = all(all_passed(checks) for checks in gates)
    a, b = (load_checkpoint(paths.CROSSOVER_INPUTS[crossing.parents].format(p)).float_model() for p in paths.PAIRS)
    train = torch.from_numpy(load_states(paths.STATES_TRAIN, a.arch.input_dim))
    timing["operators"] = {"repeats": operators.repeats, "per_crossover_ms": time_operators(
        a, b, crossing, operators.seeds[0], operators.repeats, train)}
    log.info("crossover of %s, median ms: %s", crossing.parents, ", ".join(
        f"{mode} {t['median_ms']:.4g}" for mode, t in timing["operators"]["per_crossover_ms"].items()))
    timing["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Outputs()
    out.add_json(paths.TIMING_REPORT, timing)
    out.add_text(paths.TIMING_MARKDOWN, timing_markdown(timing))
    out.add_json(paths.MACHINE_REPORT, fingerprint())  # the machine these figures are from
    out.commit()
    log.info("timing %s: %s", "passed" if timing["passed"] else "FAILED", paths.TIMING_MARKDOWN)


if __name__ == "__main__":
    run(main)

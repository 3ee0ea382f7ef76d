"""Stage `report`: every gate of every hashed report in one verdict, data/reports/pipeline.json (+ .md).

It exits 0 when a gate failed: the verdict is in the file, and `recomb check` is what fails CI.
The timing reports stay out: wall-clock figures are not stage outputs and do not gate.
"""

from recomb.artifacts import Outputs, read_json
from recomb.evaluation.validation import ValidateRecombConfig, grid_checks
from recomb.evaluation.verdict import check_lines, lookup, markdown, nest, numbers_only, short_headline, verdict

from . import paths
from .common import log, run

# Every hashed report (the deps in dvc.yaml), by the dotted name its gates start with; the first part is the area.
REPORTS = {
    "distillation": paths.DISTILL_REPORT,
    "quantization": paths.QUANT_REPORT,
    "recombination": paths.RECOMB_REPORT,
    "search.summary": f"{paths.SEARCH_REPORTS}/summary.json",
    "search.leaderboard": paths.SEARCH_LEADERBOARD,
    "multigen": paths.MULTIGEN_SUMMARY,
    "generalization": paths.GENERALIZE_SUMMARY,
    "analysis": paths.ANALYSIS_SUMMARY,
    "objectives": paths.OBJECTIVES_SUMMARY,
    "operators": paths.OPERATORS_SUMMARY,
}


def checkpoints(reports: dict) -> dict[str, str]:
    """The run's main checkpoints; those only some variants make are listed when their report scored them."""
    scored = {*(lookup(reports, "quantization.students") or {}), *(lookup(reports, "recombination.children") or {})}
    found = {}
    for pair in paths.PAIRS:
        found[f"student_{pair}"] = paths.STUDENTS.format(pair)
        found[f"ptq_{pair}_int8"] = paths.PTQ_INT8.format(pair)
        if f"qat_{pair}" in scored:
            found[f"qat_{pair}_int8"] = paths.QAT_INT8.format(pair)
    found["child"] = paths.CHILD
    if "child_int8" in scored:
        found["child_int8"] = paths.CHILD_INT8
    best = lookup(reports, "search.leaderboard.rows.0.experiment")  # ranked: the first is the best
    if best is not None:
        found["search_best"] = paths.SEARCH_CHILD.format(best)
    return found


def main(params: dict) -> None:
    reports = nest({name: read_json(path, "report") for name, path in REPORTS.items()})
    thresholds = ValidateRecombConfig.from_params(params, "validate_recombination").thresholds
    search, multigen = grid_checks(reports["search"]["summary"], reports["multigen"], thresholds)
    reports["search"]["summary"].update(search)
    reports["multigen"].update(multigen)
    report = verdict(reports, {"reports": REPORTS, "checkpoints": checkpoints(reports)})
    out = Outputs()
    out.add_json(paths.PIPELINE_REPORT, numbers_only(report))
    out.add_text(paths.PIPELINE_MARKDOWN, markdown(report))
    out.add_json(paths.HEADLINE, short_headline(report))
    out.commit()
    _, (*failures, summary) = check_lines(report, paths.PIPELINE_REPORT)
    for line in failures + report["flag_mismatches"]:
        log.warning(line)
    log.info(summary)


if __name__ == "__main__":
    run(main)

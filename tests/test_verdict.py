"""The pipeline verdict: gates collected from every report, the `report` stage, and `recomb check`.

`check_pipeline_verdict` is called by the long end-to-end test (tests/test_pipeline.py) on its scratch project.
"""

import json
from pathlib import Path

import pytest

from conftest import run_recomb
from recomb.config import load_params
from recomb.errors import RecombError
from recomb.evaluation.verdict import check_lines, collect, lookup, markdown, nest, verdict
from scratch import BIN, ROOT
from stages import paths
from stages import report as report_stage


def gate(value, threshold, op=">=") -> dict:
    passed = value >= threshold if op == ">=" else value <= threshold
    return {"value": value, "min" if op == ">=" else "max": threshold, "passed": passed}


def fabricated_reports(agreement_a: float = 0.95) -> dict:
    """Trimmed reports of every area, shaped like the stages' (checks at several depths, search without gates)."""
    def pair(agreement: float) -> dict:
        return {"fidelity": {"action_agreement": agreement}, "passed": agreement >= 0.8,
                "checks": {"action_agreement": gate(agreement, 0.8), "kl_divergence": gate(0.02, 0.1, "<=")}}

    distillation = {"pairs": {"A": pair(agreement_a), "B": pair(0.93)}, "passed": agreement_a >= 0.8}
    quantization = {"students": {"ptq_A": {"int8_vs_float": {"action_agreement": 0.99}, "passed": True,
                                           "checks": {"action_agreement": gate(0.99, 0.9)}}}, "passed": True}
    recombination = {"children": {"child": {"primary_over_bound": 0.97, "gain_over_copy": 0.8}},
                     "greedy_return": {"child": None}, "checks": {"child_gain_over_copy": gate(0.8, 0.5)}, "passed": True}
    search = {"summary": {"best": {"primary": 0.74, "primary_over_bound": 0.97, "gain_over_copy": 0.8,
                                   "online_return": None}},
              "leaderboard": {"rows": [{"experiment": "007_weighted"}]}}
    multigen = {"generations": [{"generation": g, "best_primary_over_bound": value, "best_gain_over_copy": value - 0.2,
                                 "best_online_return": None,
                                 "checks": {"best_primary": gate(value, 0.5)}} for g, value in ((0, 0.93), (1, 0.94))]}
    return {"distillation": distillation, "quantization": quantization, "recombination": recombination,
            "search": search, "multigen": multigen}


def leaves(tree) -> list:
    """Every value at the bottom of nested dicts and lists."""
    if isinstance(tree, dict):
        return [v for child in tree.values() for v in leaves(child)]
    if isinstance(tree, list):
        return [v for child in tree for v in leaves(child)]
    return [tree]


def pipeline_report(agreement_a: float = 0.95) -> dict:
    return verdict(fabricated_reports(agreement_a), {"reports": {"distillation": paths.DISTILL_REPORT}})


# ----------------------------------------------------------------------------- collecting the gates


def test_every_checks_mapping_at_any_depth_is_a_gate_named_by_its_path():
    gates, flags, unrun = collect(fabricated_reports())
    assert unrun == {}
    assert list(gates) == [
        "distillation.pairs.A.action_agreement", "distillation.pairs.A.kl_divergence",
        "distillation.pairs.B.action_agreement", "distillation.pairs.B.kl_divergence",
        "quantization.students.ptq_A.action_agreement", "recombination.child_gain_over_copy",
        "multigen.generations.0.best_primary", "multigen.generations.1.best_primary"]
    assert gates["distillation.pairs.A.kl_divergence"] == {"value": 0.02, "max": 0.1, "passed": True}
    assert flags["distillation"] is True and flags["distillation.pairs.B"] is True


def test_a_gate_that_could_not_run_is_listed_and_the_pipeline_is_not_called_passed():
    """No task to play (synthetic parents, brought files without `task`): the return gates are named, not
    dropped, and a run whose every other gate passed is INCOMPLETE, not PASSED."""
    reports = fabricated_reports()
    reports["recombination"]["checks_not_run"] = {"child_greedy_return": 475.0}
    report = verdict(reports, {"reports": {}})
    assert report["gates_not_run"] == {"recombination.child_greedy_return": 475.0}
    assert report["passed"] is False and report["recombination_passed"] is False and report["distillation_passed"]
    ok, lines = check_lines(report, "pipeline.json")
    assert not ok and lines == ["NOT RUN recombination.child_greedy_return: no task to play (rule >= 475)",
                                "pipeline INCOMPLETE: all 8 gates that ran passed, 1 could not run "
                                "(no task: parents.files.task, or the synthetic source)"]
    assert "## Gates that could not run" in markdown(report) and "| recombination.child_greedy_return | >= 475 |" \
        in markdown(report)
    assert "gates_not_run" not in verdict(fabricated_reports(), {"reports": {}})  # every gate ran: nothing added


def test_all_passing_gates_pass_every_area_and_an_area_without_gates_passes():
    report = pipeline_report()
    assert report["passed"] is True
    assert {k: v for k, v in report.items() if k.endswith("_passed")} == {
        "distillation_passed": True, "quantization_passed": True, "recombination_passed": True,
        "search_passed": True, "multigen_passed": True}
    assert report["flag_mismatches"] == []
    assert "| search | no gates | – | yes |" in markdown(report)


def test_a_failing_gate_fails_its_area_and_the_run_and_is_named():
    report = pipeline_report(agreement_a=0.5)
    assert report["passed"] is False and report["distillation_passed"] is False
    assert report["quantization_passed"] is True and report["search_passed"] is True
    assert [name for name, g in report["gates"].items() if not g["passed"]] == ["distillation.pairs.A.action_agreement"]
    assert markdown(report).startswith("# Pipeline — FAILED")
    assert "| distillation.pairs.A.action_agreement | 0.5 | >= 0.8 | **NO** |" in markdown(report)


def test_the_gates_decide_when_a_reports_own_flag_disagrees():
    reports = fabricated_reports()
    reports["recombination"]["passed"] = False
    report = verdict(reports, {})
    assert report["passed"] is True and report["recombination_passed"] is True
    assert report["flag_mismatches"] == ["recombination: the report says passed false, its gates say true"]


def test_a_malformed_gate_is_refused_in_one_line_naming_it():
    reports = fabricated_reports()
    reports["recombination"]["checks"]["child_greedy_return"] = {"value": 500.0, "passed": True}
    with pytest.raises(RecombError) as err:
        verdict(reports, {})
    assert str(err.value) == ("recombination.checks.child_greedy_return: not a gate "
                              "(needs value, min or max, passed (true or false))")


def test_headline_reads_fixed_paths_and_absent_ones_are_none():
    headline = pipeline_report()["headline"]
    assert headline["distillation.pairs.A.fidelity.action_agreement"] == 0.95
    assert headline["search.leaderboard.rows.0.experiment"] == "007_weighted"
    assert headline["multigen.generations.-1.best_primary_over_bound"] == 0.94
    assert headline["multigen.generations.-1.best_gain_over_copy"] == pytest.approx(0.74)
    assert headline["recombination.children.child.gain_over_copy"] == 0.8
    assert headline["quantization.students.qat_A.int8_vs_float.action_agreement"] is None  # no QAT in this run
    assert headline["recombination.greedy_return.child"] is None
    assert lookup({"a": [1]}, "a.x") is None and lookup({"a": [1]}, "a.3") is None and lookup({"a": 1}, "a.b") is None


def test_nest_turns_dotted_report_names_into_one_tree():
    assert nest({"search.summary": 1, "search.leaderboard": 2, "multigen": 3}) == {
        "search": {"summary": 1, "leaderboard": 2}, "multigen": 3}


def test_markdown_escapes_pipes_inside_cells():
    reports = fabricated_reports()
    reports["recombination"]["checks"]["a|b"] = {"value": 0.75, "min": 0.5, "passed": True}
    text = markdown(verdict(reports, {"reports": {"x|y": "data/x|y.json"}}))
    assert "| recombination.a\\|b | 0.75 | >= 0.5 | yes |" in text
    assert "| reports: x\\|y | data/x\\|y.json |" in text
    assert "Latency gates live in the timing report (`recomb timing`" in text


# ----------------------------------------------------------------------------- the stage and `recomb check`


def run_check(capsys, *args: str) -> tuple[int, str, str]:
    return run_recomb(capsys, "check", *args)


def write_reports(reports: dict) -> None:
    """The fabricated reports where the `report` stage reads them (under the current directory)."""
    for name, path in report_stage.REPORTS.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(lookup(reports, name)))


def test_report_stage_writes_the_verdict_and_logs_each_failed_gate(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)
    write_reports(fabricated_reports(agreement_a=0.5))
    report_stage.main(load_params(ROOT / "params.yaml"))  # returns: a failed gate does not fail the stage
    saved = json.loads(Path(paths.PIPELINE_REPORT).read_text())
    assert saved["passed"] is False and saved["distillation_passed"] is False and saved["search_passed"] is True
    assert "artifacts" not in saved and "search.leaderboard.rows.0.experiment" not in saved["headline"]
    assert not [v for v in leaves(saved) if isinstance(v, str)]  # numbers and booleans only
    text = Path(paths.PIPELINE_MARKDOWN).read_text()
    assert text.startswith("# Pipeline — FAILED")
    assert "| reports: search.leaderboard | data/search/leaderboard.json |" in text
    assert "| checkpoints: search_best | data/search/007_weighted/child.safetensors |" in text
    assert "| search.leaderboard.rows.0.experiment | 007_weighted |" in text
    assert "qat_A_int8" not in text  # the quantized report scored no QAT student
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["FAILED distillation.pairs.A.action_agreement: 0.5 (rule >= 0.8)"]

    code, out, err = run_check(capsys)
    assert code == 1 and err == ""
    assert out == ("FAILED distillation.pairs.A.action_agreement: 0.5 (rule >= 0.8)\n"
                   "pipeline FAILED: 1 of 11 gates failed (distillation)\n")  # + the grid gates report adds


def test_check_exits_0_when_every_gate_passed(tmp_path, capsys):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(pipeline_report()))
    assert run_check(capsys, "--report", str(path)) == (0, "pipeline PASSED: all 8 gates passed\n", "")


@pytest.mark.parametrize("content, message", [
    (None, "pipeline report not found"),
    ("{not json", "not valid JSON (JSONDecodeError at byte 1)"),
    (json.dumps({"pairs": {}, "passed": True}), "not a pipeline report (no 'passed' and 'gates'; the `report` stage "
                                                "writes it)"),
    (json.dumps({"passed": True, "gates": {"x": {"value": 1}}}), "x: not a gate (needs value, min or max, passed "
                                                                  "(true or false))"),
    (json.dumps({"passed": False, "gates": {"x": {"value": None, "min": 0.5, "passed": False}}}),
     "x: the gate's value must be a number (got null)"),  # hand-edited, or written by an older version
    (json.dumps({"passed": False, "gates": {"x": {"value": 0.3, "max": "0.2", "passed": False}}}),
     "x: the gate's max must be a number (got \"0.2\")"),
])
def test_check_refuses_a_missing_or_foreign_file_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "pipeline.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_check(capsys, "--report", str(path))
    assert (code, out, err) == (1, "", f"error: {path}: {message}\n")


# ----------------------------------------------------------------------------- end to end (called by test_pipeline)


def check_pipeline_verdict(p) -> int:
    """On a scratch `Project` after `dvc repro`: a verdict exists, and a threshold raised past the measured value
    fails `recomb check` naming the gate. The threshold is put back afterwards. Returns the first check's exit code."""
    assert (p.path / paths.PIPELINE_REPORT).is_file() and (p.path / paths.PIPELINE_MARKDOWN).is_file()
    recomb = str(BIN / "recomb")
    first = p.run(recomb, "check", check=False)
    assert first.returncode in (0, 1) and first.stdout.splitlines()[-1].startswith("pipeline "), first
    key = "validate_distillation.thresholds.min_action_agreement"
    before = p.params()["validate_distillation"]["thresholds"]["min_action_agreement"]
    p.set(**{key: 1.01})
    rerun = p.run("dvc", "repro", "report").stdout
    assert "Running stage 'validate_distillation'" in rerun and "Running stage 'report'" in rerun
    failed = p.run(recomb, "check", check=False)
    assert failed.returncode == 1, failed
    lines = failed.stdout.splitlines()
    for pair in paths.PAIRS:
        name = f"distillation.pairs.{pair}.action_agreement"
        assert any(line.startswith(f"FAILED {name}: ") and line.endswith("(rule >= 1.01)") for line in lines), name
    assert lines[-1].startswith("pipeline FAILED: ")
    p.set(**{key: before})
    p.run("dvc", "repro", "report")
    assert p.run(recomb, "check", check=False).stdout == first.stdout
    return first.returncode


def test_failure_line_rounds_the_value_to_four_significant_digits():
    from recomb.evaluation.verdict import failure_line
    gate = {"value": 0.7847398969537238, "min": 0.9, "passed": False}
    assert failure_line("distillation.pairs.B.advantage_correlation", gate) == (
        "FAILED distillation.pairs.B.advantage_correlation: 0.7847 (rule >= 0.9)")

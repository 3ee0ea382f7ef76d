"""The whole run's verdict: every quality gate of every hashed report, in one place CI can gate on.

Reports are walked generically: any `checks` mapping at any depth is a set of gates
`{name: {value, min or max, passed}}`, named by its path (`distillation.pairs.A.action_agreement`),
so a gate added to a report gates CI without a change here. Pure: dicts in, dicts and text out.
"""

from __future__ import annotations

import json

from ..errors import RecombError
from ..reports import rule, table

GATE_SHAPE = "value, min or max, passed (true or false)"

# The few figures a reader wants first, by dotted path into the reports (absent ones read as None).
HEADLINE = (  # SHORT_NAMES' paths are among these
    "distillation.pairs.A.fidelity.action_agreement",
    "distillation.pairs.B.fidelity.action_agreement",
    "quantization.students.ptq_A.int8_vs_float.action_agreement",
    "quantization.students.ptq_B.int8_vs_float.action_agreement",
    "quantization.students.qat_A.int8_vs_float.action_agreement",
    "quantization.students.qat_B.int8_vs_float.action_agreement",
    "recombination.children.child.primary_over_bound",
    "recombination.children.child.primary_over_bound_ci.low",
    "recombination.children.child.primary_over_bound_ci.high",
    "recombination.children.child.gain_over_copy",
    "recombination.children.child.gain_over_copy_ci.low",
    "recombination.children.child.gain_over_copy_ci.high",
    "recombination.greedy_return.child",
    "search.leaderboard.rows.0.experiment",
    "search.summary.best.primary_over_bound",
    "search.summary.best.primary_over_bound_low",
    "search.summary.best.primary_over_bound_high",
    "search.summary.best.gain_over_copy",
    "search.summary.best.online_return",
    "multigen.generations.-1.best_primary_over_bound",
    "multigen.generations.-1.best_gain_over_copy",
    "multigen.generations.-1.best_online_return",
    "generalization.sets.heldout.networks.child.drop_pp",
    "generalization.skills.networks.child.union_coverage",
    "generalization.skills.networks.child.min_retention",
    "generalization.skills.networks.dqn_baseline.union_coverage",
    "analysis.near_tie.child_vs_parents.near_tie_share",
    "objectives.modes.default.pairs.A.agreement",
    "objectives.modes.default.pairs.B.agreement",
)

# The key figures under short names (data/reports/headline.json): narrow `dvc exp show` columns, and few
# enough that `dvc metrics show data/reports/headline.json` fits 120 columns (the rest is in pipeline.json).
SHORT_NAMES = {
    "child_pu": "recombination.children.child.primary_over_bound",
    "child_gain": "recombination.children.child.gain_over_copy",
    "child_ret": "recombination.greedy_return.child",
    "child_cov": "generalization.skills.networks.child.union_coverage",
    "base_cov": "generalization.skills.networks.dqn_baseline.union_coverage",
    "stud_A": "distillation.pairs.A.fidelity.action_agreement",
    "stud_B": "distillation.pairs.B.fidelity.action_agreement",
    "int8_A": "quantization.students.ptq_A.int8_vs_float.action_agreement",
    "int8_B": "quantization.students.ptq_B.int8_vs_float.action_agreement",
}

LATENCY_NOTE = ("Latency gates live in the timing report (`recomb timing`: `data/reports/latest/timing.json`): "
                "wall-clock figures depend on the machine and its load, so they are not hashed and do not gate CI.")


def lookup(tree, dotted: str):
    """The value at `a.b.0.c` (list items by index, -1 = last), or None when any step is absent."""
    node = tree
    for key in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list):
            try:
                node = node[int(key)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return node


def _gate(name: str, check) -> dict:
    keys = set(check) if isinstance(check, dict) else set()
    if keys not in ({"value", "min", "passed"}, {"value", "max", "passed"}) or not isinstance(check["passed"], bool):
        raise RecombError(f"{name}: not a gate (needs {GATE_SHAPE})")
    for key in ("value", "min" if "min" in check else "max"):
        if isinstance(check[key], bool) or not isinstance(check[key], (int, float)):
            raise RecombError(f"{name}: the gate's {key} must be a number (got {json.dumps(check[key])})")
    return dict(check)


def _walk(node, path: str, gates: dict, flags: dict, unrun: dict) -> None:
    """Gates of every `checks` mapping under `node`, every `passed` flag beside them, and every gate a report
    could not run (`checks_not_run`: name → its bar), keyed by path."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if key == "checks" and isinstance(child, dict):
            gates.update({f"{path}.{name}": _gate(f"{path}.checks.{name}", check) for name, check in child.items()})
        elif key == "checks_not_run" and isinstance(child, dict):
            unrun.update({f"{path}.{name}": bar for name, bar in child.items()})
        elif key == "passed" and isinstance(child, bool):
            flags[path] = child
        else:
            _walk(child, f"{path}.{key}", gates, flags, unrun)


def nest(named: dict[str, object]) -> dict[str, object]:
    """`{"search.summary": r}` → `{"search": {"summary": r}}`: one tree, so gates and headline share its paths."""
    tree: dict = {}
    for dotted, report in named.items():
        *parents, last = dotted.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = report
    return tree


def collect(tree: dict[str, object]) -> tuple[dict[str, dict], dict[str, bool], dict[str, float]]:
    """(gates, `passed` flags, gates not run) of `{area: report}`, keyed by dotted path starting with the area."""
    gates, flags, unrun = {}, {}, {}
    for area, report in tree.items():
        _walk(report, area, gates, flags, unrun)
    return gates, flags, unrun


def passed_under(gates: dict[str, dict], prefix: str) -> bool:
    """Whether every gate whose path starts with `prefix` passed (True when there is none)."""
    return all(gate["passed"] for name, gate in gates.items() if name.startswith(f"{prefix}."))


def flag_mismatches(gates: dict[str, dict], flags: dict[str, bool]) -> list[str]:
    """Reports' own `passed` flags that contradict the gates below them (the gates decide)."""
    return [f"{path}: the report says passed {str(flag).lower()}, its gates say {str(not flag).lower()}"
            for path, flag in flags.items()
            if any(name.startswith(f"{path}.") for name in gates) and flag != passed_under(gates, path)]


def verdict(tree: dict[str, object], artifacts: dict[str, dict[str, str]]) -> dict:
    """pipeline.json of the reports `{area: report}` (see `nest`) and the artifacts `{group: {name: path}}`."""
    gates, flags, unrun = collect(tree)
    return {
        "passed": all(gate["passed"] for gate in gates.values()) and not unrun,  # an unrun gate never passes
        **{f"{area}_passed": passed_under(gates, area) and not any(n.startswith(f"{area}.") for n in unrun)
           for area in tree},
        "gates": gates,
        **({"gates_not_run": unrun} if unrun else {}),
        "flag_mismatches": flag_mismatches(gates, flags),
        "headline": {path: lookup(tree, path) for path in HEADLINE},
        "artifacts": artifacts,
    }


def numbers_only(report: dict) -> dict:
    """pipeline.json: the verdict's numbers and booleans; names, paths and prose are in pipeline.md."""
    return {**{k: v for k, v in report.items() if k not in ("artifacts", "flag_mismatches")},
            "headline": {path: v for path, v in report["headline"].items() if not isinstance(v, str)}}


def short_headline(report: dict) -> dict:
    """Numbers and the overall `passed` only, under `SHORT_NAMES`: a metrics file that
    `dvc exp show` can show in a few columns."""
    tree = report["headline"]
    return {"passed": report["passed"], **{short: tree.get(path) for short, path in SHORT_NAMES.items()}}


def failed_gates(report, source: str) -> dict[str, dict]:
    """The failed gates of a pipeline.json read from `source`; anything else is refused in one line."""
    gates = report.get("gates") if isinstance(report, dict) else None
    if not isinstance(gates, dict) or not isinstance(report.get("passed"), bool):
        raise RecombError(f"{source}: not a pipeline report (no 'passed' and 'gates'; the `report` stage writes it)")
    return {name: check for name, check in gates.items() if not _gate(f"{source}: {name}", check)["passed"]}


def failure_line(name: str, gate: dict) -> str:
    return f"FAILED {name}: {gate['value']:.4g} (rule {rule(gate)})"


def check_lines(report, source: str) -> tuple[bool, list[str]]:
    """What `recomb check` prints: one line per failed gate, then a summary; and whether everything passed."""
    failed = failed_gates(report, source)
    unrun = report.get("gates_not_run") or {}
    total = len(report["gates"])
    lines = [*(failure_line(name, gate) for name, gate in failed.items()),
             *(f"NOT RUN {name}: no task to play (rule >= {bar:g})" for name, bar in unrun.items())]
    if failed:
        areas = sorted({name.split(".")[0] for name in failed})
        return False, [*lines, f"pipeline FAILED: {len(failed)} of {total} gates failed ({', '.join(areas)})"
                               + (f"; {len(unrun)} more could not run" if unrun else "")]
    if unrun:
        return False, [*lines, f"pipeline INCOMPLETE: all {total} gates that ran passed, {len(unrun)} could not run "
                               "(no task: parents.files.task, or the synthetic source)"]
    return True, [f"pipeline PASSED: all {total} gates passed"]


def markdown(report: dict) -> str:
    """pipeline.md: the verdict, one row per area, every gate, the headline figures, where the artifacts are."""
    gates = report["gates"]
    areas = [key.removesuffix("_passed") for key in report if key.endswith("_passed")]
    area_rows = []
    for area in areas:
        in_area = [gate for name, gate in gates.items() if name.startswith(f"{area}.")]
        failed = sum(not gate["passed"] for gate in in_area)
        area_rows.append([area, len(in_area) or "no gates", failed if in_area else "–", report[f"{area}_passed"]])
    parts = [
        f"# Pipeline — {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        "Every quality gate of the hashed reports; `recomb check` exits 1 when one of them failed. " + LATENCY_NOTE,
        "",
        table(["area", "gates", "failed", "passed"], area_rows),
        "",
        "## Gates",
        "",
        table(["gate", "value", "rule", "passed"],
              [[name, g["value"], rule(g), g["passed"]]
               for name, g in gates.items()]),
    ]
    if report.get("gates_not_run"):
        parts += ["", "## Gates that could not run", "",
                  "No task to play a return in (the synthetic source, or `parents.files.task: false`): these gates "
                  "were not checked, so the pipeline is not called passed.", "",
                  table(["gate", "rule"], [[name, f">= {bar:g}"] for name, bar in report["gates_not_run"].items()])]
    if report["flag_mismatches"]:
        parts += ["", "Reports whose own `passed` disagrees with their gates (the gates decide):", "",
                  *(f"- {line}" for line in report["flag_mismatches"])]
    parts += [
        "", "## Headline", "",
        table(["figure", "value"], [[path, value] for path, value in report["headline"].items()]),
        "", "## Artifacts", "",
        table(["artifact", "path"], [[f"{group}: {name}", path]
                                     for group, named in report["artifacts"].items() for name, path in named.items()]),
    ]
    return "\n".join(parts) + "\n"

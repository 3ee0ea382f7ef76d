"""Which stages `dvc status` calls stale when one module of `recomb/` changes: the cost of an edit, pinned.

Every module is touched at once in a copy of the project and DVC's own `status` lists, per stage, the code deps
that changed — per stage those are exactly the touched modules it depends on, so one call gives the whole
module × stage matrix. The expected matrix is written out below: an import that adds a stage to a row (the
distillation loop re-training the parents, say) fails here, naming the row.
"""

import json
import shutil
from pathlib import Path

from scratch import ROOT, Project

PIPELINE = ("inputs", "parents", "baseline", "distill", "validate_distillation", "ptq", "qat", "validate_quantized",
            "crossover", "finetune", "validate_recombination", "search", "multigen", "generalize", "analyze",
            "compare_distillation", "compare_operators", "connectivity", "report")
EVERY = set(PIPELINE)
# `params` checks every section (so it imports every config class) and the ablation validates its conditions the
# same way: both are in every row; they are cheap, and `params`' output never changes, so it stales nothing after it.
CHECKERS = {"params", "ablation/dvc.yaml:ablation"}
ANALYSES_OF_CHILDREN = {"validate_recombination", "search", "multigen", "generalize", "analyze", "compare_operators"}
DQN = {"inputs", "parents", "baseline"}  # the stages that run training/parents: the parents, their inputs, the baseline
SCORERS = {"validate_distillation", "validate_quantized", "compare_distillation", "connectivity",
           "report"} | ANALYSES_OF_CHILDREN

EXPECTED = {
    # foundation, models, formats, files: what every stage runs
    **{module: EVERY for module in ("__init__", "errors", "portable", "dispatch", "config", "reports", "networks",
                                    "layouts", "quantization/int8", "artifacts")},
    "parallel": DQN | {"search", "multigen", "generalize", "compare_distillation", "compare_operators"},
    "plots": EVERY - {"inputs", "baseline", "validate_distillation", "ptq", "validate_quantized", "crossover",
                      "validate_recombination", "report"},
    "optim": EVERY - {"validate_distillation", "ptq", "crossover", "generalize", "connectivity", "report"},
    # training/competence (each parent's return per condition, with its interval) imports them
    "metrics": SCORERS | DQN | {"finetune"},
    "stats": SCORERS | DQN | {"finetune"},
    "selection": SCORERS | {"distill", "qat", "finetune"},
    # tasks: the parents and whatever plays episodes
    "training/envs": SCORERS | DQN,
    "training/tasks": SCORERS | DQN,
    "training/dqn": DQN,
    "training/parents": DQN,
    "training/competence": DQN | {"finetune", "search", "multigen", "compare_operators"},  # competent teaching
    "training/baseline": {"baseline"},
    # training: nothing upstream of the stage that trains with it
    "training/distill": {"distill", "qat", "validate_quantized", "finetune", "validate_recombination", "search",
                         "multigen", "analyze", "compare_distillation", "compare_operators"},
    "quantization/quantize": {"ptq", "qat", "validate_quantized", "finetune", "validate_recombination", "search",
                              "multigen", "analyze", "compare_operators"},
    "training/qat": {"qat", "validate_quantized"},
    "training/finetune": {"finetune", "validate_recombination", "search", "multigen", "analyze", "compare_operators"},
    # evaluation and recombination: the stages that score, and the analyses themselves only
    "evaluation/validation": SCORERS,
    "evaluation/verdict": {"report"},
    "evaluation/generalization": {"generalize"},
    "evaluation/skills": {"generalize"},
    "evaluation/analysis": {"analyze"},
    "evaluation/objectives": {"compare_distillation"},
    "evaluation/leaderboard": {"search", "multigen", "compare_operators"},
    "evaluation/ablation": set(),
    "evaluation/ablation_summary": set(),
    "operator_knobs": {"crossover", "search", "multigen", "compare_operators", "connectivity"},
    "recombination/alignment": {"crossover", "search", "multigen", "compare_operators", "connectivity"},
    "recombination/crossover": {"crossover", "search", "multigen", "compare_operators", "connectivity"},
    "recombination/connectivity": {"connectivity"},
    "recombination/search": {"search", "multigen", "compare_operators"},
    "recombination/multigen": {"multigen"},
    "recombination/operators": {"compare_operators"},
    # the command line (`recomb check`, `leaderboard`, `lock-diff`, `machine`): no stage runs it
    "cli": set(),
    "reproducibility": set(),
    "export": set(),  # `recomb export`
}
ONLY_CHECKERS = {"evaluation/ablation_summary": {"ablation/dvc.yaml:ablation"},  # the ablation's own summary
                 "evaluation/verdict": set(), "evaluation/skills": set(), "cli": set(), "reproducibility": set(),
                 "export": set()}


def stale_stages(project: Path) -> dict[str, set[str]]:
    """module → the stages whose code deps `dvc status` lists as changed, with every module touched."""
    for path in (project / "recomb").rglob("*.py"):
        path.write_text(path.read_text() + "\n# touched\n")
    status = json.loads(Project.at(project).run("dvc", "status", "--json").stdout)
    found: dict[str, set[str]] = {}
    for stage, changes in status.items():
        for change in changes:
            for dep in change.get("changed deps", {}) if isinstance(change, dict) else ():
                if dep.startswith("recomb/"):
                    found.setdefault(dep.removeprefix("recomb/").removesuffix(".py"), set()).add(stage)
    return found


def test_each_module_stales_exactly_the_stages_written_here(tmp_path):
    project = tmp_path / "project"
    for name in ("recomb", "stages", "ablation"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(ROOT / name, project / name)
    Project.at(project).run("dvc", "init", "--no-scm", "-q")
    found = stale_stages(project)
    modules = {str(p.relative_to(ROOT / "recomb").with_suffix("")) for p in (ROOT / "recomb").rglob("*.py")
               if p.stat().st_size}  # empty package files: no code, in no closure
    assert set(EXPECTED) == modules, f"rows to add or drop: {sorted(set(EXPECTED) ^ modules)}"
    wrong = []
    for module, stages in sorted(EXPECTED.items()):
        expected = stages | ONLY_CHECKERS.get(module, CHECKERS)
        actual = found.get(module, set())
        if actual != expected:
            wrong.append(f"{module}: also {sorted(actual - expected)}, not {sorted(expected - actual)}")
    assert not wrong, "stages dvc status calls stale:\n" + "\n".join(wrong)

"""Stage `params` and `recomb params`: every section of params.yaml validated at once, before any other stage.

DVC removes a stage's outputs before running it, so a typo that stops a stage late
in `dvc repro` or `dvc exp run -S` would already have cost that stage's previous outputs.
As a stage at the root of both pipeline files, on which every other stage depends, it
runs first whenever params.yaml changes and stops the run with one line before any
output is touched. Its output never changes, so it never makes another stage stale.
"""

from __future__ import annotations

from typing import Callable

from recomb.config import load_params
from recomb.recombination.crossover import CrossoverConfig
from recomb.training.distill import DistillConfig
from recomb.evaluation.objectives import CompareObjectivesConfig
from recomb.training.finetune import finetune_config
from recomb.recombination.multigen import MultigenConfig
from recomb.recombination.operators import OperatorsConfig
from recomb.training.parents import ParentsConfig
from recomb.quantization.quantize import PTQConfig
from recomb.training.qat import QATConfig
from recomb.recombination.search import SearchConfig, grid
from recomb.evaluation.ablation import plan
from recomb.evaluation.analysis import AnalyzeConfig
from recomb.evaluation.generalization import GeneralizeConfig
from recomb.selection import SelectionConfig
from recomb.stats import UncertaintyConfig
from recomb.evaluation.validation import ValidateDistillConfig, ValidateQuantizedConfig, ValidateRecombConfig
from recomb.artifacts import Outputs

from . import paths
from .common import PARAMS_FILE, SECTIONS, RuntimeConfig, run


def _section(cls) -> Callable[[dict, str], object]:
    return lambda params, name: cls.from_params(params, name)


def _search(params: dict, name: str) -> object:
    """The search section, and its grid against the regimes it names."""
    return grid(SearchConfig.from_params(params, name), {r: None for r in params["regimes"]})


def _selection(params: dict, name: str) -> object:
    cfg = SelectionConfig.from_params(params, name)
    scoring = ValidateRecombConfig.from_params(params, "validate_recombination")
    cfg.check_disjoint(scoring.eval_seed, scoring.eval_episodes, "validate_recombination")
    return cfg


VALIDATORS: dict[str, Callable[[dict, str], object]] = {
    "runtime": _section(RuntimeConfig), "parents": _section(ParentsConfig), "distill": _section(DistillConfig),
    "validate_distillation": _section(ValidateDistillConfig), "ptq": _section(PTQConfig), "qat": _section(QATConfig),
    "validate_quantized": _section(ValidateQuantizedConfig), "crossover": _section(CrossoverConfig),
    "regimes": lambda params, name: finetune_config(params), "finetune": lambda params, name: finetune_config(params),
    "selection": _selection, "uncertainty": _section(UncertaintyConfig), "search": _search,
    "multigen": _section(MultigenConfig), "validate_recombination": _section(ValidateRecombConfig),
    "generalize": _section(GeneralizeConfig), "analyze": _section(AnalyzeConfig), "compare_distillation": _section(CompareObjectivesConfig),
    "compare_operators": _section(OperatorsConfig),
    "ablation": lambda params, name: plan(params, validate_section, paths.ABLATION_DIR),
}


def validate_section(params: dict, name: str) -> object:
    """One section checked as its stage would (an ablation condition's overrides are checked this way)."""
    return VALIDATORS[name](params, name)


def check_params(path: str = PARAMS_FILE) -> int:
    """Validate every section (one-line `RecombError` at the first problem); returns how many were checked."""
    params = load_params(path, SECTIONS)
    for name in SECTIONS:
        VALIDATORS[name](params, name)
    return len(SECTIONS)


def main(params: dict) -> None:
    check_params()
    out = Outputs()
    out.add_text(paths.PARAMS_CHECKED, "params.yaml: every section passed its check\n")
    out.commit()


if __name__ == "__main__":
    run(main)

"""Stage `params` and `recomb params`: every section of params.yaml validated at once, before any other stage.

DVC removes a stage's outputs before running it, so a typo that stops a stage late
in `dvc repro` or `dvc exp run -S` would already have cost that stage's previous outputs.
As a stage at the root of both pipeline files, on which every other stage depends, it
runs first whenever params.yaml changes and stops the run with one line before any
output is touched. Its output never changes, so it never makes another stage stale.
"""

from __future__ import annotations

from typing import Callable

from recomb.artifacts import Outputs
from recomb.config import Section, load_params
from recomb.evaluation.ablation import AblationConfig, plan
from recomb.evaluation.analysis import AnalyzeConfig
from recomb.evaluation.generalization import GeneralizeConfig
from recomb.evaluation.objectives import CompareObjectivesConfig
from recomb.evaluation.validation import ValidateDistillConfig, ValidateQuantizedConfig, ValidateRecombConfig
from recomb.quantization.quantize import PTQConfig
from recomb.recombination.crossover import CrossoverConfig
from recomb.recombination.multigen import MultigenConfig
from recomb.recombination.connectivity import ConnectivityConfig
from recomb.recombination.operators import OperatorsConfig
from recomb.recombination.search import SearchConfig
from recomb.selection import SelectionConfig
from recomb.stats import UncertaintyConfig
from recomb.training.baseline import BaselineConfig
from recomb.training.distill import DistillConfig
from recomb.training.finetune import FinetuneConfig
from recomb.training.parents import ParentsConfig
from recomb.training.qat import QATConfig
from recomb.training.tasks import TasksConfig

from . import paths
from .common import PARAMS_FILE, RuntimeConfig, run, with_task_values

# Every class that checks whole sections of params.yaml, in the file's order; each names its sections and rules.
CHECKED: tuple[type[Section], ...] = (
    RuntimeConfig, ParentsConfig, TasksConfig, BaselineConfig, DistillConfig, ValidateDistillConfig, PTQConfig, QATConfig,
    ValidateQuantizedConfig, CrossoverConfig, FinetuneConfig, SelectionConfig, UncertaintyConfig, SearchConfig, MultigenConfig,
    ValidateRecombConfig, GeneralizeConfig, AnalyzeConfig, CompareObjectivesConfig, ConnectivityConfig, OperatorsConfig,
    AblationConfig)
SECTIONS = tuple(name for cls in CHECKED for name in cls.sections)
VALIDATORS: dict[str, Callable[[dict], object]] = {name: cls.validate for cls in CHECKED for name in cls.sections}
# The ablation's conditions are checked section by section by the rules above.
VALIDATORS["ablation"] = lambda params: plan(params, validate_section, paths.ABLATION_DIR)


def validate_section(params: dict, name: str) -> object:
    """One section checked as its stage would (an ablation condition's overrides are checked this way)."""
    return VALIDATORS[name](params)


def check_params(path: str = PARAMS_FILE) -> int:
    """Validate every section (one-line `RecombError` at the first problem); returns how many were checked."""
    params = with_task_values(load_params(path, SECTIONS))
    for name in SECTIONS:
        VALIDATORS[name](params)
    return len(SECTIONS)


def main(params: dict) -> None:
    check_params()
    out = Outputs()
    out.add_text(paths.PARAMS_CHECKED, "params.yaml: every section passed its check\n")
    out.commit()


if __name__ == "__main__":
    run(main)

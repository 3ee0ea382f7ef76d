"""What the `search` and `multigen` stages share: the pipeline's pair, scoring, and per-child records."""

from __future__ import annotations

import torch

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.operator_knobs import recipe_knobs
from recomb.recombination.crossover import CrossoverConfig
from recomb.training.finetune import finetune_config, regimes
from recomb.quantization.quantize import PTQConfig
from recomb.recombination.search import (GridPoint, Outcome, Pair, Scoring, SearchConfig, crossover_config, grid, rank_outcomes,
                           run_grid)
from recomb.selection import SelectionConfig, split
from recomb.stats import UncertaintyConfig
from recomb.evaluation.validation import ValidateRecombConfig

from . import paths
from .common import RuntimeConfig, WorkerBars
from .teaching import competent_sides


class GridInputs:
    """The pair the pipeline crosses, its teachers, the scoring roles and the states: loaded once."""

    def __init__(self, params: dict):
        self.search = SearchConfig.from_params(params, "search")
        self.crossover = CrossoverConfig.from_params(params, "crossover")
        self.quant = PTQConfig.from_params(params, "ptq")
        scoring_cfg = ValidateRecombConfig.from_params(params, "validate_recombination")
        selection = SelectionConfig.from_params(params, "selection")
        selection.check_disjoint(scoring_cfg.eval_seed, scoring_cfg.eval_episodes, "validate_recombination")
        known = regimes(params)
        self.points = grid(self.search, known)
        self.finetune = {r: finetune_config(params, r) for r in dict.fromkeys(p.regime for p in self.points)}
        crossed = [load_checkpoint(paths.CROSSOVER_INPUTS[self.crossover.parents].format(p)) for p in paths.PAIRS]
        teachers = [load_checkpoint(paths.PARENTS.format(p)) for p in paths.PAIRS]
        roles = [load_checkpoint(paths.CROSSOVER_INPUTS[scoring_cfg.parents_role].format(p)) for p in paths.PAIRS]
        dims = teachers[0].arch.input_dim, teachers[0].arch.output_dim
        for checkpoint in (*crossed, *teachers[1:], *roles):
            checkpoint.expect_dims(*dims, str(teachers[0].path))
        train = torch.from_numpy(load_states(paths.STATES_TRAIN, dims[0]))
        self.states, validation = split(train, selection)
        heldout = load_states(paths.STATES_HELDOUT, dims[0])
        self.inputs = {"crossed": [str(c.path) for c in crossed], "teachers": [str(t.path) for t in teachers],
                       "scored_against": [str(r.path) for r in roles]}
        modes = {cfg.teacher_mode for cfg in self.finetune.values()}
        self.pair = Pair(crossed[0].float_model(), crossed[1].float_model(), teachers[0].model, teachers[1].model,
                         train, competent_sides(params, "competent" if "competent" in modes else "", len(train)))
        self.scoring = Scoring(roles[0].model, roles[1].model, heldout, validation, of_parents(teachers[0].meta),
                               scoring_cfg, selection, UncertaintyConfig.from_params(params, "uncertainty"))
        self.threads = RuntimeConfig.from_params(params, "runtime").torch_threads

    def run(self, points: list[GridPoint], pair: Pair, finetune_cfgs: dict) -> dict[str, Outcome]:
        """Every point's fine-tuned, scored child (the stages' one call into `run_grid`)."""
        return run_grid(points, pair, self.states, self.crossover, finetune_cfgs, self.quant, self.scoring,
                        self.search, self.threads, WorkerBars())

    def ranked(self, points: list[GridPoint], outcomes: dict[str, Outcome]) -> list[dict]:
        """Leaderboard rows of these children, best first (`recomb.recombination.search.rank_outcomes`)."""
        return rank_outcomes(points, outcomes, self.crossover, self.scoring, self.search.degenerate_threshold)

def reproduce_command(crossover: CrossoverConfig, regime: str) -> str:
    """The DVC experiment that builds this child alone, with the same metrics."""
    sets = {"crossover.parents": crossover.parents, "crossover.mode": crossover.mode,
            **{f"crossover.{key}": getattr(crossover, key) for key in recipe_knobs(crossover.mode)},
            "finetune.regime": regime}
    return "dvc exp run " + " ".join(f"-S {k}={v}" for k, v in sets.items())


def add_child(out: Outputs, point: GridPoint, outcome: Outcome, inputs: GridInputs, row: dict) -> None:
    """The child's checkpoint(s) and its run_config.json: everything needed to rebuild it alone."""
    cross = crossover_config(inputs.crossover, point.recipe)
    ft = inputs.finetune[point.regime]
    result = outcome.result
    record = {"child_id": point.child_id, "crossover": cross.to_dict(), "finetune": ft.to_dict(),
              "finetune_metrics": {"best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                                   "balance": result.balance, "best": result.history[result.best_epoch]},
              "metrics": {"leaderboard": row, "report": outcome.report}, "inputs": inputs.inputs,
              "reproduce": reproduce_command(cross, point.regime), "torch_version": torch.__version__}
    meta = {k: record[k] for k in ("child_id", "crossover", "finetune", "finetune_metrics")}
    out.add_checkpoint(paths.SEARCH_CHILD.format(point.child_id), result.child, "child", meta)
    if outcome.int8 is not None:
        out.add_checkpoint(paths.SEARCH_CHILD_INT8.format(point.child_id), outcome.int8, "child_int8", meta)
    out.add_json(paths.SEARCH_RUN_CONFIG.format(point.child_id), record)

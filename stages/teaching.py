"""What the `competent` teacher mode reads beside the train states: each state's condition and who is competent
there (the `parents` stage's `conditions.json`), split as `selection` splits the states."""

from __future__ import annotations

import torch

from recomb.artifacts import load_labels, read_json
from recomb.selection import SelectionConfig, split_indices
from recomb.stats import UncertaintyConfig
from recomb.training.competence import Competence

from . import paths


def competent_sides(params: dict, teacher_mode: str, n_train: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per train and per validation state: 1 where parent A plays the state's condition measurably better, −1
    where B does, 0 where neither (None unless `teacher_mode` is competent)."""
    if teacher_mode != "competent":
        return None
    competence = Competence.from_json(read_json(paths.STATES_CONDITIONS, "conditions file"), paths.STATES_CONDITIONS)
    labels = load_labels(paths.STATES_CONDITION.format("train"), n_train, len(competence.conditions))
    sides = torch.from_numpy(competence.verdicts(UncertaintyConfig.from_params(params, "uncertainty"))[labels])
    selection = SelectionConfig.from_params(params, "selection")
    train_idx, val_idx = split_indices(n_train, selection.val_fraction, selection.seed)
    return sides[train_idx], sides[val_idx]

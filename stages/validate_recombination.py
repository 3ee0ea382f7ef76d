"""Stage `validate_recombination`: the children against both parents offline, and everyone online."""

import torch

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.training.finetune import finetune_config
from recomb.reports import recombination_markdown
from recomb.selection import SelectionConfig, split
from recomb.stats import UncertaintyConfig
from recomb.evaluation.validation import (RECOMB_DEFINITIONS, ROLE_NETWORKS, ValidateRecombConfig,
                                          agreement_with_parents, all_passed, child_checks, mean_returns,
                                          online_returns, recombination_offline, selection_figures)

from . import paths
from .common import log, ret, run, warn_failed


def main(params: dict) -> None:
    cfg = ValidateRecombConfig.from_params(params, "validate_recombination")
    selection = SelectionConfig.from_params(params, "selection")
    selection.check_disjoint(cfg.eval_seed, cfg.eval_episodes, "validate_recombination")
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    children = {"child_raw": paths.CHILD_RAW, "child": paths.CHILD}
    if finetune_config(params).quantization_applied != "none":
        children["child_int8"] = paths.CHILD_INT8
    children = {name: load_checkpoint(path) for name, path in children.items()}
    role_a, role_b = (load_checkpoint(paths.CROSSOVER_INPUTS[cfg.parents_role].format(p)) for p in paths.PAIRS)
    heldout = load_states(paths.STATES_HELDOUT, role_a.arch.input_dim)
    _, validation = split(torch.from_numpy(load_states(paths.STATES_TRAIN, role_a.arch.input_dim)), selection)
    for checkpoint in (role_b, *children.values()):
        checkpoint.expect_dims(heldout.shape[1], role_a.arch.output_dim, str(role_a.path))
    models = {k: c.model for k, c in children.items()}
    report = recombination_offline(role_a.model, role_b.model, models, heldout, cfg, unc)
    report["n_heldout"] = len(heldout)

    roles = dict.fromkeys(("parents", "students", "quantized", cfg.parents_role))  # the scoring role's are baselines
    others = {f"{ROLE_NETWORKS[role]}_{pair}": load_checkpoint(paths.CROSSOVER_INPUTS[role].format(pair))
              for role in roles for pair in paths.PAIRS}
    task = of_parents(others["parent_A"].meta)
    report["selection"] = {
        name: selection_figures(role_a.model, role_b.model, model, validation, task, selection, unc)[0]
        for name, model in models.items()}
    everyone = {name: c.model for name, c in {**others, **children}.items()}
    report["agreement"] = agreement_with_parents(role_a.model, role_b.model, everyone, heldout, unc)
    report["greedy_return_interval"] = online_returns(everyone, task, cfg.eval_episodes, cfg.eval_seed, unc)
    report["greedy_return"] = mean_returns(report["greedy_return_interval"])

    child = report["children"]["child"]
    report.update(child_checks(child["gain_over_copy"], report["greedy_return"]["child"], cfg.thresholds))
    report["passed"] = all_passed(report["checks"])
    warn_failed("recombination, fine-tuned child", report["checks"])
    out = Outputs()
    out.add_json(paths.RECOMB_REPORT, report)
    out.add_text(paths.RECOMB_MARKDOWN, recombination_markdown(report, RECOMB_DEFINITIONS, cfg.parents_role))
    out.commit()
    log.info("child: held-out agreement A %.4f / B %.4f, primary/U %.4f, return %s", child["agreement_a"],
             child["agreement_b"], child["primary_over_bound"], ret(report["greedy_return"]["child"]))


if __name__ == "__main__":
    run(main)

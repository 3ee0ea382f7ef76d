"""Stage `validate_recombination`: the children against both parents offline, and everyone online."""

from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.finetune import finetune_config
from recomb.reports import recombination_markdown
from recomb.validation import (RECOMB_DEFINITIONS, ValidateRecombConfig, agreement_with_parents, all_passed, gate,
                               online_returns, recombination_offline)

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = ValidateRecombConfig.from_params(params, "validate_recombination")
    children = {"child_raw": paths.CHILD_RAW, "child": paths.CHILD}
    if finetune_config(params).quantization_applied != "none":
        children["child_int8"] = paths.CHILD_INT8
    children = {name: load_checkpoint(path) for name, path in children.items()}
    role_a, role_b = (load_checkpoint(paths.CROSSOVER_INPUTS[cfg.parents_role].format(p)) for p in paths.PAIRS)
    heldout = load_states(paths.STATES_HELDOUT, role_a.arch.input_dim)
    for checkpoint in (role_b, *children.values()):
        checkpoint.expect_dims(heldout.shape[1], role_a.arch.output_dim, str(role_a.path))
    report = recombination_offline(role_a.model, role_b.model, {k: c.model for k, c in children.items()}, heldout, cfg)
    report.update(parents_role=cfg.parents_role, n_heldout=len(heldout))

    others = {f"{name}_{pair}": load_checkpoint(pattern.format(pair))
              for name, pattern in (("parent", paths.PARENTS), ("student", paths.STUDENTS), ("student_int8", paths.PTQ_INT8))
              for pair in paths.PAIRS}
    env = others["parent_A"].meta.get("env")
    everyone = {name: c.model for name, c in {**others, **children}.items()}
    report["agreement"] = agreement_with_parents(role_a.model, role_b.model, everyone, heldout)
    report["greedy_return"] = online_returns(everyone, env, cfg)

    t = cfg.thresholds
    child = report["children"]["child"]
    checks = [("child_primary_over_bound", child["primary_over_bound"], ">=", t.min_primary_over_bound)]
    if env is not None:
        checks.append(("child_greedy_return", report["greedy_return"]["child"], ">=", t.min_child_return))
    report["checks"] = gate(checks)
    report["passed"] = all_passed(report["checks"])
    out = Outputs()
    out.add_json(paths.RECOMB_REPORT, report)
    out.add_text(paths.RECOMB_MARKDOWN, recombination_markdown(report, RECOMB_DEFINITIONS))
    out.commit()
    log.info("child: agreement A %.4f / B %.4f, primary/U %.4f, return %s", child["vs_a"]["action_agreement"],
             child["vs_b"]["action_agreement"], child["primary_over_bound"], report["greedy_return"]["child"])


if __name__ == "__main__":
    run(main)

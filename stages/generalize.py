"""Stage `generalize`: every network on in-distribution, held-out and shifted states, and in shifted environments."""

from pathlib import Path

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states, read_json
from recomb.evaluation.generalization import (GATED, GeneralizeConfig, environment_shifts, evaluate, markdown,
                                              metrics, returns_rows, robustness_figure, state_sets, with_gaps)
from recomb.evaluation.skills import parent_variants, skills_figure, skills_map, skills_markdown, skills_metrics
from recomb.selection import SelectionConfig
from recomb.stats import UncertaintyConfig

from . import paths
from .common import log, run, warn_failed


def networks() -> dict:
    """Every network by name: parents, students, PTQ int8 students, raw and fine-tuned child, and the
    search's recommended child when the search stage has run, and the compute-matched DQN when there is one."""
    found = {f"{name}_{pair}": load_checkpoint(pattern.format(pair))
             for name, pattern in (("parent", paths.PARENTS), ("student", paths.STUDENTS),
                                   ("student_int8", paths.PTQ_INT8)) for pair in paths.PAIRS}
    found |= {"child_raw": load_checkpoint(paths.CHILD_RAW), GATED: load_checkpoint(paths.CHILD)}
    if Path(paths.BASELINE).exists():  # the compute-matched DQN (DQN parents only)
        found["dqn_baseline"] = load_checkpoint(paths.BASELINE)
    leaderboard = Path(paths.SEARCH_LEADERBOARD)
    if leaderboard.exists():
        best = read_json(leaderboard, "search leaderboard")["rows"][0]["experiment"]  # ranked: the first is the best
        found["search_best"] = load_checkpoint(paths.SEARCH_CHILD.format(best))
    return found


def main(params: dict) -> None:
    cfg = GeneralizeConfig.from_params(params, "generalize")
    SelectionConfig.from_params(params, "selection").check_disjoint(cfg.eval_seed, cfg.eval_episodes, "generalize")
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    checkpoints = networks()
    parent_a = checkpoints["parent_A"]
    dims = parent_a.arch.input_dim
    for checkpoint in checkpoints.values():
        checkpoint.expect_dims(dims, parent_a.arch.output_dim, str(parent_a.path))
    shifted = load_states(paths.IMPORTED_SHIFTED, dims) if cfg.shifted_states else None  # the `inputs` stage's
    sets = state_sets(load_states(paths.STATES_TRAIN, dims), load_states(paths.STATES_HELDOUT, dims), cfg, shifted)
    task = of_parents(parent_a.meta)
    shifts = environment_shifts(cfg, sets["heldout"].std(axis=0), task) if task else None
    variants, spots = parent_variants(task, [checkpoints[f"parent_{p}"].meta.get("variant", {}) for p in paths.PAIRS]) \
        if task else ({}, {})
    models = {name: c.model for name, c in checkpoints.items()}
    found, returns = evaluate(models["parent_A"], models["parent_B"], models, sets, task, shifts, cfg, unc, variants)
    summary = with_gaps(found, cfg)
    skills = skills_map(returns, task, params["parents"]["presets"][task.env_id]["pass_return"], spots) if task else None
    shown = [n for n in ("parent_A", "parent_B", GATED, "search_best", "dqn_baseline") if n in checkpoints]
    out = Outputs()
    out.add_json(paths.GENERALIZE_SUMMARY, {**metrics(summary, returns, task),
                                            **({"skills": skills_metrics(skills)} if skills else {})})
    out.add_text(paths.GENERALIZE_MARKDOWN, markdown(summary, cfg, unc.confidence, task, returns)
                 + (skills_markdown(skills, shown) if skills else ""))
    out.add_figure(paths.SKILLS_PNG, skills_figure(skills, shown, task.env_id) if skills
                   else skills_figure(None, [], "no environment"))
    out.add_csv(paths.GENERALIZE_CURVES, returns_rows(returns) if returns else [], empty_header=["shift", "level"])
    title = f"generalization, {task.env_id if task else 'no environment'}"
    out.add_figure(paths.GENERALIZE_PNG, robustness_figure(summary, cfg, returns, task, unc.confidence, title))
    out.commit()
    for name, s in summary["sets"].items():
        child = s["networks"][GATED]
        log.info("%s (%d states): child primary %.4g, primary/U %.4g, gap %.4g pp", name, s["n_states"],
                 child["primary"], child["primary_over_bound"], child["drop_pp"])
        if not cfg.report_only:
            warn_failed(f"generalization, {name}", s["checks"])
    for name, r in (returns or {}).items():
        worst = min(((i["mean"], f"{kind} {level:g}") for kind, levels in r["shifts"].items()
                     for level, i in levels.items()), default=(r["nominal"]["mean"], "unshifted"))
        log.info("%s: return %.4g unshifted, lowest %.4g (%s)", name, r["nominal"]["mean"], *worst)
    if returns is None:
        log.info("no environment (the parents' sidecar names none): returns under shift not measured")


if __name__ == "__main__":
    run(main)

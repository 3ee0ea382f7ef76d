"""Stage `analyze`: where on the held-out states the fine-tuned child departs from its parents, and why."""

import torch

from recomb.training.tasks import of_parents
from recomb.artifacts import Outputs, load_checkpoint, load_states
from recomb.evaluation import analysis
from recomb.evaluation.validation import q_values
from recomb.stats import UncertaintyConfig

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = analysis.AnalyzeConfig.from_params(params, "analyze")
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    networks = {"A": paths.PARENTS.format("A"), "B": paths.PARENTS.format("B"), "child": paths.CHILD,
                **{f"student_{p}": paths.STUDENTS.format(p) for p in paths.PAIRS},
                **{f"ptq_{p}": paths.PTQ_INT8.format(p) for p in paths.PAIRS}}
    networks = {name: load_checkpoint(path) for name, path in networks.items()}
    parent_a = networks["A"]
    heldout = load_states(paths.STATES_HELDOUT, parent_a.arch.input_dim)
    for checkpoint in networks.values():
        checkpoint.expect_dims(heldout.shape[1], parent_a.arch.output_dim, str(parent_a.path))
    cfg.check_actions(parent_a.arch.output_dim, str(parent_a.path))

    index = analysis.sample_states(len(heldout), cfg.max_states, cfg.sample_seed)
    states = torch.from_numpy(heldout[index])
    q = {name: q_values(checkpoint.model, states) for name, checkpoint in networks.items()}
    columns = analysis.disagreement_table(index, q["A"], q["B"], q["child"], cfg)
    comparisons = {"child_vs_A": (q["A"], q["child"]), "child_vs_B": (q["B"], q["child"]),
                   **{f"ptq_{p}": (q[f"student_{p}"], q[f"ptq_{p}"]) for p in paths.PAIRS}}
    margins = analysis.margin_analysis(comparisons, {"child_vs_parents": ("child_vs_A", "child_vs_B")}, cfg, unc)
    summary = analysis.summary(columns, margins, len(heldout), cfg, unc)
    worst = analysis.worst_states(columns, heldout[index], cfg.worst_criterion, cfg.worst_k)

    out = Outputs()
    out.add_csv(paths.ANALYSIS_DISAGREEMENTS_CSV, analysis.rows(columns))
    out.add_json(paths.ANALYSIS_DISAGREEMENTS_JSON, analysis.disagreements_json(columns, cfg))
    out.add_json(paths.ANALYSIS_WORST.format(cfg.worst_k), worst)
    if cfg.activation_states:
        activations = analysis.hidden_activations(networks["child"].model, states[:cfg.activation_states],
                                                  cfg.activation_layer)
        out.add_states(paths.ANALYSIS_ACTIVATIONS.format(cfg.activation_layer), activations)
    out.add_json(paths.ANALYSIS_SUMMARY, summary)
    task = of_parents(parent_a.meta)
    out.add_figure(paths.ANALYSIS_STATE_PNG, analysis.state_space_figure(heldout[index], task, columns))
    out.add_figure(paths.ANALYSIS_MARGIN_PNG, analysis.margin_figure(margins, cfg, unc.confidence))
    files = [str(path) for path in out.files if path.suffix != ".md"]
    report = analysis.analysis_markdown(summary, margins, worst, cfg, unc.confidence, files)
    out.add_text(paths.ANALYSIS_MARKDOWN, report)
    out.commit()

    counts = summary["outcomes"]
    log.info("child on %d states: with both %d, sides with A %d, with B %d, against agreeing parents %d, neither %d",
             summary["n_states"], *counts.values())
    follows = summary["follows_more_confident_parent"]
    if "share" in follows:
        log.info("where the parents disagree the child sides with the more confident one on %.4g of %d states",
                 follows["share"], follows["states"])
    for name, found in summary["near_tie"].items():
        if "near_tie_share" in found:
            log.info("%s: %d disagreements, %.4g on near-ties (margin < %g; base rate %.4g)",
                     analysis.COMPARISON_LABELS[name],
                     found["disagreements"], found["near_tie_share"], cfg.near_tie_cut, found["near_tie_base_rate"])


if __name__ == "__main__":
    run(main)

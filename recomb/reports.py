"""Markdown renderings of validation reports: what a person reads after `dvc repro`."""

from __future__ import annotations


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def cell(value) -> str:
    """`fmt`, with `|` escaped so a label such as `max |ΔQ|` cannot split a Markdown table cell."""
    return fmt(value).replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rule(check: dict) -> str:
    """`>= 0.8` for a gate `{value, min: 0.8, passed}`, `<= 0.1` for one with `max`."""
    return f">= {fmt(check['min'])}" if "min" in check else f"<= {fmt(check['max'])}"


def checks_table(checks: dict[str, dict]) -> str:
    return table(["check", "value", "rule", "passed"],
                 [[name, c["value"], rule(c), c["passed"]] for name, c in checks.items()])


TIMING_POINTER = "Latency and throughput: `recomb timing` (data/reports/latest/timing.md; wall-clock, not hashed)."


def distillation_markdown(quality: dict, kl_direction: str) -> str:
    """Quality per pair: every metric and every gate (the deterministic, hashed report)."""
    parts = [
        f"# Distillation validation — {'PASSED' if quality['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {quality['n_heldout']} (never used for training). KL direction: {kl_direction}. "
        + TIMING_POINTER,
    ]
    for pair, report in quality["pairs"].items():
        parts += [
            "",
            f"## Pair {pair} — {'passed' if report['passed'] else 'FAILED'}",
            "",
            table(["metric", "value"], [[k, v] for k, v in report["fidelity"].items()]
                  + [[f"{figure.replace('_', ' ')} ({k})", v] for k, found in report["robustness"].items()
                     for figure, v in found.items()]
                  + [[f"greedy return ({k})", v] for k, v in report["greedy_return"].items()]),
            "",
            checks_table(report["checks"]),
        ]
    return "\n".join(parts) + "\n"


def quantized_markdown(quality: dict, definitions: str, modes: dict[str, str]) -> str:
    """Int8 vs float per student: every metric and every gate (the deterministic, hashed report)."""
    parts = [
        f"# Quantization validation — {'PASSED' if quality['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {quality['n_heldout']}. {definitions} " + TIMING_POINTER,
    ]
    for name, report in quality["students"].items():
        rows = [[k, v] for k, v in report["int8_vs_float"].items()]
        rows += [[f"agreement with teacher ({k})", v] for k, v in report["teacher_agreement"].items()]
        rows += [[f"greedy return ({k})", v] for k, v in report["greedy_return"].items()]
        rows += [["max |ΔQ| batched vs one at a time", report["batch_dependence_max_abs"]]]
        rows += [[f"{k} (float → int8)", f"{v['float']} → {v['int8']} ({v['int8'] / v['float']:.3f}×)"]
                 for k, v in report["size_bytes"].items()]
        parts += ["", f"## {name} ({modes[name]}) — {'passed' if report['passed'] else 'FAILED'}", "",
                  table(["metric", "value"], rows), "", checks_table(report["checks"])]
    return "\n".join(parts) + "\n"


def timing_markdown(timing: dict) -> str:
    """This run's latencies and throughputs on this machine, with their gates, and the time per crossover of
    each operator (never hashed, never gating CI)."""
    parts = [f"# Timing — {'PASSED' if timing['passed'] else 'FAILED'}", "",
             "Wall-clock figures of this run on this machine (one torch thread); they vary from run to run."]
    for pair, latency in timing["distillation"].items():
        parts += ["", f"## Student {pair} vs its teacher", "", checks_table(latency["checks"]), "",
                  "Batch-1 latency (ms): " + ", ".join(
                      f"{who} median {latency[who]['median_ms']:.4f} / p95 {latency[who]['p95_ms']:.4f}"
                      for who in ("teacher", "student"))]
    for name, speed in timing["quantization"].items():
        latency = speed["batch1_latency"]
        throughput = {k: v for k, v in speed.items() if k.startswith("throughput")}
        parts += ["", f"## {name} (int8) vs its float student", "", checks_table(speed["checks"]), "",
                  "Batch-1 latency (ms): " + ", ".join(
                      f"{who} median {latency[who]['median_ms']:.4f} / mean {latency[who]['mean_ms']:.4f}"
                      f" / p95 {latency[who]['p95_ms']:.4f}" for who in ("float", "int8")),
                  "", "Throughput (states/s): " + "; ".join(
                      f"{k}: float {v['float']:.0f}, int8 {v['int8']:.0f}" for k, v in throughput.items())]
    operators = timing["operators"]
    parts += ["", "## Crossover operators on the pipeline's pair", "",
              f"Wall time of one `crossover` call (state dicts out, child in), {operators['repeats']} calls per "
              "operator, operators taking turns:", "",
              table(["operator", "median ms", "mean ms", "min ms"],
                    [[mode, t["median_ms"], t["mean_ms"], t["min_ms"]]
                     for mode, t in operators["per_crossover_ms"].items()])]
    parts += ["", f"Process peak RSS: {timing['peak_rss_mib']:.1f} MiB."]
    return "\n".join(parts) + "\n"


def with_interval(value: float | None, low: float | None, high: float | None, digits: int = 4) -> str:
    """`0.7390 [0.7200, 0.7580]`; – when there is no figure."""
    if value is None:
        return "–"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def figure(figures: dict, key: str) -> str:
    return with_interval(figures[key], figures[f"{key}_ci"]["low"], figures[f"{key}_ci"]["high"])


def return_figure(returns: dict | None) -> str:
    """Mean ± std over episodes, and the interval of the mean."""
    if returns is None:
        return "–"
    return f"{returns['mean']:.1f} ± {returns['std']:.1f} [{returns['low']:.1f}, {returns['high']:.1f}]"


def recombination_markdown(report: dict, definitions: dict[str, str], parents_role: str) -> str:
    """Parents, students, int8 students and children: agreement with both parents and online return."""
    rows = []
    for name, agreement in report["agreement"].items():
        child = report["children"].get(name, {})
        rows.append([name, figure(agreement, "agreement_a"), figure(agreement, "agreement_b"),
                     child.get("oracle_agreement"), figure(agreement, "primary_over_bound"),
                     figure(agreement, "gain_over_copy"), return_figure(report["greedy_return_interval"][name])])
    chosen = [[name, s["n_states"], s["agreement_a"], s["agreement_b"],
               with_interval(s["primary"], s["primary_low"], s["primary_high"]), s["return"]]
              for name, s in report["selection"].items()]
    pct = f"{100 * report['confidence']:g}%"
    parts = [
        f"# Recombination validation — {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {report['n_heldout']}; offline roles A and B: `{parents_role}`. "
        f"Parents agree on {report['parents_agreement']:.4f} of states, so U = {report['bound']:.4f}. "
        f"Brackets: {pct} bootstrap intervals over states (agreements) or episodes (returns).",
        "",
        table(["network", "agreement A", "agreement B", "oracle", "primary / U", "gain over copy",
               "greedy return (mean ± std)"], rows),
        "",
        checks_table(report["checks"]),
        "",
        "What the choosers read (the fine-tuned child's best epoch, the search ranking): validation states drawn "
        "from the train states, and episodes disjoint from the reported ones. They never see the held-out states.",
        "",
        table(["child", "validation states", "agreement A", "agreement B", "primary", "return (choosing episodes)"],
              chosen),
        "",
        *(f"- {key}: {text}" for key, text in definitions.items()),
    ]
    return "\n".join(parts) + "\n"


def multigen_markdown(summary: list[dict], selection: str, confidence: float) -> str:
    """One row per generation; every score is against the original parents, so rows compare."""
    def interval(s: dict, key: str, digits: int) -> str:
        return with_interval(s[f"best_{key}"], s[f"best_{key}_low"], s[f"best_{key}_high"], digits)

    header = ["generation", "parents (A, B)", "best child", "its validation primary", "its held-out primary",
              "its primary / U", "its gain over copy", "its return", "max return", "mean primary"]
    rows = [[s["generation"], f"{s['parent_a']}, {s['parent_b']}", s["best_child"], s["best_val_primary"],
             interval(s, "primary", 4), interval(s, "primary_over_bound", 4), interval(s, "gain_over_copy", 4),
             interval(s, "online_return", 1),
             s["max_online_return"], s["mean_primary"]] for s in summary]
    return "\n".join([f"# Multi-generation search ({selection})", "",
                      "The best child of each generation is the leader of the search ranking (validation states drawn "
                      "from train, and the choosing episodes); it is reported on the held-out states and the reported "
                      f"episodes, with {100 * confidence:g}% bootstrap intervals. Every child is scored against the "
                      "ORIGINAL parents, so generations are comparable.", "", table(header, rows), ""])

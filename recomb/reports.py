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


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def checks_table(checks: dict[str, dict]) -> str:
    return table(
        ["check", "value", "rule", "passed"],
        [[name, c["value"], f"{c['op']} {fmt(c['threshold'])}", c["passed"]] for name, c in checks.items()],
    )


def distillation_markdown(quality: dict, timing: dict) -> str:
    """Quality per pair (hashed report) plus the latency figures of this run (not hashed)."""
    parts = [
        f"# Distillation validation — {'PASSED' if quality['passed'] and timing['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {quality['n_heldout']} (never used for training). KL direction: {quality['kl_direction']}.",
    ]
    for pair, report in quality["pairs"].items():
        latency = timing["pairs"][pair]
        fid = report["fidelity"]
        parts += [
            "",
            f"## Pair {pair} — {'passed' if report['passed'] and latency['passed'] else 'FAILED'}",
            "",
            table(["metric", "value"], [[k, v] for k, v in fid.items()]
                  + [[f"robustness agreement ({k})", v] for k, v in report["robustness_agreement"].items()]
                  + [[f"greedy return ({k})", v] for k, v in report["greedy_return"].items()]),
            "",
            checks_table({**report["checks"], **latency["checks"]}),
            "",
            "Batch-1 latency (ms, this run): "
            + ", ".join(f"{who} median {latency[who]['median_ms']:.4f} / p95 {latency[who]['p95_ms']:.4f}"
                        for who in ("teacher", "student")),
        ]
    return "\n".join(parts) + "\n"


def quantized_markdown(quality: dict, timing: dict, definitions: str) -> str:
    """Int8 vs float per student (hashed report) plus this run's speed figures (not hashed)."""
    parts = [
        f"# Quantization validation — {'PASSED' if quality['passed'] and timing['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {quality['n_heldout']}. {definitions}",
    ]
    for name, report in quality["students"].items():
        speed = timing["students"][name]
        latency = speed["batch1_latency"]
        throughput = {k: v for k, v in speed.items() if k.startswith("throughput")}
        rows = [[k, v] for k, v in report["int8_vs_float"].items()]
        rows += [[f"agreement with teacher ({k})", v] for k, v in report["teacher_agreement"].items()]
        rows += [[f"greedy return ({k})", v] for k, v in report["greedy_return"].items()]
        rows += [["max |ΔQ| batched vs one at a time", report["batch_dependence_max_abs"]]]
        rows += [[f"{k} (float → int8)", f"{v['float']} → {v['int8']} ({v['int8'] / v['float']:.3f}×)"]
                 for k, v in report["size_bytes"].items()]
        parts += [
            "",
            f"## {name} ({report['mode']}) — {'passed' if report['passed'] and speed['passed'] else 'FAILED'}",
            "",
            table(["metric", "value"], rows),
            "",
            checks_table({**report["checks"], **speed["checks"]}),
            "",
            "Batch-1 latency (ms, this run): "
            + ", ".join(f"{who} median {latency[who]['median_ms']:.4f} / mean {latency[who]['mean_ms']:.4f}"
                        f" / p95 {latency[who]['p95_ms']:.4f}" for who in ("float", "int8")),
            "",
            "Throughput (states/s, this run): "
            + "; ".join(f"{k}: float {v['float']:.0f}, int8 {v['int8']:.0f}" for k, v in throughput.items()),
        ]
    parts += ["", f"Process peak RSS: {timing['peak_rss_mib']:.1f} MiB."]
    return "\n".join(parts) + "\n"


def recombination_markdown(report: dict, definitions: dict[str, str]) -> str:
    """Parents, students, int8 students and children: agreement with both parents and online return."""
    rows = []
    for name, agreement in report["agreement"].items():
        child = report["children"].get(name, {})
        rows.append([name, agreement["agreement_a"], agreement["agreement_b"], child.get("oracle_agreement"),
                     child.get("primary_over_bound"), report["greedy_return"][name]])
    parts = [
        f"# Recombination validation — {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"Held-out states: {report['n_heldout']}; offline roles A and B: `{report['parents_role']}`. "
        f"Parents agree on {report['parents_agreement']:.4f} of states, so U = {report['bound']:.4f}.",
        "",
        table(["network", "agreement A", "agreement B", "oracle", "primary / U", "greedy return"], rows),
        "",
        checks_table(report["checks"]),
        "",
        *(f"- {key}: {text}" for key, text in definitions.items()),
    ]
    return "\n".join(parts) + "\n"


def multigen_markdown(summary: list[dict], selection: str) -> str:
    """One row per generation; every score is against the original parents, so rows compare."""
    header = ["generation", "parents (A, B)", "best child", "best primary", "best primary / U",
              "best child's return", "max return", "mean primary"]
    rows = [[s["generation"], f"{s['parent_a']}, {s['parent_b']}", s["best_child"], s["best_primary"],
             s["best_primary_over_bound"], s["best_online_return"], s["max_online_return"], s["mean_primary"]]
            for s in summary]
    return "\n".join([f"# Multi-generation search ({selection})", "",
                      "Every child is scored against the ORIGINAL parents (offline on held-out states, online "
                      "in the environment), so generations are comparable.", "", table(header, rows), ""])

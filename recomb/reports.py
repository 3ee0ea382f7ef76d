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

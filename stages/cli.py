"""The `recomb` subcommands (run by `recomb.cli`): `recomb leaderboard` ranks DVC crossover experiments, `recomb check` gates CI,
`recomb timing` measures this machine's latencies, `recomb machine` and `recomb lock-diff` say how
this machine differs from the one that made the committed dvc.lock, `recomb ablation` plans the ablation (--dry-run) or aggregates
DVC experiments over seeds (--from-exps), `recomb export` writes the child as ONNX, a torch state dict and an SB3 zip.

`recomb check` exits 1 when a quality gate of the last `dvc repro` failed (the `report` stage's verdict).

Thin on purpose: reading `dvc exp show` rows (`dvc.api.exp_show`, or a saved `--csv`), ranking and
rendering live in `recomb.evaluation.leaderboard`, shared with the `search` stage; the gates' verdict in `recomb.evaluation.verdict`.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path


from recomb.artifacts import Outputs, load_checkpoint, read_json
from recomb.export import architecture_card, onnx_bytes, sb3_zip_bytes, state_dict_bytes
from recomb.reproducibility import describe_machine, explain, fingerprint, fingerprint_differences, lock_differences
from recomb.config import load_params, pipeline_file, pipeline_stages, read_text
from recomb.errors import RecombError
from recomb.recombination.search import SearchConfig
from recomb.evaluation.validation import ValidateRecombConfig
from recomb.evaluation.leaderboard import (context_keys, context_params, differing_keys, experiment_rows,
                                           groups_from_exp_show, markdown, ranked, recommendation, recipe,
                                           rows_from_csv)
from recomb.evaluation.verdict import check_lines
from recomb.evaluation.ablation import plan, plan_dict, plan_lines, plan_markdown, sharing
from recomb.evaluation.ablation_summary import rows_from_experiments, summary
from recomb.stats import UncertaintyConfig

from . import paths, timing
from .params_check import SECTIONS, check_params, validate_section
from .common import run as run_stage, with_task_values

PARAMS_FILE = Path("params.yaml")
DVC_FILE = Path(paths.PIPELINE)
DEFAULT_OUT = Path("data/reports/leaderboard")
DEFAULT_VERDICT = Path(paths.PIPELINE_REPORT)


def read_exp_show(source: str | None) -> list[dict]:
    """The rows of `dvc exp show`: `dvc.api.exp_show()` run here (None), or `dvc exp show --csv` output from
    stdin (`-`) or a file."""
    if source is None:
        return experiment_rows()
    name = "stdin" if source == "-" else source
    try:
        return rows_from_csv(sys.stdin.read() if source == "-" else Path(source).read_text(), name)
    except OSError as exc:
        raise RecombError(f"{name}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise RecombError(f"{name}: not `dvc exp show --csv` output (not UTF-8 text)") from None


def threshold(value, where: str) -> float:
    """A degenerate threshold in [0, 1] (0 = off), as the search stage accepts it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecombError(f"{where}: must be a number in [0, 1] (got {value!r})") from None
    if not (math.isfinite(number) and 0 <= number <= 1):
        raise RecombError(f"{where}: must be in [0, 1], 0 = off (got {value!r})")
    return number


def project_params() -> dict:
    """This repo's params.yaml; outside a recomb project, none (nothing is flagged, no return is asked)."""
    return load_params(PARAMS_FILE) if PARAMS_FILE.is_file() else {}


def degenerate_cutoff(params: dict) -> float:
    """params.yaml's search.degenerate_threshold, checked as the search stage checks it; 0 without one."""
    return SearchConfig.from_params(params, "search").degenerate_threshold if "search" in params else 0.0


BAR_PARAMS = ("parents.env", "validate_recombination.thresholds.min_child_return")  # what a return bar depends on


def return_bar(params: dict, context: dict) -> float | None:
    """The return bar of a group of experiments: params.yaml's, with the group's own task and `min_child_return`
    (`BAR_PARAMS`, when its rows have them) in place of the workspace's."""
    params = {**params}
    for name in BAR_PARAMS:
        if context.get(name) is None:
            continue
        *branch, leaf = name.split(".")
        node = params
        for key in branch:
            node[key] = node = dict(node.get(key) or {})
        node[leaf] = context[name]
    params = with_task_values(params)
    return (ValidateRecombConfig.from_params(params, "validate_recombination").thresholds.min_child_return
            if "validate_recombination" in params else None)


def how_to_apply(best: dict, context: str = "") -> str:
    """Commands that make the winner the pipeline's committed child; `context` names the params its group
    differs in from the others (they change with it)."""
    commit = f'git commit -am "Crossover {recipe(best, True)}, regime {best["regime"]}{context}"'
    if best["experiment"] == "workspace":
        return ("  it is your workspace already:\n  dvc repro            # nothing should re-run\n"
                f"  {commit}")
    return (f"  dvc exp apply {best['experiment']}\n  dvc repro            # nothing should re-run\n"
            f"  {commit}")


def leaderboard(args: argparse.Namespace) -> None:
    """One leaderboard per group of experiments that share their context params (`groups_from_exp_show`)."""
    params = project_params()
    cutoff = (threshold(args.degenerate_threshold, "--degenerate-threshold") if args.degenerate_threshold is not None
              else degenerate_cutoff(params))
    stages = pipeline_stages(DVC_FILE) if DVC_FILE.is_file() else {}
    keys = context_keys(params, context_params(stages)) if "validate_recombination" in stages else []
    source = {None: "dvc.api.exp_show()", "-": "stdin"}.get(args.exp_show, args.exp_show)
    groups = groups_from_exp_show(read_exp_show(args.exp_show), keys, source)
    shown = differing_keys(groups)
    tables, advice, saved = [], [], []
    for group in groups:
        label = ", ".join(f"{key}={group.context[key]}" for key in shown)
        bar = return_bar(params, group.context)
        rows = ranked(group.rows, cutoff, bar)
        heading = [f"## Experiments with {label}", ""] if shown else []
        tables.append("\n".join([*heading, markdown(rows, group.baselines, bar)]))
        advice.append("\n".join([*heading, recommendation(rows, group.baselines,
                                                          how_to_apply(rows[0], f" ({label})" if shown else ""),
                                                          bar, group.confidence, paired=False)]))
        saved.append({"context": {key: group.context[key] for key in shown}, "return_bar": bar, "rows": rows,
                      "baselines": group.baselines, "confidence": group.confidence})
    intro = ([f"Experiments differ in {', '.join(shown)}: each group is ranked on its own, against its own "
              "parents and return bar.", ""] if shown else [])
    table = "\n".join([*intro, *tables])
    out = Outputs()
    out.add_text(args.out / "leaderboard.md", table)
    out.add_json(args.out / "leaderboard.json", {"groups": saved})
    out.add_text(args.out / "recommendation.txt", "\n".join(advice))
    out.commit()
    print(table, end="")


def check(args: argparse.Namespace) -> None:
    passed, lines = check_lines(read_json(args.report, "pipeline report"), str(args.report))
    print("\n".join(lines))
    if not passed:
        sys.exit(1)


def machine(args: argparse.Namespace) -> None:
    """This machine's CPU and dispatch pins, written to `--write` (default: the non-hashed reports);
    with --compare, the fields in which another machine's fingerprint differs."""
    here = fingerprint()
    out = Outputs()
    out.add_json(args.write, here)
    out.commit()
    print(describe_machine(here))
    print(f"wrote {args.write}")
    if args.compare:
        other = read_json(args.compare, "machine fingerprint")
        changed = fingerprint_differences(other, here)
        print(f"{args.compare} → this machine:" if changed else f"{args.compare}: same fingerprint")
        print("\n".join(f"  {line}" for line in changed))


def lock_diff(args: argparse.Namespace) -> None:
    """Compare ./dvc.lock with the committed one; when they differ, say where the divergence starts and on
    which machines, and exit 1."""
    try:
        committed = subprocess.run(["git", "show", f"{args.against}:dvc.lock"], capture_output=True, text=True,
                                   check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RecombError(f"dvc.lock at {args.against}: cannot read it from git ({exc})") from None
    current = read_text(Path("dvc.lock")) if Path("dvc.lock").is_file() else ""
    differences = lock_differences(pipeline_file(committed, f"dvc.lock at {args.against}"),
                                   pipeline_file(current, "dvc.lock"))
    if not differences:
        print(f"dvc.lock reproduces {args.against}'s: every stage's outputs are the same bits")
        return
    lock_machine = read_json(paths.LOCK_MACHINE, "lock machine") if Path(paths.LOCK_MACHINE).is_file() else None
    print("\n".join(explain(differences, fingerprint(), lock_machine)))
    sys.exit(1)


def ablation(args: argparse.Namespace) -> None:
    """--dry-run: the plan, every override checked, written beside a stub summary; nothing trained.
    --from-exps: finished DVC experiments (one per seed) summarised as the ablation stage summarises its runs."""
    check_params()  # every section first, as `recomb params` does
    params = with_task_values(load_params(PARAMS_FILE, SECTIONS))
    if args.dry_run:
        planned = sharing(plan(params, validate_section, paths.ABLATION_DIR, str(PARAMS_FILE)),
                          pipeline_stages(DVC_FILE))
        out = Outputs()
        out.add_json(f"{paths.ABLATION_PLAN}/ablation_plan.json", plan_dict(planned))
        out.add_text(f"{paths.ABLATION_PLAN}/ablation_plan.md", plan_markdown(planned))
        out.commit()
        print("\n".join(plan_lines(planned)))
        print(f"wrote {paths.ABLATION_PLAN}/ablation_plan.json and .md (dry run: nothing trained; "
              "the runs: dvc repro ablation/dvc.yaml)")
        return
    reports = {"distillation": paths.DISTILL_REPORT, "quantized": paths.QUANT_REPORT,
               "recombination": paths.RECOMB_REPORT}
    rows = rows_from_experiments(read_exp_show(args.exp_show), params, str(PARAMS_FILE), reports)
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    pair = (conditions[1], conditions[0]) if len(conditions) == 2 else None
    out = summary(rows, UncertaintyConfig.from_params(params, "uncertainty"), pair,
                  "Each row is one finished DVC experiment (`dvc exp show`); a condition is the experiments that "
                  "differ only in the seed key.", "its experiment (`dvc exp apply <name>`)", paths.ABLATION_FROM_EXPS)
    out.commit()
    print(out.files[Path(paths.ABLATION_FROM_EXPS["markdown"])].decode(), end="")


def export(args: argparse.Namespace) -> None:
    """The fine-tuned child (and its int8 form, when the run made one) in the formats users load."""
    children = {"child": Path(paths.CHILD), "child_int8": Path(paths.CHILD_INT8)}
    if not children["child"].is_file():
        raise RecombError(f"{paths.CHILD}: not found; run the pipeline first (make run)")
    env = load_checkpoint(paths.PARENTS.format("A")).meta.get("env")  # the task the SB3 agent is built on
    out = Outputs()
    for name, path in children.items():
        if not path.is_file():
            continue
        checkpoint = load_checkpoint(path)
        out.add_bytes(args.out / f"{name}.onnx", onnx_bytes(checkpoint.model))
        out.add_json(args.out / f"{name}.json", architecture_card(checkpoint.model, checkpoint.meta))
        if checkpoint.kind == "float":
            out.add_bytes(args.out / f"{name}.pt", state_dict_bytes(checkpoint.model))
        if checkpoint.kind == "float" and not checkpoint.arch.layer_norm:
            out.add_bytes(args.out / f"{name}_sb3.zip", sb3_zip_bytes(checkpoint.model, env))
    out.commit()
    for path in sorted(out.files):
        print(f"wrote {path}")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="recomb", description=__doc__.split("\n\n")[0].replace("\n", " "))
    commands = cli.add_subparsers(dest="command", required=True)
    board = commands.add_parser("leaderboard", help="rank DVC crossover experiments by their recombination metrics",
                                description="Rank this repo's DVC experiments as the search stage ranks its "
                                            "children (children that reach the return bar first, then validation "
                                            "primary, then validation return) and write leaderboard.md, "
                                            "leaderboard.json and recommendation.txt.")
    board.add_argument("--exp-show", metavar="FILE",
                       help="saved `dvc exp show --csv` output ('-' = stdin); default: dvc.api.exp_show() here")
    board.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                       help=f"directory for the reports (default: {DEFAULT_OUT})")
    board.add_argument("--degenerate-threshold", metavar="X",
                       help="flag children whose primary is below X, 0 = off "
                            "(default: params.yaml search.degenerate_threshold, else 0)")
    board.set_defaults(handler=leaderboard)
    gate = commands.add_parser("check", help="exit 1 when a quality gate of the pipeline failed",
                               description="Read the `report` stage's verdict, print each failed gate and exit 1 "
                                           "when any failed (0 when all passed).")
    gate.add_argument("--report", type=Path, default=DEFAULT_VERDICT, metavar="FILE",
                      help=f"the pipeline report (default: {DEFAULT_VERDICT})")
    gate.set_defaults(handler=check)
    timed = commands.add_parser("timing", help="measure this machine's latencies (data/reports/latest/timing.md)",
                                description="Batch-1 latency and throughput of the students and int8 students "
                                            "against their references, with the latency gates; wall-clock figures, "
                                            "so no DVC stage hashes them.")
    timed.set_defaults(handler=lambda args: run_stage(timing.main))
    valid = commands.add_parser("params", help="validate every section of params.yaml (before `dvc repro`)",
                                description="Check every params.yaml section as its stage would, so a mistake "
                                            "stops before DVC removes any stage's outputs.")
    valid.set_defaults(handler=lambda args: print(f"{PARAMS_FILE}: all {check_params()} sections valid"))
    mach = commands.add_parser("machine", help=f"this machine's CPU and dispatch pins ({paths.MACHINE_REPORT})",
                               description="Write this machine's fingerprint (CPU model, vendor and ISA flags, the "
                                           "dispatch pins in effect, torch/MKL/numpy versions) as JSON; "
                                           "--compare FILE lists the fields another machine's differs in.")
    mach.add_argument("--write", type=Path, default=Path(paths.MACHINE_REPORT), metavar="FILE",
                      help=f"where to write it (default: {paths.MACHINE_REPORT})")
    mach.add_argument("--compare", type=Path, metavar="FILE", help="another machine's machine.json")
    mach.set_defaults(handler=machine)
    ldiff = commands.add_parser("lock-diff", help="does ./dvc.lock reproduce the committed one? (make repro-check)",
                                description="Compare ./dvc.lock with the committed one; when they differ, print the "
                                            "first stage in DAG order whose outputs differ, which files, and this "
                                            f"machine against the one that made the lock ({paths.LOCK_MACHINE}); "
                                            "exit 1.")
    ldiff.add_argument("--against", default="HEAD", metavar="REV", help="the git revision to compare with (HEAD)")
    ldiff.set_defaults(handler=lock_diff)
    abl = commands.add_parser("ablation", help="plan the ablation (--dry-run) or summarise seed experiments "
                                               "(--from-exps)",
                              description="--dry-run: check params.yaml's ablation section (every condition's "
                                          f"overrides by their sections' rules), print the runs, their folders and "
                                          f"the work they share, write {paths.ABLATION_PLAN}/ablation_plan.{{json,md}}."
                                          " --from-exps: summarise finished DVC experiments (a seed sweep) with "
                                          f"intervals across seeds into {paths.ABLATION_FROM_EXPS}/. The runs "
                                          "themselves: dvc repro ablation/dvc.yaml.")
    mode = abl.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="plan only, train nothing")
    mode.add_argument("--from-exps", action="store_true", help="summarise `dvc exp show` rows over seeds")
    abl.add_argument("--exp-show", metavar="FILE", help="with --from-exps: saved `dvc exp show --csv` output "
                                                        "('-' = stdin); default: dvc.api.exp_show() here")
    abl.set_defaults(handler=ablation)
    exp = commands.add_parser("export", help="the child as ONNX, a torch state dict and (plain family) an SB3 zip",
                              description=f"Write the fine-tuned child ({paths.CHILD}) and its int8 form, when the "
                                          "run made one, as ONNX (input `states`, output `q_values`), a torch "
                                          "state dict (float only; AgentFarm's BaseQNetwork layout for the "
                                          "LayerNorm family), an SB3 DQN zip (float, plain family) and a JSON "
                                          "card of the architecture. ONNX and SB3 need the `interop` extra.")
    exp.add_argument("--out", type=Path, default=Path(paths.EXPORT_DIR), metavar="DIR",
                     help=f"where to write them (default: {paths.EXPORT_DIR})")
    exp.set_defaults(handler=export)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `recomb` console script; a user mistake ends as `error: <one line>` and exit 1."""
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except RecombError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

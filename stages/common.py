"""What every stage shares: params loading, thread count, logging, progress, one-line errors."""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from recomb import dispatch
from recomb.config import Section, load_params
from recomb.errors import RecombError
from recomb.reports import rule

PARAMS_FILE = "params.yaml"
log = logging.getLogger("recomb")


@dataclass(frozen=True)
class RuntimeConfig(Section):
    sections = ("runtime",)

    torch_threads: int

    def check(self) -> None:
        self.require(self.torch_threads >= 1, "torch_threads", "must be ≥ 1")


def warn_failed(report: str, checks: dict[str, dict]) -> None:
    """One WARNING line per failed check of `report`: a failed gate does not stop the
    stage (its reports are still written, to show why), so the log must say so."""
    for name, check in checks.items():
        if not check["passed"]:
            log.warning("%s: gate %s failed: %.4g (rule %s)", report, name, check["value"], rule(check))


def ret(value: float | None) -> str:
    """A mean return for a log line: one decimal, or why there is none."""
    return "n/a (no environment)" if value is None else f"{value:.1f}"


def progress(total: int, desc: str) -> tqdm:
    """A progress bar on a terminal, silence in logs and CI."""
    return tqdm(total=total, desc=desc, leave=False, disable=not sys.stderr.isatty())


class WorkerBars:
    """`recomb.parallel.Progress` for jobs in worker processes: one bar per job slot on a terminal.

    It pickles without its bars, so each worker draws the bars of the jobs it runs
    (at the slot's line); a job's bar closes when it reports done = total.
    """

    def __init__(self) -> None:
        self._bars: dict[int, tqdm] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._bars = {}

    def __call__(self, slot: int, label: str, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if slot not in self._bars:
            self._bars[slot] = tqdm(total=total, desc=label, position=slot, leave=False)
        bar = self._bars[slot]
        bar.update(done - bar.n)
        if done >= total:
            self._bars.pop(slot).close()


# A key set to `task` takes its value from the row of the parents' task, parents.env: a return bar from its DQN
# preset (the bar its parents had to reach), a budget from `tasks` (what its students need to reach it).
TASK_VALUES = {
    ("validate_distillation", "thresholds", "min_greedy_return"): ("parents", "presets", "pass_return"),
    ("validate_quantized", "thresholds", "min_greedy_return"): ("parents", "presets", "pass_return"),
    ("validate_recombination", "thresholds", "min_child_return"): ("parents", "presets", "pass_return"),
    ("parents", "dqn", "buffer", "n_states"): ("tasks", "buffer_states"),
    ("distill", "epochs"): ("tasks", "distill_epochs"),
    ("distill", "augment_copies"): ("tasks", "augment_copies"),
    ("validate_quantized", "return_gated"): ("tasks", "int8_return_gated"),
    ("regimes", "tuned", "epochs"): ("tasks", "finetune_epochs"),
}
RETURN_BARS = {key for key, (*_, leaf) in TASK_VALUES.items() if leaf == "pass_return"}


def _at(tree, path: tuple[str, ...]):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def with_task_values(params: dict) -> dict:
    """`params` with each key of `TASK_VALUES` that says `task` replaced by the value of parents.env's row.

    A return bar of a task without a preset becomes null (no gate: a source with no task to play); a budget
    of a task without a `tasks` row is a one-line error naming the row."""
    env = _at(params, ("parents", "env"))
    resolved = copy.deepcopy(params)
    for key, (*table, leaf) in TASK_VALUES.items():
        if _at(params, key) != "task":
            continue
        value = _at(params, (*table, env, leaf))
        if value is None and key not in RETURN_BARS:
            raise RecombError(f"params.yaml: parents.env: {env} has no row {'.'.join(table)}.{env} with {leaf}, "
                              f"which {'.'.join(key)}: task takes (add the row, or set {key[-1]} itself)")
        _at(resolved, key[:-1])[key[-1]] = value
    return resolved


def run(main: Callable[[dict], None]) -> None:
    """Run `main(params)`; a user mistake ends as `error: <one line>` and exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        unpinned = dispatch.check()
        if unpinned:
            raise RecombError("dispatch not pinned, results would depend on this CPU: " + "; ".join(unpinned))
        params = with_task_values(load_params(PARAMS_FILE))  # unknown sections: refused by the params stage, first
        torch.set_num_threads(RuntimeConfig.from_params(params, "runtime").torch_threads)
        main(params)
    except RecombError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

"""What every stage shares: params loading, thread count, logging, progress, one-line errors."""

from __future__ import annotations

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


TASK_BARS = (("validate_distillation", "min_greedy_return"), ("validate_quantized", "min_greedy_return"),
             ("validate_recombination", "min_child_return"))  # return gates that follow the task when `task`


def with_task_bars(params: dict) -> dict:
    """`params` with each return gate set to `task` (`TASK_BARS`) replaced by the bar of the parents' task,
    `parents.presets.<parents.env>.pass_return`, or by null (no gate) when no preset names that task."""
    parents = params.get("parents") or {}
    preset = (parents.get("presets") or {}).get(parents.get("env"))
    bar = preset.get("pass_return") if isinstance(preset, dict) else None
    resolved = {**params}
    for section, key in TASK_BARS:
        thresholds = (params.get(section) or {}).get("thresholds")
        if isinstance(thresholds, dict) and thresholds.get(key) == "task":
            resolved[section] = {**params[section], "thresholds": {**thresholds, key: bar}}
    return resolved


def run(main: Callable[[dict], None]) -> None:
    """Run `main(params)`; a user mistake ends as `error: <one line>` and exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        unpinned = dispatch.check()
        if unpinned:
            raise RecombError("dispatch not pinned, results would depend on this CPU: " + "; ".join(unpinned))
        params = with_task_bars(load_params(PARAMS_FILE))  # unknown sections: refused by the params stage, first
        torch.set_num_threads(RuntimeConfig.from_params(params, "runtime").torch_threads)
        main(params)
    except RecombError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

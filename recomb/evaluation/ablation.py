"""The ablation's plan: conditions (which pipeline stages run, which params differ) × seeds.

A condition names a subset of the stages distill → quantize → crossover → compare and
overrides any params.yaml key (dvc's dotted names). Every override is applied to a copy of
the params and checked by the rules of the section it lands in (the caller's `validate`,
the one `recomb params` uses), so a bad condition stops before anything trains. The plan
also says which work the runs share: parents, students and int8 students are made once per
distinct set of the params sections their pipeline stages read (dvc.yaml's `params`: `shared_sections`),
not once per run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Callable, Literal

from ..config import Section, declared_params
from ..errors import RecombError

STAGES = ("distill", "quantize", "crossover", "compare")  # pipeline order: a condition's stages always run in it
NEEDS = {"quantize": "distill", "crossover": "distill", "compare": "crossover"}  # the reference's parse rules
DVC_STAGES = {  # what each ablation stage runs of this pipeline
    "distill": ("distill", "validate_distillation"),
    "quantize": ("ptq", "qat", "validate_quantized"),
    "crossover": ("crossover", "finetune"),
    "compare": ("validate_recombination",),
}
# What one seed of `ablation.seeds` sets, by parents.source: CartPole parents are trained, so a seed s is the
# parent pair s, s + 1 (everything downstream keeps its own seed); synthetic and files parents stay the same
# pair for every seed, so the seed drives what is trained from them: the students, the crossover's draw and
# the fine-tune (students A/B use s and s + 1, as their sections say).
SEED_KEYS = {
    "dqn": ("parents.dqn.seed",),
    "synthetic": ("distill.seed", "crossover.seed", "finetune.seed"),
    "files": ("distill.seed", "crossover.seed", "finetune.seed"),
}
# Work runs share: a parent pair, then students from it, then int8 students from those. Each kind, in this order,
# is done once in the first run's folder and copied to the others; the ablation stage that makes it (None: the
# parents, which every run has).
SHARED_BY = {"parents": None, "students": "distill", "quantized": "quantize"}
INT8_INPUTS = {"crossover": "crossover.parents", "compare": "validate_recombination.parents_role"}
INT8_PAIRS = ("quantized", "qat")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def pipeline_stages_of(what: str) -> tuple[str, ...]:
    """The pipeline stages (dvc.yaml names) a kind of shared work runs."""
    stage = SHARED_BY[what]
    return ("parents",) if stage is None else DVC_STAGES[stage]


def shared_sections(pipeline: dict) -> dict[str, tuple[str, ...]]:
    """Per kind of shared work, the params sections read by its pipeline stages and those before it (their dvc.yaml
    `params`): runs whose effective params agree on all of them can share that work."""
    found, sections = {}, []
    for what in SHARED_BY:
        for stage in pipeline_stages_of(what):
            for section in (key.split(".")[0] for key in declared_params(pipeline[stage])):
                if section not in sections:
                    sections.append(section)
        found[what] = tuple(sections)
    return found

Validate = Callable[[dict, str], object]


@dataclass(frozen=True)
class Condition(Section):
    stages: list[str]
    overrides: dict

    def check(self) -> None:
        known = ", ".join(STAGES)
        for stage in self.stages:
            self.require(stage in STAGES, "stages", f"unknown stage {stage!r} (expected some of: {known})")
        self.require(len(set(self.stages)) == len(self.stages), "stages", "a stage is listed twice")
        self.require(bool(self.stages), "stages", f"must list at least one of: {known}")
        for stage, needed in NEEDS.items():
            self.require(stage not in self.stages or needed in self.stages, "stages", f"{stage} needs {needed}")

    @property
    def ordered(self) -> tuple[str, ...]:
        """The stages in pipeline order, whatever order the file lists them in."""
        return tuple(stage for stage in STAGES if stage in self.stages)


@dataclass(frozen=True)
class AblationConfig(Section):
    sections = ("ablation",)

    seeds: list[int]
    conditions: dict
    workers: int
    backend: Literal["local", "ray"]
    ray_address: str
    improvement: dict  # {condition, over}: P(condition beats over), paired over seeds; {}: none

    def check(self) -> None:
        self.require(bool(self.seeds), "seeds", "must list at least one seed")
        self.require(all(s >= 0 for s in self.seeds), "seeds", "must be ≥ 0")
        self.require(len(set(self.seeds)) == len(self.seeds), "seeds", "a seed is listed twice")
        self.require(bool(self.conditions), "conditions", "must name at least one condition")
        for name in self.conditions:
            if not (isinstance(name, str) and NAME.fullmatch(name)):
                raise RecombError(f"{self._where}.conditions.{name}: a condition's name names its folder: "
                                  "letters, digits, _ . - only")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")
        self.require(isinstance(self.improvement, dict) and set(self.improvement) in (set(), {"condition", "over"}),
                     "improvement", "must be {condition: <name>, over: <name>} (or {}: none)")
        for key, name in self.improvement.items():
            self.require(name in self.conditions, "improvement",
                         f"{key}: no condition {name!r} (expected one of: {', '.join(map(str, self.conditions))})")
        self.require(not self.improvement or self.improvement["condition"] != self.improvement["over"],
                     "improvement", "compares a condition with itself")

    @property
    def pair(self) -> tuple[str, str] | None:
        """(condition, over) of `improvement`, or None."""
        return (self.improvement["condition"], self.improvement["over"]) if self.improvement else None

    def parsed(self) -> dict[str, Condition]:
        return {name: Condition.from_mapping(data, f"{self._where}.conditions.{name}")
                for name, data in self.conditions.items()}


@dataclass(frozen=True)
class Run:
    condition: str
    seed: int
    stages: tuple[str, ...]
    directory: str
    params: dict  # the effective params: the file's, the condition's overrides, the seed's keys


@dataclass(frozen=True)
class Shared:
    """Work done once for several runs: `what` (a SHARED_BY kind) in the first run's directory."""
    what: str
    runs: tuple[Run, ...]

    @property
    def stage(self) -> str | None:
        """The ablation stage that makes it (None: the parents, which every run has)."""
        return SHARED_BY[self.what]


@dataclass(frozen=True)
class Plan:
    config: AblationConfig
    conditions: dict[str, Condition]
    source: str
    runs: tuple[Run, ...]
    shared: tuple[Shared, ...] = ()  # `sharing` fills it in


def set_dotted(params: dict, key: str, value, where: str) -> str:
    """dvc's `-S section.key=value` on `params` in place: the key must exist. Returns its section."""
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        raise RecombError(f"{where}: no such key in params.yaml")
    node[last] = copy.deepcopy(value)
    return key.split(".")[0]


def _validated(params: dict, sections: dict[str, list[str]], validate: Validate, blame: Callable[[str], str]) -> None:
    """Check each touched section; its one-line error is re-told as `blame(key)`: the override (or seed) behind it."""
    for section, keys in sections.items():
        try:
            validate(params, section)
        except RecombError as exc:
            problem = str(exc).split(": ", 1)[-1]
            key = next((k for k in keys if problem.startswith(f"{k}: ")), keys[0])
            raise RecombError(f"{blame(key)}: {problem.removeprefix(f'{key}: ')}") from None


def effective_params(params: dict, name: str, condition: Condition, validate: Validate, where: str) -> dict:
    """The params a condition runs with: a copy of `params`, its overrides applied and checked."""
    effective = copy.deepcopy(params)
    touched: dict[str, list[str]] = {}
    for key, value in condition.overrides.items():
        at = f"{where}.conditions.{name}.overrides.{key}"
        if not isinstance(key, str):
            raise RecombError(f"{at}: an override is a dotted params key such as distill.lr")
        if key.split(".")[0] == "ablation":
            raise RecombError(f"{at}: a condition cannot override the ablation section")
        touched.setdefault(set_dotted(effective, key, value, at), []).append(key)
    _validated(effective, touched, validate, lambda key: f"{where}.conditions.{name}.overrides.{key}")
    for stage, key in INT8_INPUTS.items():
        pair = _get(effective, key)
        if stage in condition.stages and pair in INT8_PAIRS and "quantize" not in condition.stages:
            raise RecombError(f"{where}.conditions.{name}.stages: {stage} reads int8 students ({key} {pair}), "
                              "so it needs quantize")
    return effective


def _get(params: dict, key: str):
    node = params
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def seeded(params: dict, seed: int, name: str, condition: Condition, validate: Validate, where: str) -> dict:
    """A condition's params for one seed: the seed sets SEED_KEYS[parents.source] (a condition may not)."""
    source = params["parents"]["source"]
    keys = SEED_KEYS[source]
    clash = [k for k in condition.overrides if k in keys]
    if clash:
        raise RecombError(f"{where}.conditions.{name}.overrides.{clash[0]}: each seed of ablation.seeds sets it "
                          f"(parents.source {source}); remove the override")
    run = copy.deepcopy(params)
    touched: dict[str, list[str]] = {}
    for key in keys:
        touched.setdefault(set_dotted(run, key, seed, f"{where}.seeds"), []).append(key)
    _validated(run, touched, validate, lambda key: f"{where}.seeds: seed {seed} sets {key}")
    return run


def _sharing(what: str, runs: tuple[Run, ...], sections: tuple[str, ...]) -> tuple[Shared, ...]:
    """Runs that do `what` and agree on the sections it reads share it (grouped in run order)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if SHARED_BY[what] is None or SHARED_BY[what] in run.stages:
            key = json.dumps([run.params[s] for s in sections], sort_keys=True)
            groups.setdefault(key, []).append(run)
    return tuple(Shared(what, tuple(group)) for group in groups.values())


def plan(params: dict, validate: Validate, out_dir: str, source: str = "params.yaml") -> Plan:
    """Every (condition, seed) run with its stages, directory `<out_dir>/<condition>/seed_<s>/` and effective
    params. `validate(params, section)` raises the section's one-line RecombError. Which work the runs share is
    `sharing`'s, from the pipeline's declaration."""
    cfg = AblationConfig.from_params(params, "ablation", source)
    conditions = cfg.parsed()
    runs = []
    for name, condition in conditions.items():
        effective = effective_params(params, name, condition, validate, cfg._where)
        for seed in cfg.seeds:
            runs.append(Run(name, seed, condition.ordered, f"{out_dir}/{name}/seed_{seed}/",
                            seeded(effective, seed, name, condition, validate, cfg._where)))
    return Plan(cfg, conditions, params["parents"]["source"], tuple(runs))


def sharing(planned: Plan, pipeline: dict) -> Plan:
    """The plan with the work its runs share (`pipeline`: dvc.yaml's stages, whose params say what each reads)."""
    return dataclasses.replace(planned, shared=tuple(group for what, sections in shared_sections(pipeline).items()
                                                     for group in _sharing(what, planned.runs, sections)))


def seed_rule(source: str) -> str:
    """What a seed means for this parents source, and which states the runs share (for reports)."""
    keys = ", ".join(f"`{k}`" for k in SEED_KEYS[source])
    if source == "dqn":
        return (f"A seed s sets {keys}: the parent pair DQN-trained with seeds s and s + 1, and everything after it. "
                "The state buffer comes from each pair's own rollouts, so it is shared by the conditions of a seed, "
                "not across seeds.")
    return (f"A seed s sets {keys} (students A and B from s and s + 1). The parents and the state buffer "
            f"(parents.source {source}) are one and the same for every seed and condition, so rows compare.")


def _names(runs: tuple[Run, ...]) -> str:
    return ", ".join(f"{r.condition}/seed_{r.seed}" for r in runs)


def plan_lines(p: Plan) -> list[str]:
    """The plan, readable: header, conditions, one line per run, then the shared work."""
    cfg = p.config
    lines = [f"ablation plan: {len(p.conditions)} conditions × {len(cfg.seeds)} seeds = {len(p.runs)} runs "
             f"({cfg.backend}, {cfg.workers} workers)",
             seed_rule(p.source).replace("`", "")]
    for name, condition in p.conditions.items():
        overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in condition.overrides.items()) or "none"
        dvc = ", ".join(s for stage in condition.ordered for s in DVC_STAGES[stage])
        lines.append(f"condition {name}: {' → '.join(condition.ordered)} ({dvc}); overrides: {overrides}")
    width = max(len(r.condition) for r in p.runs)
    chain = max(len(" → ".join(r.stages)) for r in p.runs)
    for run in p.runs:
        stages = " → ".join(run.stages)
        lines.append(f"  {run.condition:<{width}}  seed {run.seed:<3} {stages:<{chain}}  {run.directory}")
    made = {what: sum(g.what == what for g in p.shared) for what in SHARED_BY}
    lines.append(f"shared: {made['parents']} parent pairs, {made['students']} student pairs and "
                 f"{made['quantized']} int8 student sets made for {len(p.runs)} runs")
    for group in p.shared:
        if len(group.runs) > 1:
            lines.append(f"  {group.what} made once in {group.runs[0].directory}, used by {_names(group.runs)}")
    return lines


def plan_dict(p: Plan) -> dict:
    """The stub summary: the plan as data (no results: nothing has run)."""
    return {
        "seeds": p.config.seeds, "workers": p.config.workers, "backend": p.config.backend,
        "improvement": p.config.improvement,
        "parents_source": p.source, "seed_keys": list(SEED_KEYS[p.source]),
        "conditions": {name: {"stages": list(c.ordered), "dvc_stages": [s for st in c.ordered for s in DVC_STAGES[st]],
                              "overrides": c.overrides} for name, c in p.conditions.items()},
        "runs": [{"condition": r.condition, "seed": r.seed, "stages": list(r.stages), "directory": r.directory}
                 for r in p.runs],
        "shared": [{"what": g.what, "directory": g.runs[0].directory, "runs": [f"{r.condition}/seed_{r.seed}"
                                                                                for r in g.runs]}
                   for g in p.shared],
    }


def plan_markdown(p: Plan) -> str:
    """The stub summary table: one row per (condition, seed), results to come from the ablation stage."""
    rows = ["# Ablation plan (dry run: nothing trained)", "",
            seed_rule(p.source), "",
            "| condition | seed | stages | directory | parents from | students from | int8 students from |",
            "|---|---|---|---|---|---|---|"]
    origin = {(id(r), g.what): f"`{g.runs[0].directory}`" for g in p.shared for r in g.runs}
    for run in p.runs:
        made = " | ".join(origin.get((id(run), what), "—") for what in SHARED_BY)
        rows.append(f"| {run.condition} | {run.seed} | {' → '.join(run.stages)} | `{run.directory}` | {made} |")
    return "\n".join(rows) + "\n"

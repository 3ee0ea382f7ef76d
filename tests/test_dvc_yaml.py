"""dvc.yaml declares every code file each stage runs, so editing one re-runs exactly the stages that use it."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = ("dvc.yaml", "ablation/dvc.yaml")  # the default pipeline, and the ablation's (wdir: the root)
STAGES = {name: body for file in PIPELINE_FILES
          for name, body in yaml.safe_load((ROOT / file).read_text())["stages"].items()}


def module_file(module: str) -> Path | None:
    """`recomb.recombination.search` → recomb/search.py (or a package's __init__.py); None outside the project."""
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The project modules one file imports, absolute and relative (`from . import paths`)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # `from .x` is this package's x, `from ..x` its parent's
                parts = package.split(".")
                base = ".".join(filter(None, [*parts[:len(parts) - node.level + 1], base]))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("recomb", "stages")}


def code_files(entry: str) -> set[str]:
    """Every project file `python -m <entry>` can import, the entry included."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        todo += imported_modules(path)
        todo += [module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)]  # packages run first
    return {str(p.relative_to(ROOT)) for p in seen if p.name != "__init__.py" or p.stat().st_size}


def is_code(dep: str) -> bool:
    return dep.startswith(("recomb/", "stages/")) and dep.endswith(".py")


def stage_code_files(stage: str) -> set[str]:
    return code_files(STAGES[stage]["cmd"].split()[-1])


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stages_code_deps_are_exactly_the_files_it_imports(stage):
    """A missing dep is a stale result waiting to happen; an extra one re-runs the stage for nothing.
    `python tests/test_dvc_yaml.py` rewrites the code deps of both pipeline files from the imports."""
    declared = {dep for dep in STAGES[stage]["deps"] if is_code(dep)}
    imported = stage_code_files(stage)
    assert not imported - declared, f"dvc.yaml stage {stage} lacks deps: {sorted(imported - declared)}"
    assert not declared - imported, f"dvc.yaml stage {stage} has deps it never imports: {sorted(declared - imported)}"


def rewrite_code_deps(file: Path) -> None:
    """Each stage's code deps in `file` set to its import closure (the entry first, then sorted); the data deps
    keep their lines (comments included) around them."""
    out: list[str] = []
    stage, block = None, None  # block: the data-dep lines of the deps list being read
    for line in file.read_text().splitlines() + [""]:
        stripped = line.split("#")[0].strip()
        if block is not None and not stripped.startswith("- "):
            indent = block.pop(0)
            entry = STAGES[stage]["cmd"].split()[-1].replace(".", "/") + ".py"
            code = sorted(stage_code_files(stage), key=lambda f: (f != entry, f))
            out += block[:1] + [f"{indent}- {dep}" for dep in code] + block[1:]
            block = None
        if block is not None:
            if not is_code(stripped[2:].strip()):
                block.append(line)
            continue
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            stage = stripped[:-1]
        out.append(line)
        if stripped == "deps:" and stage in STAGES:
            block = [line[:line.index("d")] + "  "]
    file.write_text("\n".join(out[:-1]) + "\n")


def declared_paths() -> set[str]:
    """Every path dvc.yaml names as a stage's dep, out, metric or plot."""
    found = set()
    for body in STAGES.values():
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in body.get(key, []):
                found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return found


def test_every_artifact_path_the_stages_write_is_declared_in_dvc_yaml():
    """stages/paths.py and dvc.yaml name the same files: a path in one only is a stale result waiting to happen."""
    from stages import paths
    declared = declared_paths()

    def covered(path: str) -> bool:  # the path itself, a declared folder holding it, or a folder of declared files
        return any(path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path + "/") for d in declared)

    templates = [value for name, value in vars(paths).items()
                 if name.isupper() and isinstance(value, str) and value.startswith("data/")
                 and not value.startswith("data/reports/latest/")  # `recomb timing`: on request, no stage's output
                 and value not in (paths.LOCK_MACHINE,  # written by hand with the lock it describes (`recomb machine`)
                                   paths.EXPORT_DIR)]  # `recomb export`, on request
    missing = [t for t in templates if not all(covered(t.format(pair)) for pair in paths.PAIRS)]
    assert not missing, f"written by a stage but not declared in dvc.yaml: {missing}"
    assert not covered("data/nowhere/file.json")  # the check can fail


def test_relative_imports_resolve_against_the_right_package():
    found = imported_modules(ROOT / "recomb/training/parents.py")  # `from . import envs`, `from ..artifacts import`
    assert {"recomb.training.tasks", "recomb.artifacts", "recomb.training.dqn"} <= found
    assert "recomb.training.artifacts" not in found


def test_every_declared_curve_has_a_title_and_axis_titles():
    """DVC titles an axis `y` when a plot has several y columns and no label: each curve says what it draws."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    curves = [next(iter(p.items())) for p in plots if isinstance(p, dict)]
    assert len(curves) == 7
    for name, spec in curves:
        assert all(spec.get(key) for key in ("title", "x_label", "y_label")), name
        assert spec["x"] in ("step", "epoch"), name  # a time axis; no shift kinds stacked on one `level` axis


if __name__ == "__main__":
    for name in PIPELINE_FILES:
        rewrite_code_deps(ROOT / name)


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "ablation/dvc.yaml"])
def test_a_stage_that_reads_a_task_value_depends_on_its_row(pipeline):
    """A key set to `task` (stages.common.TASK_VALUES) is read from the row of parents.env: every stage whose
    params cover the key must also cover that row's value, or editing the row would leave the stage stale."""
    from recomb.config import declared_params, load_params, pipeline_stages
    from stages.common import TASK_VALUES

    parents = load_params(ROOT / "params.yaml")["parents"]
    resolve = lambda dotted: dotted.replace("${parents.env}", parents["env"]).replace(  # noqa: E731
        "${parents.source}", parents["source"])

    def covers(declared: list[str], dotted: str) -> bool:
        return any(d in ("params.yaml", dotted) or dotted.startswith(f"{d}.") for d in declared)

    checked = 0
    for name, stage in pipeline_stages(ROOT / pipeline).items():
        declared = [resolve(d) for d in declared_params(stage)]
        for key, (*table, leaf) in TASK_VALUES.items():
            if covers(declared, ".".join(key)):
                row = ".".join((*table, parents["env"], leaf))
                assert covers(declared, row), f"{pipeline} {name}: reads {'.'.join(key)} but not {row}"
                checked += 1
    assert checked >= (6 if pipeline == "dvc.yaml" else 1)

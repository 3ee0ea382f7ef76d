"""dvc.yaml declares every code file each stage runs, so editing one re-runs exactly the stages that use it."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    """`recomb.search` → recomb/search.py (or a package's __init__.py); None outside the project."""
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
            if node.level:
                base = ".".join(filter(None, [package, base]))
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


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_code_file_a_stage_imports_is_one_of_its_deps(stage):
    entry = STAGES[stage]["cmd"].split()[-1]
    missing = sorted(code_files(entry) - set(STAGES[stage]["deps"]))
    assert not missing, f"dvc.yaml stage {stage} lacks deps: {missing}"

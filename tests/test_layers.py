"""The library is layered: a module imports only modules of its own layer or below, so a stage's code deps
(its import closure, test_dvc_yaml) hold only what it uses — editing the distillation loop re-runs no parents."""

from pathlib import Path

import pytest

from test_dvc_yaml import ROOT, imported_modules

# Lowest first. A module not listed takes its package's layer (`recomb.training` covers recomb/training/*.py).
LAYERS = (
    ("foundation", ("recomb", "recomb.errors", "recomb.portable", "recomb.dispatch", "recomb.reproducibility",
                    "recomb.config", "recomb.reports", "recomb.plots", "recomb.parallel",
                    "recomb.operator_knobs")),
    ("models and figures", ("recomb.networks", "recomb.optim", "recomb.metrics", "recomb.stats", "recomb.selection",
                            "recomb.layouts")),
    ("formats and tasks", ("recomb.quantization.int8", "recomb.training.envs", "recomb.training.tasks")),
    ("files and quantization", ("recomb.artifacts", "recomb.quantization.quantize", "recomb.export")),
    ("training", ("recomb.training",)),
    ("evaluation", ("recomb.evaluation",)),
    ("recombination", ("recomb.recombination",)),
    ("command line", ("recomb.cli",)),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest listed name that `module` is or lies under."""
    best = max(((len(name), index) for index, (_, names) in enumerate(LAYERS) for name in names
                if module == name or (module.startswith(name + ".") and name != "recomb")), default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it")
    return best[1]


LIBRARY = sorted(p for p in (ROOT / "recomb").rglob("*.py") if p.stat().st_size)  # empty __init__.py: no code


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_nothing_above_its_layer(path):
    module = module_name(path)
    mine = layer_of(module)
    known = {module_name(p) for p in LIBRARY}  # `from . import envs` also names the (empty) package: not code
    upward = [f"{dep} ({LAYERS[layer_of(dep)][0]})" for dep in sorted(imported_modules(path) & known)
              if layer_of(dep) > mine]
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports a higher layer: {', '.join(upward)}"
    assert not {dep for dep in imported_modules(path) if dep.startswith("stages")}, f"{module} imports a stage"


def test_the_layer_rule_can_fail():
    assert layer_of("recomb.training.distill") > layer_of("recomb.selection")
    assert layer_of("recomb.quantization.int8") < layer_of("recomb.quantization.quantize")
    assert layer_of("recomb.evaluation.anything_new") == 5
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("numpy")

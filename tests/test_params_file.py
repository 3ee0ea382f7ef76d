"""params.yaml survives DVC's own writer: `dvc exp run -S key=value` changes that value's line and nothing else.

And the end-to-end tests' small budgets (tests/data/small_budgets.yaml) stay keys of params.yaml, with its types.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` and queued experiments call

ROOT = Path(__file__).resolve().parents[1]


def changed_lines(before: Path, after: Path) -> list[str]:
    diff = subprocess.run(["git", "diff", "--no-index", "--unified=0", str(before), str(after)],
                          capture_output=True, text=True).stdout
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("override, old, new", [
    ("crossover.alpha=0.3", "  alpha: 0.5 ", "  alpha: 0.3 "),
    ("finetune.regime=short", "  regime: tuned ", "  regime: short "),
    ("regimes.short.epochs=6", "    epochs: 5\n", "    epochs: 6\n"),
])
def test_dvc_set_param_rewrites_exactly_the_changed_line(tmp_path, override, old, new):
    before, after = tmp_path / "before.yaml", tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", before)
    shutil.copy(ROOT / "params.yaml", after)
    apply_overrides(after, [override])
    lines = changed_lines(before, after)
    assert len(lines) == 2, lines
    assert lines[0].startswith("-") and old.strip() in lines[0] and lines[1].startswith("+") and new.strip() in lines[1]
    assert lines[0][1:].replace(old.strip(), new.strip()) == lines[1][1:]  # the comment and its column stay


def type_problem(value, reference) -> str | None:
    """Why `value` cannot stand in for params.yaml's `reference`: a stage would refuse it only mid-run, or take
    a whole section for a value."""
    if isinstance(reference, dict):
        return "a section of params.yaml, not a value: set its keys one by one"
    if reference == "task" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None  # `task` takes the task's row (stages.common.TASK_VALUES); a number fixes the value instead
    if type(value) is not type(reference):  # exact: a bool is not an int, an int not a float
        return f"{value!r} is a {type(value).__name__}, params.yaml's {reference!r} a {type(reference).__name__}"
    if isinstance(reference, list) and reference:
        kinds = {type(item) for item in reference}
        odd = [item for item in value if type(item) not in kinds]
        if odd:
            return f"items {odd!r} are not of the types of params.yaml's items {reference!r}"
    return None


def override_problems(overrides: dict, params: dict) -> list[str]:
    """What is wrong with dotted-key overrides of params: `Project.set` would add a key params.yaml lacks without a
    word (a renamed key would leave the full budget in place), so each must exist with the same type."""
    problems = []
    for key, value in overrides.items():
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                problems.append(f"{key}: no such key in params.yaml")
                break
            node = node[part]
        else:
            problem = type_problem(value, node)
            if problem:
                problems.append(f"{key}: {problem}")
    return problems


def test_the_small_budgets_are_keys_of_params_yaml_with_its_types():
    """tests/data/small_budgets.yaml must follow params.yaml: a key renamed or retyped there fails here."""
    import yaml
    from conftest import SMALL_SYNTHETIC
    assert override_problems(SMALL_SYNTHETIC, yaml.safe_load((ROOT / "params.yaml").read_text())) == []


@pytest.mark.parametrize("overrides, expected", [
    ({"qat.epochs": 3, "qat.epoch": 3, "nosection.epochs": 3, "qat.epochs.max": 3},
     ["qat.epoch: no such key", "nosection.epochs: no such key", "qat.epochs.max: no such key"]),
    ({"qat.epochs": 2.5}, ["qat.epochs: 2.5 is a float, params.yaml's "]),
    ({"qat.epochs": True}, ["qat.epochs: True is a bool, params.yaml's "]),
    ({"qat.epochs": "3"}, ["qat.epochs: '3' is a str, params.yaml's "]),
    ({"generalize.noise_std": 0.5}, ["generalize.noise_std: 0.5 is a float, params.yaml's "]),
    ({"generalize.noise_std": [0.5, 1]}, ["generalize.noise_std: items [1] are not of the types"]),
    ({"qat": {"epochs": 3}}, ["qat: a section of params.yaml, not a value"]),
    ({"distill.epochs": 30, "validate_quantized.thresholds.min_greedy_return": 100.0}, []),  # a number for `task`
])
def test_an_override_params_yaml_lacks_or_types_otherwise_is_a_problem(overrides, expected):
    """The check above can fail: an unknown key, a wrong type or a list item of a wrong type each show."""
    import yaml
    problems = override_problems(overrides, yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert len(problems) == len(expected) and all(p.startswith(e) for p, e in zip(problems, expected)), problems


def first_number(node, prefix=""):
    """(dotted path, value) of the first number in a section, depth first."""
    for key, value in node.items():
        if isinstance(value, dict):
            found = first_number(value, f"{prefix}{key}.")
            if found:
                return found
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{prefix}{key}", value
    return None


def test_setting_a_param_of_any_section_leaves_every_other_line_alone(tmp_path):
    """One override per section (its first number, so the value can change): blank lines, comments and the other
    sections survive DVC's writer wherever a section ends (a list closing a section once lost the blank after it)."""
    import yaml
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    overrides = []
    for section, body in params.items():
        path, value = first_number(body)
        overrides.append(f"{section}.{path}={value + 1}")
    before, after = tmp_path / "before.yaml", tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", before)
    shutil.copy(ROOT / "params.yaml", after)
    apply_overrides(after, overrides)
    lines = changed_lines(before, after)
    assert len(lines) == 2 * len(overrides), lines

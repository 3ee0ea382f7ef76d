"""params.yaml survives DVC's own writer: `dvc exp run -S key=value` changes that value's line and nothing else."""

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
    ("regimes.tuned.epochs=5", "    epochs: 20\n", "    epochs: 5\n"),
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


def key_tree(node):
    """A params file's keys, nested, without the values."""
    return {k: key_tree(v) for k, v in node.items()} if isinstance(node, dict) else None


def test_the_tests_own_params_have_exactly_params_yamls_keys():
    """tests/data/params.yaml keeps the suite independent of a user's edits; it must not fall behind the real one."""
    import yaml
    from scratch import TEST_PARAMS
    shipped, ours = (yaml.safe_load(p.read_text()) for p in (ROOT / "params.yaml", TEST_PARAMS))
    assert key_tree(ours) == key_tree(shipped)


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

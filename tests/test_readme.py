"""README.md renders and stays true to the pipeline files: valid tables, no leftover comments, every stage listed."""

import re
from pathlib import Path

import yaml

from conftest import run_recomb

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CELL_BAR = re.compile(r"(?<!\\)\|")  # a column bar; `\|` inside a cell is text


def tables(text: str) -> list[tuple[int, list[str]]]:
    """Each Markdown table outside code blocks: (first line number, its lines)."""
    found, block, start, in_code = [], [], 0, False
    for number, line in enumerate(text.splitlines() + [""], 1):
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            start = start or number
            block.append(line)
        elif block:
            found.append((start, block))
            block, start = [], 0
    return found


def table_problems(text: str) -> list[str]:
    """What would not render as a table: a missing separator row, rows of different column counts."""
    problems = []
    for start, lines in tables(text):
        if len(lines) < 2 or not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[1]):
            problems.append(f"line {start}: no separator row")
        counts = {len(CELL_BAR.findall(line)) for line in lines}
        if len(counts) > 1:
            problems.append(f"line {start}: rows with different column counts {sorted(counts)}")
    return problems


def test_every_table_renders():
    assert len(tables(README)) > 20
    assert table_problems(README) == []


def test_the_table_check_catches_a_split_table_and_a_short_row():
    split = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n"
    assert table_problems(split) == ["line 5: no separator row"]
    short = "| a | b |\n|---|---|\n| 1 |\n"
    assert table_problems(short) == ["line 1: rows with different column counts [2, 3]"]


def test_no_html_comments_are_left():
    assert "<!--" not in README


def test_the_stage_table_lists_every_stage_of_both_pipeline_files():
    stage_rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)`[^|]* \|", README, re.M)}
    for path in ("dvc.yaml", "ablation/dvc.yaml"):
        stages = set(yaml.safe_load((ROOT / path).read_text())["stages"])
        assert stages <= stage_rows, f"{path}: stages without a row in README's stage table: {sorted(stages - stage_rows)}"


def test_recomb_help_says_every_subcommand_in_whole_sentences(capsys):
    code, out, _ = run_recomb(capsys, "--help")
    description = out.split("\n\n")[1].replace("\n", " ")
    assert code == 0 and description.rstrip().endswith("(--from-exps).")
    assert all(f"`recomb {name}`" in description for name in ("leaderboard", "check", "timing", "machine", "lock-diff",
                                                               "ablation"))

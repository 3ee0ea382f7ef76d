"""README.md renders and stays true to the pipeline files: valid tables, no leftover comments, every stage listed."""

import re
from pathlib import Path

import yaml

from conftest import run_recomb
from recomb.config import declared_params

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
    assert code == 0 and description.rstrip().endswith("an SB3 zip.")
    assert all(f"`recomb {name}`" in description for name in ("leaderboard", "check", "timing", "machine", "lock-diff",
                                                               "ablation", "export"))


REPORT_PATH = re.compile(r"data/reports/[\w/.-]+\.(?:md|txt)")


def report_excerpt_problems(text: str, reports: dict[str, str]) -> list[str]:
    """README tables quoted from a committed report under data/reports: every row must be that report's, word
    for word (rows may be left out, never edited), so a figure quoted from the committed run cannot drift.

    A table is quoted from a report when the four lines above it name the report, or when its header row is
    one of the report's.
    """
    problems, lines_of = [], text.splitlines()
    for start, lines in tables(text):
        named = [name for name in REPORT_PATH.findall(" ".join(lines_of[max(0, start - 5):start - 1]))
                 if name in reports]
        sources = named or [name for name, report in reports.items() if lines[0] in report.splitlines()]
        rows = {line for name in sources for line in reports[name].splitlines()}
        for offset, line in enumerate(lines, 0):
            if sources and offset != 1 and line not in rows:
                problems.append(f"line {start + offset}: not a row of {' or '.join(sources)}")
    return problems


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """Each fenced code block: (the line number of its opening fence, its lines)."""
    found, block, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```") and block is None:
            block, start = [], number
        elif line.startswith("```"):
            found.append((start, block))
            block = None
        elif block is not None:
            block.append(line)
    return found


def quoted_output_problems(text: str, reports: dict[str, str]) -> list[str]:
    """Code blocks quoting a committed report (named in the four lines above): every line must be the report's."""
    problems, lines_of = [], text.splitlines()
    for start, lines in code_blocks(text):
        for name in REPORT_PATH.findall(" ".join(lines_of[max(0, start - 5):start - 1])):
            if name in reports:
                problems += [f"line {start + offset}: not a line of {name}" for offset, line in enumerate(lines, 1)
                             if line not in reports[name].splitlines()]
    return problems


def committed_reports() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for suffix in ("*.md", "*.txt")
            for p in sorted((ROOT / "data/reports").rglob(suffix)) if "latest" not in p.parts}


def test_report_excerpts_are_the_committed_runs_rows():
    assert report_excerpt_problems(README, committed_reports()) == []
    assert quoted_output_problems(README, committed_reports()) == []


def test_the_excerpt_check_catches_an_edited_figure():
    report = "# r\n\n| a | b |\n|---|---|\n| x | 0.95 |\n| y | 0.90 |\n"
    assert report_excerpt_problems("| a | b |\n|---|---|\n| y | 0.90 |\n", {"r.md": report}) == []
    assert report_excerpt_problems("| a | b |\n|---|---|\n| x | 0.96 |\n", {"r.md": report}) == [
        "line 3: not a row of r.md"]
    renamed = "From `data/reports/r.md`:\n\n| a | b (old name) |\n|---|---|\n| y | 0.90 |\n"  # renamed since
    assert report_excerpt_problems(renamed, {"data/reports/r.md": report}) == [
        "line 3: not a row of data/reports/r.md"]
    quoted = "Its `data/reports/r.txt`:\n\n```\nline one\nline 2\n```\n"
    assert quoted_output_problems(quoted, {"data/reports/r.txt": "line one\nline two\n"}) == [
        "line 5: not a line of data/reports/r.txt"]


def backticked_keys(cell: str) -> set[str]:
    """The params keys a table cell names: each `code` item, `a.{b, c}` standing for a.b and a.c."""
    keys = set()
    for item in re.findall(r"`([^`]+)`", cell):
        head, braces, tail = item.partition(".{")
        keys |= {f"{head}.{part.strip()}" for part in tail.rstrip("}").split(",")} if braces else {item}
    return keys


def stage_param_problems(text: str, stages: dict) -> list[str]:
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)`[^|]*\|.*\| ([^|]*) \|$", text, re.M)}
    found = {name: (backticked_keys(rows.get(name, "")), set(declared_params(body))) for name, body in stages.items()}
    return [f"{name}: README says {sorted(said)}, dvc.yaml {sorted(declared)}"
            for name, (said, declared) in found.items() if said != declared]


def test_the_stage_tables_params_are_exactly_dvc_yamls():
    stages = {name: body for path in ("dvc.yaml", "ablation/dvc.yaml")
              for name, body in yaml.safe_load((ROOT / path).read_text())["stages"].items()}
    assert stage_param_problems(README, stages) == []
    stale = README.replace("| `runtime`, `ptq` |", "| `ptq` |")
    assert stage_param_problems(stale, stages) == [f"ptq: README says ['ptq'], dvc.yaml ['ptq', 'runtime']"]
    assert backticked_keys("`a.{b, c}` and `d`") == {"a.b", "a.c", "d"}

"""`recomb lock-diff` (make repro-check): where a cold run's lock leaves the committed one, and on which machines."""

from __future__ import annotations

import json
import subprocess

import yaml

from conftest import run_recomb
from recomb.reproducibility import explain, fingerprint_differences, lock_differences, stage_order


def lock(parents="p1", students="s1", report="r1", code="c1") -> dict:
    """Three stages declared out of DAG order: report reads students, students read parents."""
    return {"schema": "2.0", "stages": {
        "report": {"deps": [{"path": "data/students/a.safetensors", "md5": students}],
                   "outs": [{"path": "data/reports/report.json", "md5": report}]},
        "parents": {"deps": [{"path": "stages/parents.py", "md5": code}],
                    "outs": [{"path": "data/parents", "md5": p1_dir(parents)}]},
        "students": {"deps": [{"path": "data/parents/parent_A.safetensors", "md5": parents}],
                     "params": {"params.yaml": {"distill.lr": 0.01}},
                     "outs": [{"path": "data/students", "md5": students}]},
    }}


def p1_dir(value: str) -> str:
    return f"{value}.dir"


MACHINE_A = {"cpu": {"model": "Xeon", "vendor": "GenuineIntel", "flags": ["avx2", "avx512f"]},
             "pins": {"MKL_CBWR": "COMPATIBLE"}, "torch": "2.13.0", "mkl": "2024.2", "numpy": "2.4.6"}
MACHINE_B = {**MACHINE_A, "cpu": {"model": "EPYC", "vendor": "AuthenticAMD", "flags": ["avx2"]}}


def test_stages_come_in_dag_order_whatever_the_file_order():
    assert stage_order(lock()) == ["parents", "students", "report"]


def test_the_first_stage_whose_outputs_differ_is_named_with_its_files_and_the_machines():
    differences = lock_differences(lock(), lock(parents="p2", students="s2", report="r2"))
    assert [d.stage for d in differences] == ["parents", "students", "report"]
    assert differences[0].outs == [("data/parents", "p1.dir", "p2.dir")] and differences[0].deps == []
    lines = explain(differences, MACHINE_B, MACHINE_A)
    assert lines[0] == "not reproduced: the first stage (DAG order) whose outputs differ is 'parents':"
    assert lines[1] == "  data/parents: committed p1.dir, this run p2.dir"
    assert "later stages that differ (their inputs did): students, report" in lines[2]
    assert any(line.startswith("this machine: EPYC (AuthenticAMD ?; avx2)") for line in lines)
    assert "  cpu.vendor: 'GenuineIntel' → 'AuthenticAMD'" in lines


def test_a_changed_input_is_told_apart_from_a_machine_difference():
    differences = lock_differences(lock(), lock(code="c2"))
    assert [(d.stage, d.deps, d.outs) for d in differences] == [("parents", ["stages/parents.py"], [])]
    assert explain(differences, MACHINE_A, None)[0].startswith("dvc.lock differs from the committed one in "
                                                               "recorded inputs only")
    changed = lock()
    changed["stages"]["students"]["params"]["params.yaml"]["distill.lr"] = 0.02
    assert lock_differences(lock(), changed)[0].params == ["params.yaml"]


def test_equal_locks_and_fingerprints_have_nothing_to_say():
    assert lock_differences(lock(), lock()) == [] and explain([], MACHINE_A, MACHINE_A) == []
    assert fingerprint_differences(MACHINE_A, MACHINE_A) == []


def test_lock_diff_exits_1_naming_the_stage_and_0_when_reproduced(tmp_path, monkeypatch, capsys):
    (tmp_path / "stages").mkdir()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@recomb.invalid"],
                ["git", "config", "user.name", "t"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock()))
    subprocess.run(["git", "add", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "lock"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_recomb(capsys, "lock-diff")
    assert code == 0 and "reproduces" in out
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock(students="s2", report="r2")))
    code, out, _ = run_recomb(capsys, "lock-diff")
    assert code == 1 and "whose outputs differ is 'students'" in out and "this machine:" in out
    for damage, message in ((b"stages: [unclosed\n", "dvc.lock: not valid YAML at line 2"),
                            (bytes(range(128, 256)), "dvc.lock: not a text file (not UTF-8)"),
                            (b"- a list\n", "dvc.lock: expected a mapping (a DVC pipeline file)")):
        (tmp_path / "dvc.lock").write_bytes(damage)  # a lock cut short, overwritten or hand-edited
        assert run_recomb(capsys, "lock-diff") == (1, "", f"error: {message}\n")


def test_machine_writes_the_fingerprint_and_compares_another(tmp_path, monkeypatch, capsys):
    (tmp_path / "stages").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_recomb(capsys, "machine")
    written = json.loads((tmp_path / "data/reports/latest/machine.json").read_text())
    assert code == 0 and written["pins"]["MKL_CBWR"] == "COMPATIBLE" and written["unpinned"] == []
    vendor = "GenuineIntel" if written["cpu"]["vendor"] == "AuthenticAMD" else "AuthenticAMD"  # not this one's
    other = {**written, "cpu": {**written["cpu"], "vendor": vendor}, "numpy": "2.0.0"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, out, _ = run_recomb(capsys, "machine", "--compare", "other.json")
    assert code == 0
    assert f"  cpu.vendor: {vendor!r} → {written['cpu']['vendor']!r}" in out
    assert f"  numpy: '2.0.0' → {written['numpy']!r}" in out

"""End-to-end: the real stages under DVC on small budgets, in a throw-away copy of the project."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock

from recomb.networks import Architecture, seeded_qnetwork
from conftest import SMALL_SYNTHETIC
from scratch import BIN, ROOT, Project
from test_verdict import check_pipeline_verdict


# `dvc exp show` as the README gives it: the key figures and the recipe, in 120 columns.
EXP_SHOW = ("dvc", "exp", "show", "--no-pager", "--drop", ".*", "--keep",
            "Experiment|^child_|^crossover.mode$|^crossover.alpha$|^finetune.regime$", "--sort-by", "child_gain")


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0][len("error: "):]


def test_two_cold_runs_give_identical_outputs(synthetic_project):
    p = synthetic_project
    for stage in ("inputs", "parents", "distill", "validate_distillation"):
        p.stage(stage)
    first = {f: (p.path / "data" / f).read_bytes() for f in (
        "students/student_A.safetensors", "students/student_B.json", "reports/distillation.json",
        "plots/distill/learning_curves.png")}
    p.stage("distill")
    p.stage("validate_distillation")
    for name, data in first.items():
        assert (p.path / "data" / name).read_bytes() == data, name


def test_out_of_range_param_is_one_line_and_writes_nothing(synthetic_project):
    p = synthetic_project
    p.stage("parents")
    p.set(**{"distill.lr": -1})
    assert one_line_error(p.stage("distill", check=False)) == "params.yaml: distill.lr: must be > 0 (got -1.0)"
    assert not (p.path / "data/students").exists()


def test_truncated_checkpoint_between_stages(synthetic_project):
    p = synthetic_project
    p.stage("parents")
    ckpt = p.path / "data/parents/parent_A.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:64])
    message = one_line_error(p.stage("distill", check=False))
    assert message.startswith("data/parents/parent_A.safetensors: truncated or not a safetensors file")
    assert not (p.path / "data/students").exists()


def write_user_files(p, states):
    arch = Architecture(8, 4, 64, 0.1)
    for pair, seed in (("A", 0), ("B", 1)):
        torch.save(seeded_qnetwork(arch, seed).state_dict(), p.path / f"data/user/parent_{pair}.pt")
    np.save(p.path / "data/user/states.npy", states)


def test_files_source_imports_agentfarm_parents(project):
    p = project
    states = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    write_user_files(p, states)
    p.set(**{"parents.source": "files"})
    p.stage("inputs")
    p.stage("parents")
    sidecar = json.loads((p.path / "data/parents/parent_A.json").read_text())
    assert sidecar["architecture"] == {"input_dim": 8, "output_dim": 4, "hidden": 64, "dropout": 0.1}
    train = np.load(p.path / "data/states/train.npy")
    heldout = np.load(p.path / "data/states/heldout.npy")
    assert len(train) + len(heldout) == 200
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in heldout}


def test_files_source_refuses_nan_states_and_wrong_dims(project):
    p = project
    states = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    states[7, 2] = np.nan
    write_user_files(p, states)
    p.set(**{"parents.source": "files"})
    assert one_line_error(p.stage("inputs", check=False)) == (
        "data/user/states.npy: 1 of 50 states contain NaN or Inf (first at row 7)")
    assert not (p.path / "data/inputs").exists()
    p.set(**{"parents.files.input_dim": 6})
    assert one_line_error(p.stage("inputs", check=False)) == (
        "data/user/parent_A.pt: input_dim is 8 but params.yaml parents.files says 6")
    np.save(p.path / "data/user/states.npy", np.nan_to_num(states))
    p.set(**{"parents.files.input_dim": 8})
    torch.save(seeded_qnetwork(Architecture(8, 3, 64, 0.1), 1).state_dict(), p.path / "data/user/parent_B.pt")
    assert one_line_error(p.stage("inputs", check=False)) == (  # parents may differ in width, never in actions
        "data/user/parent_B.pt: output_dim is 3 but params.yaml parents.files says 4")
    write_user_files(p, np.nan_to_num(states)[:3])
    p.set(**{"parents.files.states": "elsewhere/states.npy"})
    assert one_line_error(p.stage("inputs", check=False)) == (
        "params.yaml: parents.files.states: must be a file under data/user/ (the folder dvc.yaml tracks) "
        "(got 'elsewhere/states.npy')")
    assert not (p.path / "data/inputs").exists()
    p.set(**{"parents.files.states": "data/user/states.npy"})
    assert one_line_error(p.stage("inputs", check=False)) == (
        "data/user/states.npy: 3 states; the train/held-out split and the validation split of the train states "
        "need at least 4")


def test_user_files_tracked_with_dvc_add_reach_a_queued_experiment(tmp_path):
    p = Project(tmp_path / "project", git=True)
    p.commit("the pipeline")
    write_user_files(p, np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32))  # untracked
    p.run("dvc", "exp", "run", "--queue", "--name", "untracked", "parents", "-S", "parents.source=files")
    p.run("dvc", "add", "data/user/parent_A.pt", "data/user/parent_B.pt", "data/user/states.npy")
    p.commit("user files tracked with dvc add")
    p.run("dvc", "exp", "run", "--queue", "--name", "tracked", "parents", "-S", "parents.source=files")
    ran = p.run("dvc", "exp", "run", "--run-all", check=False)
    assert "error: data/user/parent_A.pt: parent checkpoint not found" in ran.stdout  # not in the first commit
    tasks = [line.split() for line in p.run("dvc", "queue", "status").stdout.splitlines()]
    assert {task[1]: task[-1] for task in tasks if task[1:2] in (["untracked"], ["tracked"])} == {
        "untracked": "Failed", "tracked": "Success"}


def test_the_default_dqn_source_on_a_small_budget(project):
    """The default source end to end through distillation: DQN parents, their buffer, greedy returns reported."""
    p = project
    p.set(**{"parents.presets.CartPole-v1.total_steps": 2048, "parents.presets.CartPole-v1.eval_interval": 1024,
             "parents.presets.CartPole-v1.eval_episodes": 10, "parents.presets.CartPole-v1.pass_return": 9.0,
             "parents.presets.CartPole-v1.stop_return": 500.0, "parents.dqn.buffer.n_states": 300,
             "distill.epochs": 2, "validate_distillation.eval_episodes": 5})
    p.stage("inputs")
    p.stage("parents")
    sidecar = json.loads((p.path / "data/parents/parent_B.json").read_text())
    assert sidecar["env"] == "CartPole-v1" and sidecar["architecture"]["input_dim"] == 4
    assert sidecar["metrics"]["seed"] == 5 and sidecar["metrics"]["env_steps"] == 2048  # seed + 1, whole budget
    assert [row["step"] for row in sidecar["history"]] == [1024, 2048]
    assert sidecar["params"] == {"source": "dqn", "heldout_fraction": 0.2, "split_seed": 0,
                                 "dqn": p.params()["parents"]["dqn"], "env": "CartPole-v1",
                                 "preset": p.params()["parents"]["presets"]["CartPole-v1"]}  # no other source's params
    assert len(np.load(p.path / "data/states/train.npy")) == 240
    p.stage("distill")
    p.stage("validate_distillation")
    report = json.loads((p.path / "data/reports/distillation.json").read_text())
    for pair in ("A", "B"):
        returns = report["pairs"][pair]["greedy_return"]
        assert returns["teacher"] >= 9.0 and returns["student"] > 0  # a real environment, so real returns


def test_missing_params_section_and_bad_yaml(project):
    p = project
    (p.path / "params.yaml").write_text("runtime: {torch_threads: 1}\n")
    assert one_line_error(p.stage("distill", check=False)) == "params.yaml: section 'distill' is missing"
    (p.path / "params.yaml").write_text("runtime: [unclosed\n")
    assert one_line_error(p.stage("distill", check=False)).startswith("params.yaml: not valid YAML")


@pytest.fixture(scope="session")
def built(tmp_path_factory, worker_id) -> tuple[Project, str]:
    """A git-backed project after one cold `dvc repro` of every stage, committed; and what `dvc repro` printed.

    Built once for the whole run: the first test process to need it builds it under a lock, in
    the folder every process shares; each test below works on its own copy (`copy_of`), so
    none depends on what another did to it.
    """
    shared = tmp_path_factory.getbasetemp()
    shared = shared if worker_id == "master" else shared.parent
    folder, printed = shared / "built", shared / "built.stdout"
    with FileLock(str(shared / "built.lock")):
        if not printed.exists():
            p = Project(folder / "project", git=True)
            p.set(**SMALL_SYNTHETIC, **{"search.preset": "custom", "search.modes": ["weighted"],
                                        "search.alphas": [0.5], "search.seeds": [0],
                                        "search.regimes": ["short", "short_qat"],
                                        "regimes.short_qat.quantization_applied": "ptq_static"})
            first = p.run("dvc", "repro").stdout
            p.commit("baseline pipeline")
            printed.write_text(first)
    return Project.at(folder / "project"), printed.read_text()


def copy_of(built, tmp_path) -> Project:
    """A private copy of the built project (workspace, git history, DVC cache)."""
    shutil.copytree(built[0].path, tmp_path / "project", symlinks=True)
    return Project.at(tmp_path / "project")


@pytest.mark.longest
def test_a_cold_repro_runs_every_stage_and_writes_every_report(built, tmp_path):
    p = copy_of(built, tmp_path)
    for stage in ("inputs", "parents", "distill", "validate_distillation", "ptq", "qat", "validate_quantized",
                  "crossover", "finetune", "validate_recombination", "search", "multigen", "generalize", "analyze",
                  "compare_distillation", "compare_operators", "report"):
        assert f"Running stage '{stage}'" in built[1]
    report = json.loads((p.path / "data/reports/distillation.json").read_text())
    assert set(report["pairs"]) == {"A", "B"} and isinstance(report["passed"], bool)
    assert report["n_heldout"] == 80  # 20 % of 400 synthetic states
    assert 0.0 <= report["pairs"]["A"]["fidelity"]["action_agreement"] <= 1.0
    assert "latency_ratio" not in json.dumps(report)  # timing stays out of the hashed report
    for name in ("distillation.md", "quantized.md", "recombination.md", "pipeline.md", "search/leaderboard.md",
                 "search/recommendation.txt", "multigen/summary.md", "generalization/report.md", "analysis/report.md",
                 "objectives/report.md", "operators/report.md"):
        assert (p.path / "data/reports" / name).is_file(), name  # every README-named report, from `dvc repro`
    p.run(str(BIN / "recomb"), "timing")  # wall-clock figures on request, never hashed
    timing = json.loads((p.path / "data/reports/latest/timing.json").read_text())
    assert timing["distillation"]["A"]["checks"]["latency_ratio"]["value"] > 0
    assert timing["quantization"]["ptq_A"]["checks"]["latency_ratio"]["value"] > 0
    assert timing["quantization"]["qat_B"]["throughput_states_per_s_batch64"]["int8"] > 0
    assert "Batch-1 latency (ms)" in (p.path / "data/reports/latest/timing.md").read_text()
    assert (p.path / "data/plots/distill/learning_curves.png").is_file()
    assert "didn't change, skipping" in p.run("dvc", "repro", "validate_distillation").stdout
    metrics = p.run("dvc", "metrics", "show")
    for key in ("pairs.A.fidelity.action_agreement", "students.ptq_A.int8_vs_float.action_agreement",
                "children.child.primary_over_bound", "child_pu"):
        assert key in metrics.stdout, key
    assert "failed to load" not in metrics.stdout + metrics.stderr
    headline = p.run("dvc", "metrics", "show", "data/reports/headline.json").stdout.splitlines()  # the README's
    assert len(headline) == 2 and all(len(line) <= 120 for line in headline), headline
    p.run("dvc", "plots", "show", "-o", "plots_html")
    page = (p.path / "plots_html" / "index.html").read_text()
    declared = [plot for plot in yaml.safe_load((p.path / "dvc.yaml").read_text())["plots"] if isinstance(plot, dict)]
    assert page.count("vegaEmbed(") == len(declared) == 7  # the curves declared with x and y in dvc.yaml, nothing else
    for png in ("parents_training", "distill_learning_curves", "qat_learning_curves", "finetune_learning_curves",
                "multigen_best_per_generation", "search_children", "generalization_robustness",
                "analysis_state_space", "analysis_margin", "objectives_learning_curves", "operators_operators"):
        assert page.count(f"workspace_data_plots_{png}.png") == 1, png


@pytest.mark.longest
def test_reports_of_a_cold_repro_hold_what_they_promise(built, tmp_path):
    p = copy_of(built, tmp_path)
    report = json.loads((p.path / "data/reports/quantized.json").read_text())
    assert set(report["students"]) == {"ptq_A", "ptq_B", "qat_A", "qat_B"}
    for name, r in report["students"].items():
        assert r["batch_dependence_max_abs"] == 0.0, name
        assert r["int8_vs_float"]["action_agreement"] > 0.8, name
        assert r["size_bytes"]["tensors"]["int8"] < 0.5 * r["size_bytes"]["tensors"]["float"]
        assert r["greedy_return"]["int8"] is None  # synthetic parents have no environment
    assert "latency" not in json.dumps(report)
    assert json.loads((p.path / "data/qat/student_A_qat_int8.json").read_text())["kind"] == "int8"

    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    assert set(report["children"]) == {"child_raw", "child"}
    child = report["children"]["child"]
    assert child["primary"] == min(child["vs_a"]["action_agreement"], child["vs_b"]["action_agreement"])
    assert report["bound"] == report["parents_agreement"] + (1 - report["parents_agreement"]) / 2
    assert child["oracle_agreement"] >= max(child["vs_a"]["action_agreement"], child["vs_b"]["action_agreement"])
    assert report["greedy_return"]["child"] is None and "child_greedy_return" not in report["checks"]
    assert "primary / U" in (p.path / "data/reports/recombination.md").read_text()
    check_pipeline_verdict(p)


@pytest.mark.longest
def test_a_grid_of_dvc_experiments_matches_the_search_stage(built, tmp_path):
    check_experiment_grid(copy_of(built, tmp_path))


@pytest.mark.longest
def test_artifacts_pushed_to_a_remote_need_no_rerun_in_a_fresh_clone(built, tmp_path):
    check_remote_round_trip(copy_of(built, tmp_path), tmp_path)


@pytest.mark.longest
def test_each_param_edit_makes_exactly_its_readers_stale(built, tmp_path):
    p = copy_of(built, tmp_path)
    p.set(**{"crossover.alpha": 0.3})
    status = p.run("dvc", "status").stdout
    assert "crossover:" in status and "finetune:" not in status and "distill:" not in status
    p.set(**{"validate_recombination.thresholds.min_gain_over_copy": 0.2})  # a gate, not a training input
    status = p.run("dvc", "status").stdout
    assert "validate_recombination:" in status and "report:" in status
    assert "search:" not in status and "multigen:" not in status
    (p.path / "data/user/notes.txt").write_text("not a parent")  # the files source's folder, unused here
    p.set(**{"parents.dqn.hidden": 32, "parents.files.dropout": 0.0})  # sources not in use
    status = p.run("dvc", "status").stdout
    assert "inputs:" in status and "parents:" not in status
    assert "Stage 'parents' didn't change, skipping" in p.run("dvc", "repro", "parents").stdout
    p.set(**{"ptq.mode": "static"})
    assert "up to date" in p.run("dvc", "status", "qat").stdout  # qat reads ptq.backend only
    assert "modified:           ptq" in p.run("dvc", "status", "ptq").stdout


@pytest.mark.longest
def test_a_bad_value_through_dvc_exp_run_stops_in_one_line_and_costs_no_output(built, tmp_path):
    """Stage `params` runs before every other whenever params.yaml changes, so a bad `-S` stops there, before
    DVC removes any stage's outputs (it used to cost `data/students` or `data/parents`)."""
    p = copy_of(built, tmp_path)
    files = lambda: {str(f): f.read_bytes() for f in sorted((p.path / "data").rglob("*")) if f.is_file()}  # noqa: E731
    before = files()
    for change, message in (("distill.lr=-1", "error: params.yaml: distill.lr: must be > 0 (got -1.0)"),
                            ("parents.env=Pendulum-v1", "error: params.yaml: parents.env:")):
        proc = p.run("dvc", "exp", "run", "-S", change, check=False)
        output = proc.stdout + proc.stderr  # DVC passes the stage's own stderr through on stdout
        assert proc.returncode != 0
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(message), output[-2000:]
        assert "Running stage 'params'" in output and "Running stage 'distill'" not in output
        assert files() == before, change
        p.run("git", "checkout", "--", "params.yaml")


@pytest.mark.longest
def test_an_int8_child_without_qat_reruns_only_its_stages(built, tmp_path):
    p = copy_of(built, tmp_path)
    p.set(**{"ptq.mode": "static", "qat.convert": False, "crossover.parents": "quantized",
             "regimes.tuned.quantization_applied": "ptq_dynamic"})
    lock = (p.path / "dvc.lock").read_text()
    rerun = p.run("dvc", "repro", "validate_quantized", "validate_recombination").stdout
    assert "Running stage 'qat'" in rerun and "Running stage 'distill'" not in rerun
    assert (p.path / "dvc.lock").read_text() != lock
    assert json.loads((p.path / "data/quantized/student_B_int8.json").read_text())["quantization"]["mode"] == "static"
    assert not (p.path / "data/qat/student_A_qat_int8.safetensors").exists()
    assert (p.path / "data/qat/student_A_qat.safetensors").is_file()
    assert set(json.loads((p.path / "data/reports/quantized.json").read_text())["students"]) == {"ptq_A", "ptq_B"}
    assert "int8" in json.loads((p.path / "data/children/raw/child.json").read_text())["parent_a"]
    assert json.loads((p.path / "data/children/finetuned/child_int8.json").read_text())["kind"] == "int8"
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    assert set(report["children"]) == {"child_raw", "child", "child_int8"}


@pytest.mark.longest
def test_children_scored_against_the_students_instead_of_the_parents(built, tmp_path):
    p = copy_of(built, tmp_path)
    before = json.loads((p.path / "data/reports/recombination.json").read_text())["agreement"]["parent_A"]
    assert before["agreement_a"] == 1.0  # scored against the parents: parent A is role A
    p.set(**{"validate_recombination.parents_role": "students"})
    status = p.run("dvc", "status").stdout
    assert "validate_recombination:" in status and "search:" in status and "finetune:" not in status
    p.run("dvc", "repro", "validate_recombination")
    after = json.loads((p.path / "data/reports/recombination.json").read_text())["agreement"]["parent_A"]
    distilled = json.loads((p.path / "data/reports/distillation.json").read_text())["pairs"]["A"]["fidelity"]
    assert after["agreement_a"] == distilled["action_agreement"]  # parent A against student A, same held-out states
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    roles = report["agreement"]["student_A"], report["agreement"]["student_B"]  # the baselines of the leaderboard
    assert [r["agreement_a"] for r in roles] == [1.0, report["parents_agreement"]]
    assert [r["agreement_b"] for r in roles] == [report["parents_agreement"], 1.0]
    p.set(**{"validate_recombination.parents_role": "qat"})
    p.run("dvc", "repro", "validate_recombination")
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    assert report["agreement"]["student_qat_int8_A"]["agreement_a"] == 1.0
    assert {"student_qat_int8_A", "student_qat_int8_B"} <= set(report["greedy_return_interval"])


@pytest.mark.longest
def test_a_pickle_under_a_checkpoint_name_is_refused_and_nothing_written(built, tmp_path):
    p = copy_of(built, tmp_path)
    int8 = p.path / "data/quantized/student_A_int8.safetensors"
    int8.unlink()  # DVC may have linked it to its cache
    torch.save(seeded_qnetwork(Architecture(8, 4, 32, 0.0), 0), int8)  # a whole-module pickle under the int8 name
    (p.path / "data/reports/quantized.json").unlink()
    message = one_line_error(p.stage("validate_quantized", check=False))
    assert message == ("data/quantized/student_A_int8.safetensors: is a pickle/torch.save file, not safetensors; "
                       "refusing to unpickle it")
    assert not (p.path / "data/reports/quantized.json").exists()


def check_remote_round_trip(p, tmp_path):
    """Artifacts shared through a DVC remote: push here, pull into a fresh clone, and nothing needs re-running."""
    p.run("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    p.commit("a local-directory remote")
    p.run("dvc", "push")
    clone = Project.clone(p, tmp_path / "clone")
    clone.run("dvc", "pull")
    assert "Data and pipelines are up to date" in clone.run("dvc", "status").stdout
    rerun = clone.run("dvc", "repro").stdout
    assert "Running stage" not in rerun, rerun
    assert clone.run("dvc", "metrics", "diff").stdout.strip() == ""
    assert (clone.path / "data/students/student_A.safetensors").is_file()


def check_ablation_from_experiments(p, experiments: list[dict]):
    """`recomb ablation --from-exps` on the same experiments: two conditions (the regimes), one seed each."""
    shown = p.run(str(BIN / "recomb"), "ablation", "--from-exps").stdout
    with open(p.path / "data/reports/latest/ablation_exps/ablation_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["condition"] for r in rows) == ["finetune.regime=short", "finetune.regime=short_qat"]
    for row in rows:
        twin = next(e for e in experiments if f"finetune.regime={e['regime']}" == row["condition"])
        assert float(row["primary_over_bound"]) == twin["primary_over_bound"]
        assert twin["online_return"] is None and row["child_return"] == "n/a"  # synthetic: no environment
        assert int(row["seed"]) == p.params()["distill"]["seed"]  # synthetic parents: the seed is distill.seed
    assert "beats finetune.regime=short" in shown and (p.path / "data/reports/latest/ablation_exps/seeds.png").is_file()


def check_a_mixed_grid_is_ranked_in_groups(p, experiments: list[dict]):
    """One more experiment scored with other bootstrap draws (`uncertainty.seed`, a context param: only its
    validation re-runs): `recomb leaderboard` ranks it apart from the first two and says why."""
    p.run("dvc", "exp", "run", "validate_recombination", "-S", "uncertainty.seed=7", "-S", "crossover.mode=weighted",
          "-S", "finetune.regime=short")
    p.run(str(BIN / "recomb"), "leaderboard")
    groups = json.loads((p.path / "data/reports/leaderboard/leaderboard.json").read_text())["groups"]
    sizes = {g["context"]["uncertainty.seed"]: len(g["rows"]) for g in groups}
    assert sizes == {7: 1, 0: len(experiments)}, groups  # the baseline commit's child is one of the two
    board = (p.path / "data/reports/leaderboard/leaderboard.md").read_text()
    assert board.startswith("Experiments differ in uncertainty.seed:") and board.count("## Experiments with") == 2
    assert (p.path / "data/reports/leaderboard/recommendation.txt").read_text().count("Recommended:") == 2
    p.run("git", "checkout", "--", ".")
    p.run("dvc", "checkout")


def check_experiment_grid(p):
    """A two-child grid through `dvc exp`: only the child's stages run; the same children as the search stage,
    the static int8 child of `short_qat` included."""
    # up to the child's report: the analyses of each child would add a minute here and are tested on the baseline
    p.run("dvc", "exp", "run", "--queue", "validate_recombination", "-S", "crossover.mode=weighted",
          "-S", "finetune.regime=short,short_qat")
    ran = p.run("dvc", "exp", "run", "--run-all", "-j", "2").stdout
    assert ran.count("Running stage 'crossover'") == 2 and ran.count("Running stage 'validate_recombination'") == 2
    for upstream in ("parents", "distill", "ptq"):
        assert f"Running stage '{upstream}'" not in ran and f"Stage '{upstream}' didn't change, skipping" in ran
    assert "Running stage 'search'" not in ran and "Running stage 'multigen'" not in ran

    shown = p.run(*EXP_SHOW).stdout.splitlines()  # the README's readable table
    assert all(len(line) <= 120 for line in shown), shown
    header = next(line for line in shown if "Experiment" in line).split()
    # no return column: a synthetic task
    for column in ("child_pu", "child_gain", "crossover.mode", "crossover.alpha", "finetune.regime"):
        assert column in header, (column, header)
    assert sum(line.split()[0] in ("├──", "└──") for line in shown if line.split()) == 2  # both experiments
    readme = (ROOT / "README.md").read_text()
    assert "dvc exp show " + " ".join(f"'{a}'" if "|" in a or "*" in a else a for a in EXP_SHOW[3:]) in readme

    board = p.run(str(BIN / "recomb"), "leaderboard").stdout
    assert "| 1 |" in board and "parent_A (baseline)" in board
    [group] = json.loads((p.path / "data/reports/leaderboard/leaderboard.json").read_text())["groups"]
    experiments = group["rows"]
    winner = experiments[0]["experiment"]
    assert f"dvc exp apply {winner}" in (p.path / "data/reports/leaderboard/recommendation.txt").read_text()
    check_ablation_from_experiments(p, experiments)
    p.run("dvc", "exp", "apply", winner)
    assert p.params()["crossover"]["mode"] == experiments[0]["mode"]
    p.run("git", "checkout", "--", ".")  # back to the baseline for the checks that follow
    p.run("dvc", "checkout")

    searched = json.loads((p.path / "data/search/leaderboard.json").read_text())["rows"]
    static = next(e["experiment"] for e in experiments if e["regime"] == "short_qat")
    in_search = next(r["experiment"] for r in searched if r["regime"] == "short_qat")
    search_int8 = (p.path / f"data/search/{in_search}/child_int8.safetensors").read_bytes()
    search_report = json.loads((p.path / f"data/search/{in_search}/run_config.json").read_text())["metrics"]["report"]
    p.run("dvc", "exp", "apply", static)
    assert (p.path / "data/children/finetuned/child_int8.safetensors").read_bytes() == search_int8
    int8_figures = json.loads((p.path / "data/reports/recombination.json").read_text())["children"]["child_int8"]
    assert int8_figures == search_report["children"]["child_int8"]  # the same static int8 child, bit for bit
    p.run("git", "checkout", "--", ".")
    p.run("dvc", "checkout")

    for row in searched:
        twin = next(e for e in experiments if (e["mode"], e["regime"]) == (row["mode"], row["regime"]))
        for key in ("val_primary", "val_primary_low", "primary", "primary_high", "agreement_a", "agreement_b",
                    "primary_over_bound", "online_return"):
            assert twin[key] == row[key], (row["experiment"], key)  # the same child, bit for bit
        run_config = json.loads((p.path / f"data/search/{row['experiment']}/run_config.json").read_text())
        assert run_config["reproduce"].startswith(f"dvc exp run -S crossover.parents=students -S crossover.mode={row['mode']}")
        assert run_config["finetune"]["epochs"] == 5 and run_config["torch_version"] == torch.__version__

    check_a_mixed_grid_is_ranked_in_groups(p, experiments)

    lineage = json.loads((p.path / "data/multigen/lineage.json").read_text())
    assert [c["generation"] for c in lineage["children"]] == [0, 0, 1, 1, 1]  # the elite competes again
    assert lineage["scored_against"] == ["data/parents/parent_A.safetensors", "data/parents/parent_B.safetensors"]
    assert (p.path / "data/plots/multigen/best_per_generation.png").is_file()
    assert "| 1 |" in (p.path / "data/reports/multigen/summary.md").read_text()

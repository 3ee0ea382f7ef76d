"""The error analysis of the child (stage `analyze`): per-state measures on hand-computed cases, the
worst states, the hidden activations, near-ties, and the stage itself in a scratch project."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml

from recomb.artifacts import Outputs, load_checkpoint
from recomb.errors import RecombError
from recomb import metrics
from recomb.training.tasks import task
from recomb.evaluation import analysis
from recomb.networks import Architecture, QNetwork, seeded_qnetwork
from recomb.quantization.quantize import ptq
from recomb.stats import UncertaintyConfig
from scratch import ROOT, Project
from stages import paths

SECTION = {"max_states": 5000, "sample_seed": 0, "top_k": [1, 2], "kl_temperature": 1.0, "include_logits": False,
           "worst_k": 10, "worst_criterion": "max_kl", "activation_layer": "hidden1", "activation_states": 500,
           "near_tie_cut": 0.25, "margin_edges": [0.1, 0.25, 0.5, 1.0, 2.0]}
UNC = UncertaintyConfig.from_mapping({"confidence": 0.95, "resamples": 200, "seed": 0}, "test")


def config(**overrides) -> analysis.AnalyzeConfig:
    return analysis.AnalyzeConfig.from_mapping({**SECTION, **overrides}, "params.yaml: analyze")


def write_params(params_file, **overrides) -> None:
    """The params with this file's `analyze` section, so a test does not depend on params.yaml's."""
    params = yaml.safe_load(params_file.read_text())
    params["analyze"] = {**SECTION, **overrides}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


# ----------------------------------------------------------------------------- per-state measures


def test_kl_per_state_is_parent_first_and_divides_by_the_temperature():
    ref = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    other = torch.zeros(2, 2)
    # state 0: p = softmax(0, ln 3) = (1/4, 3/4), q = (1/2, 1/2):
    # KL(p‖q) = ¼·ln(½) + ¾·ln(3/2) = −0.1732868 + 0.3040988 = 0.1308120; state 1: identical → 0
    assert metrics.kl_per_state(ref, other, 1.0).numpy() == pytest.approx([0.1308120, 0.0], abs=1e-6)
    # at T = 2, (0, 2·ln 3) is p again
    assert metrics.kl_per_state(2 * ref, other, 2.0).numpy() == pytest.approx([0.1308120, 0.0], abs=1e-6)
    # three actions: p uniform, q = softmax(ln 2, 0, 0) = (½, ¼, ¼):
    # KL = ⅓·(ln(⅓/½) + 2·ln(⅓/¼)) = ⅓·(−0.4054651 + 0.5753641) = 0.0566330
    three = metrics.kl_per_state(torch.zeros(1, 3), torch.tensor([[math.log(2.0), 0.0, 0.0]]), 1.0).numpy()
    assert three == pytest.approx([0.0566330], abs=1e-6)


def test_mse_cosine_and_topk_hits_per_state():
    ref = torch.tensor([[1.0, 2.0], [1.0, 0.0]])
    other = torch.tensor([[2.0, 4.0], [1.0, 1.0]])
    # state 0: errors (1, 2) → (1 + 4)/2 = 2.5; state 1: errors (0, 1) → 0.5
    assert analysis.mse_per_state(ref, other) == pytest.approx([2.5, 0.5])
    # state 0: parallel vectors → 1; state 1: (1, 0)·(1, 1) / √2 = 0.7071068
    assert analysis.cosine_per_state(ref, other) == pytest.approx([1.0, 0.7071068], abs=1e-6)
    # the reference prefers action 2; the other ranks 0, 1, 2: missed in its top 1 and top 2, not in its top 3
    ref3, other3 = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    assert [not metrics.topk_hits(ref3, other3, k)[0] for k in (1, 2, 3)] == [True, True, False]


def test_outcomes_name_every_case():
    a, b, child = np.array([0, 0, 0, 1, 0]), np.array([0, 1, 1, 1, 1]), np.array([0, 0, 1, 0, 2])
    assert analysis.outcomes(a, b, child).tolist() == ["all_agree", "with_a", "with_b", "against_both", "neither"]


def test_disagreement_table_columns():
    q_a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    q_b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    q_child = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cfg = config(top_k=[1, 3], include_logits=True)
    columns = analysis.disagreement_table(np.array([4, 9]), q_a, q_b, q_child, cfg)
    assert columns["outcome"].tolist() == ["against_both", "with_b"]
    assert columns["top1_miss_a"].tolist() == [True, True] and columns["top3_miss_b"].tolist() == [False, False]
    # A's margins are 1 and 2; torch's median of an even count is the lower middle value, 1
    assert columns["margin_a"].tolist() == [1.0, 2.0]
    # state 1 against B: errors (0, 0, 1) → MSE ⅓
    assert columns["mse_parent_b"][1] == pytest.approx(1 / 3)
    assert columns["q_child_1"].tolist() == [1.0, 0.0]
    row = analysis.rows(columns)[1]
    assert row["state_index"] == 9 and row["action_child"] == 2 and row["child_agrees_b"] is True


def test_worst_states_largest_first_ties_by_state_index():
    columns = {"state_index": np.array([10, 11, 12, 13]), "kl_parent_a": np.array([0.1, 0.3, 0.3, 0.0]),
               "kl_parent_b": np.array([0.2, 0.0, 0.1, 0.3]), "mse_parent_a": np.array([5.0, 1.0, 2.0, 3.0]),
               "mse_parent_b": np.zeros(4)}
    states = np.arange(8, dtype=np.float32).reshape(4, 2)
    worst = analysis.worst_states(columns, states, "max_kl", 3)  # max(KL A, KL B) = 0.2, 0.3, 0.3, 0.3
    assert [r["state_index"] for r in worst["states"]] == [11, 12, 13]
    assert worst["states"][2]["state"] == [6.0, 7.0] and worst["states"][2]["criterion_value"] == 0.3
    assert [r["state_index"] for r in analysis.worst_states(columns, states, "mse_parent_a", 2)["states"]] == [10, 13]
    assert len(analysis.worst_states(columns, states, "kl_parent_b", 10)["states"]) == 4  # at most the states there are


def test_hidden_activations_by_role_are_the_post_relu_outputs():
    net = QNetwork(Architecture(input_dim=2, output_dim=2, hidden=3, dropout=0.0)).eval()
    with torch.no_grad():
        net.network[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        net.network[4].weight.copy_(torch.eye(3))
    x = torch.tensor([[1.0, -1.0]])
    # block 1: Linear gives (1, −1, 0): mean 0, variance ⅔ → LayerNorm (1.2247, −1.2247, 0) (its eps 1e-5
    # moves the 5th digit) → ReLU (1.2247, 0, 0)
    assert analysis.hidden_activations(net, x, "hidden1")[0] == pytest.approx([1.2247, 0.0, 0.0], abs=1e-4)
    # block 2: (c, 0, 0) has mean c/3 and variance 2c²/9, so it normalises to (√2, −1/√2, −1/√2)
    # → ReLU (√2, 0, 0)
    assert analysis.hidden_activations(net, x, "hidden2")[0] == pytest.approx([math.sqrt(2), 0.0, 0.0], abs=1e-4)
    assert not any(module._forward_hooks for module in net.modules())  # the hook is gone afterwards


def test_near_ties_and_margin_bins():
    margin = np.array([0.05, 0.2, 0.3, 1.5, 3.0])
    disagree = np.array([True, True, False, True, False])
    found = analysis.near_tie_share(margin, disagree, 0.25, UNC)
    # near-ties (< 0.25): the first two states. 3 disagreements, 2 of them on near-ties; base rate 2/5
    assert found["disagreements"] == 3 and found["near_tie_share"] == pytest.approx(2 / 3)
    assert found["near_tie_base_rate"] == pytest.approx(0.4) and found["enrichment"] == pytest.approx(5 / 3)
    assert found["near_tie_share_low"] <= 2 / 3 <= found["near_tie_share_high"]
    none = analysis.near_tie_share(margin, np.zeros(5, bool), 0.25, UNC)
    assert none == {"disagreements": 0, "near_tie_base_rate": 0.4}  # no share, no null
    bins = analysis.margin_bins(margin, disagree, [0.1, 0.25, 0.5, 1.0, 2.0], UNC)
    # [0, .1) {0.05}: 1; [.1, .25) {0.2}: 1; [.25, .5) {0.3}: 0; [.5, 1) empty; [1, 2) {1.5}: 1; ≥ 2 {3.0}: 0
    assert [b["states"] for b in bins] == [1, 1, 1, 0, 1, 1]
    assert [b.get("rate") for b in bins] == [1.0, 1.0, 0.0, None, 1.0, 0.0]
    assert analysis.bin_labels([0.1, 0.25]) == ["[0, 0.1)", "[0.1, 0.25)", "≥ 0.25"]


def test_margin_analysis_pools_named_comparisons():
    # margins (top-1 − top-2) 0.1, 1, 2 and 0.2, 1, 4: median 1, so normalised they stay as they are
    x = (torch.tensor([[0.1, 0.0], [1.0, 0.0], [2.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0]]))
    y = (torch.tensor([[0.2, 0.0], [1.0, 0.0], [4.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [4.0, 0.0]]))
    found = analysis.margin_analysis({"x": x, "y": y}, {"both": ("x", "y")}, config(), UNC)
    # x departs on margins 0.1 and 1 (one near-tie of two), y on 0.2 (one of one); pooled 2 of 3, base rate 2/6
    assert found["x"]["near_tie"]["near_tie_share"] == 0.5 and found["y"]["near_tie"]["near_tie_share"] == 1.0
    assert found["both"]["near_tie"]["near_tie_share"] == pytest.approx(2 / 3)
    assert found["both"]["near_tie"]["near_tie_base_rate"] == pytest.approx(1 / 3) and "bins" not in found["both"]
    # x's bins: 0.1 in [0.1, 0.25) (edges are closed below), 1 in [1, 2), 2 in [2, ∞)
    assert [b.get("rate") for b in found["x"]["bins"]] == [None, 1.0, None, None, 1.0, 0.0]


def test_follows_more_confident_parent():
    columns = {"outcome": np.array(["with_a", "with_b", "with_a", "all_agree"]),
               "margin_a": np.array([2.0, 0.5, 0.1, 9.0]), "margin_b": np.array([1.0, 1.5, 0.3, 0.0])}
    # sided states 0, 1, 2: with A where A is larger, with B where B is larger, with A where B is larger → 2/3
    found = analysis.follows_more_confident(columns, UNC)
    assert found["states"] == 3 and found["share"] == pytest.approx(2 / 3)


def test_projection_pca_sign_is_fixed_and_cartpole_uses_the_pole():
    states = np.array([[3.0, 4.0], [-3.0, -4.0], [0.4, -0.3], [-0.4, 0.3]], dtype=np.float32)
    # covariance eigenvectors (0.6, 0.8) (eigenvalue 50) and (0.8, −0.6) (0.5), each with its largest entry positive
    coords, labels = analysis.projection(states, None)
    assert coords == pytest.approx(np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 0.5], [0.0, -0.5]]), abs=1e-5)
    assert labels == ("PC1 (99 % of variance)", "PC2 (1 % of variance)")
    assert analysis.projection(-states, None)[0] == pytest.approx(-coords, abs=1e-5)  # not a flipped picture
    cartpole = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert analysis.projection(cartpole, task("CartPole-v1"))[0].tolist() == [[2.0, 3.0], [6.0, 7.0]]


def test_sample_states_is_seeded_sorted_and_capped():
    assert analysis.sample_states(3, 5, 0).tolist() == [0, 1, 2]
    picked = analysis.sample_states(100, 10, 7)
    assert len(set(picked.tolist())) == 10 and picked.tolist() == sorted(picked.tolist())
    assert picked.tolist() == analysis.sample_states(100, 10, 7).tolist()


@pytest.mark.parametrize("overrides, message", [
    ({"near_tie_cut": 0.3},
     "params.yaml: analyze.near_tie_cut: must be one of margin_edges (the figure marks it) (got 0.3)"),
    ({"top_k": [1, 1]}, "params.yaml: analyze.top_k: must be a non-empty list of distinct integers ≥ 1 (got [1, 1])"),
    ({"margin_edges": [0.5, 0.25]}, "params.yaml: analyze.margin_edges: must be a non-empty increasing list of numbers "
                                    "> 0 (got [0.5, 0.25])"),
])
def test_config_refuses_bad_values(overrides, message):
    with pytest.raises(RecombError) as err:
        config(**overrides)
    assert str(err.value) == message


# ----------------------------------------------------------------------------- the stage


def write_artifacts(root) -> None:
    """Parents, students, PTQ students, a child (three actions) and 300 held-out states, without the upstream stages."""
    arch, student_arch = Architecture(3, 3, 8, 0.0), Architecture(3, 3, 4, 0.0)
    out = Outputs()
    for pair, seed in zip(paths.PAIRS, (0, 1)):
        student = seeded_qnetwork(student_arch, seed + 10)
        out.add_checkpoint(root / paths.PARENTS.format(pair), seeded_qnetwork(arch, seed), "parent", {})
        out.add_checkpoint(root / paths.STUDENTS.format(pair), student, "student", {})
        out.add_checkpoint(root / paths.PTQ_INT8.format(pair), ptq(student, "dynamic"), "student_int8", {})
    out.add_checkpoint(root / paths.CHILD, seeded_qnetwork(arch, 2), "child", {})
    out.add_states(root / paths.STATES_HELDOUT, np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32))
    out.commit()


def numbers_only(node) -> bool:
    if isinstance(node, dict):
        return all(numbers_only(v) for v in node.values())
    return isinstance(node, (int, float, bool))


def test_stage_writes_the_per_state_files_figures_and_report(tmp_path):
    p = Project(tmp_path / "project")
    write_artifacts(p.path)
    write_params(p.path / "params.yaml", max_states=200, top_k=[1, 3], include_logits=True, worst_k=5,
                 worst_criterion="mse_parent_b", activation_layer="hidden2", activation_states=50)
    p.stage("analyze")
    data = p.path / "data"
    with open(p.path / paths.ANALYSIS_DISAGREEMENTS_CSV) as fh:
        table = list(csv.DictReader(fh))
    index = [int(r["state_index"]) for r in table]
    assert len(table) == 200 and index == sorted(set(index)) and index[-1] < 300  # a sample of the 300, in file order
    assert {r["top3_miss_a"] for r in table} == {"False"}  # three actions: always among the top 3
    heldout = np.load(data / "states/heldout.npy")[index]
    child = load_checkpoint(p.path / paths.CHILD).model
    with torch.no_grad():
        q_child = child(torch.from_numpy(heldout))
    assert [int(r["action_child"]) for r in table] == q_child.argmax(-1).tolist()
    assert [float(r["q_child_2"]) for r in table] == pytest.approx(q_child[:, 2].tolist())

    summary = json.loads((p.path / paths.ANALYSIS_SUMMARY).read_text())
    assert numbers_only(summary) and summary["n_heldout"] == 300 and sum(summary["outcomes"].values()) == 200
    records = json.loads((p.path / paths.ANALYSIS_DISAGREEMENTS_JSON).read_text())
    assert records["counts"] == {"states": 200, **summary["outcomes"]} and len(records["states"]) == 200

    worst = json.loads((p.path / paths.ANALYSIS_WORST.format(5)).read_text())["states"]
    largest = sorted((float(r["mse_parent_b"]) for r in table), reverse=True)[:5]
    assert [r["criterion_value"] for r in worst] == pytest.approx(largest)

    activations = np.load(p.path / paths.ANALYSIS_ACTIVATIONS.format("hidden2"))
    with torch.no_grad():  # the second block's ReLU is the 7th module of the Sequential
        expected = child.network[:7](torch.from_numpy(heldout[:50]))
    assert activations.shape == (50, 8) and activations == pytest.approx(expected.numpy(), abs=1e-6)
    for figure in (paths.ANALYSIS_STATE_PNG, paths.ANALYSIS_MARGIN_PNG):
        assert (p.path / figure).read_bytes().startswith(b"\x89PNG")
    assert "KL(parent ‖ child)" in (p.path / paths.ANALYSIS_MARKDOWN).read_text()


@pytest.mark.parametrize("overrides, message", [
    ({"worst_criterion": "max_cosine"}, "params.yaml: analyze.worst_criterion: must be one of max_kl, kl_parent_a, "
                                        "kl_parent_b, max_mse, mse_parent_a, mse_parent_b (got 'max_cosine')"),
    ({"top_k": [1, 4]}, "params.yaml: analyze.top_k: k = 4 is more than the 3 actions of "
                        "data/parents/parent_A.safetensors"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, overrides, message):
    """Run in this process (the stage's `run`, as `python -m stages.analyze` does): the imports are paid once."""
    from stages import analyze
    from stages.common import run
    write_artifacts(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    write_params(tmp_path / "params.yaml", **overrides)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        run(analyze.main)
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not any((tmp_path / "data" / folder).exists() for folder in ("analysis", "reports", "plots"))

"""Fine-tuning a child against two parents: targets per teacher mode, the trainer's knobs."""

import pytest
import torch

from recomb.config import load_params
from stages.common import with_task_values
from recomb.errors import RecombError
from recomb.training.finetune import FinetuneConfig, finetune, finetune_config, make_targets
from recomb.networks import Architecture, seeded_qnetwork
from scratch import ROOT

STATES = torch.randn(1000, 8, generator=torch.Generator().manual_seed(0))
TRAIN, VALIDATION = STATES[:900], STATES[900:]
PARENT = Architecture(8, 4, 64, 0.0)
CHILD = Architecture(8, 4, 32, 0.0)


def config(**overrides) -> FinetuneConfig:
    return FinetuneConfig.from_mapping({**finetune_config(with_task_values(load_params(ROOT / "params.yaml"))).to_dict(), **overrides},
                                       "params.yaml: finetune")


def finetune_one(child, a, b, cfg):
    [result] = finetune([child], a, b, TRAIN, VALIDATION, cfg)
    return result


def parents():
    return seeded_qnetwork(PARENT, 42).eval(), seeded_qnetwork(PARENT, 43).eval()


def parent_q():
    a, b = parents()
    with torch.no_grad():
        return a(STATES), b(STATES)


def test_balanced_targets_follow_agreement_and_split_disagreements_evenly():
    q_a, q_b = parent_q()
    targets = make_targets(q_a, q_b, config(teacher_mode="balanced"))
    agree = q_a.argmax(-1) == q_b.argmax(-1)
    action = targets.q.argmax(-1)
    assert torch.equal(action[agree], q_a.argmax(-1)[agree])
    to_a = (action == q_a.argmax(-1))[~agree].double().mean().item()
    assert abs(to_a - 0.5) <= 1 / (~agree).sum().item()
    assert targets.balance["disagreements_to_a"] == pytest.approx(to_a)
    probs = targets.soft(2.0).exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(STATES)))


def test_single_and_dual_teacher_targets():
    q_a, q_b = parent_q()
    assert torch.equal(make_targets(q_a, q_b, config(teacher_mode="a")).q, q_a)
    dual = make_targets(q_a, q_b, config(teacher_mode="dual", weight_a=0.25))
    torch.testing.assert_close(dual.q, 0.25 * q_a + 0.75 * q_b)
    mixture = 0.25 * torch.softmax(q_a, -1) + 0.75 * torch.softmax(q_b, -1)
    torch.testing.assert_close(dual.soft(1.0).exp(), mixture)


def primary(result, a, b) -> float:
    with torch.no_grad():
        picks = result.child(STATES).argmax(-1)
        return min((picks == a(STATES).argmax(-1)).double().mean().item(),
                   (picks == b(STATES).argmax(-1)).double().mean().item())


def test_balanced_child_keeps_both_parents_where_a_single_teacher_collapses():
    a, b = parents()
    child = seeded_qnetwork(CHILD, 7)
    single = finetune_one(child, a, b, config(teacher_mode="a", epochs=4))
    balanced = finetune_one(child, a, b, config(teacher_mode="balanced", epochs=4))
    assert primary(balanced, a, b) > primary(single, a, b) + 0.1
    assert balanced.history[balanced.best_epoch]["val_primary"] >= balanced.history[0]["val_primary"]


@pytest.mark.parametrize("mode", ["balanced", "dual"])
def test_the_best_epoch_has_the_best_validation_primary_so_the_raw_child_is_never_beaten(mode):
    """A child whose raw form already sides evenly with both parents: fine-tuning may only keep or improve that."""
    a, b = parents()
    raw = seeded_qnetwork(CHILD, 7)
    result = finetune_one(raw, a, b, config(teacher_mode=mode, epochs=4, learning_rate=0.05))
    best = result.history[result.best_epoch]
    assert best["val_primary"] == max(row["val_primary"] for row in result.history)
    ties = [row for row in result.history if row["val_primary"] == best["val_primary"]]
    assert best["val_loss"] == min(row["val_loss"] for row in ties)
    assert best["val_primary"] >= result.history[0]["val_primary"]


def test_no_improvement_stops_early_keeps_the_raw_child_and_lowers_the_rate():
    a, b = parents()
    child = seeded_qnetwork(CHILD, 7)
    cfg = config(teacher_mode="a", learning_rate=1e-12, epochs=6, early_stopping_patience=4,
                 lr_schedule="constant", lr_schedule_patience=1, lr_schedule_factor=0.5)
    result = finetune_one(child, a, b, cfg)
    assert result.best_epoch == 0 and result.stopped_early and len(result.history) == 5
    assert torch.equal(result.child.network[0].weight, child.network[0].weight)
    assert result.history[-1]["lr"] < result.history[1]["lr"]


def test_quantization_aware_finetune_trains_a_different_child():
    a, b = parents()
    child = seeded_qnetwork(CHILD, 7)
    plain = finetune_one(child, a, b, config(epochs=1)).child
    aware = finetune_one(child, a, b, config(epochs=1, quantization_applied="ptq_dynamic")).child
    assert not torch.equal(plain.network[4].weight, aware.network[4].weight)


def test_optimizer_kwargs_are_checked_against_the_optimizer():
    with pytest.raises(RecombError) as err:
        config(optimizer="sgd", optimizer_kwargs={"betas": [0.9, 0.99]})
    assert str(err.value) == ("params.yaml: finetune.optimizer_kwargs: sgd takes only momentum, nesterov, "
                              "weight_decay (got {'betas': [0.9, 0.99]})")
    assert config(optimizer="rmsprop", optimizer_kwargs={"momentum": 0.9}).optimizer == "rmsprop"


@pytest.mark.parametrize("optimizer, kwargs, message", [
    ("adam", {"eps": "tiny"}, "eps must be a number > 0"),
    ("adam", {"betas": 0.9}, "betas must be a list of two numbers in [0, 1)"),
    ("adamw", {"betas": [0.9, 1.5]}, "betas must be a list of two numbers in [0, 1)"),
    ("sgd", {"momentum": -0.1}, "momentum must be a number in [0, 1)"),
    ("sgd", {"nesterov": "yes"}, "nesterov must be true or false"),
    ("rmsprop", {"alpha": 1.0}, "alpha must be a number in (0, 1)"),
    ("adam", {"weight_decay": True}, "weight_decay must be a number ≥ 0"),
])
def test_optimizer_kwargs_values_are_checked_before_training(optimizer, kwargs, message):
    with pytest.raises(RecombError) as err:
        config(optimizer=optimizer, optimizer_kwargs=kwargs)
    assert str(err.value) == f"params.yaml: finetune.optimizer_kwargs: {message} (got {kwargs!r})"


def test_a_regime_that_is_not_a_name_is_one_line():
    params = with_task_values(load_params(ROOT / "params.yaml"))
    params["finetune"]["regime"] = ["tuned"]
    with pytest.raises(RecombError, match=r"^params.yaml: finetune.regime: must be the name of one of the regimes "):
        finetune_config(params)


def test_balanced_mode_moves_the_split_towards_the_parent_it_agrees_with_less():
    a, b = parents()
    result = finetune_one(seeded_qnetwork(CHILD, 7), a, b, config(teacher_mode="balanced", epochs=3))
    rows = result.history[1:]
    for row, following in zip(rows, result.history[2:]):
        moved = following["share_a"] - row["share_a"]
        assert moved * (row["val_agreement_b"] - row["val_agreement_a"]) >= 0
    assert result.balance["share_a"] == result.history[result.best_epoch]["share_a"]


@pytest.mark.parametrize("overrides", [
    {"teacher_mode": "balanced", "epochs": 3},
    {"teacher_mode": "dual", "epochs": 2, "train_dropout": True, "early_stopping_patience": 1, "optimizer": "sgd",
     "optimizer_kwargs": {"momentum": 0.9}},
])
def test_children_trained_side_by_side_match_each_trained_alone_bit_for_bit(overrides):
    a, b = parents()
    children = [seeded_qnetwork(CHILD, seed) for seed in (7, 8, 9)]
    cfg = config(batch_size=64, **overrides)
    together = finetune(children, a, b, TRAIN, VALIDATION, cfg)
    for child, joint in zip(children, together):
        alone = finetune_one(child, a, b, cfg)
        assert joint.history == alone.history and joint.best_epoch == alone.best_epoch
        for key, value in alone.child.state_dict().items():
            assert torch.equal(joint.child.state_dict()[key], value), key


def test_regime_fills_the_budget_and_an_unknown_regime_is_one_line():
    params = with_task_values(load_params(ROOT / "params.yaml"))
    short = finetune_config(params, "short")
    assert (short.epochs, short.learning_rate, short.batch_size, short.quantization_applied) == (5, 1e-3, 32, "none")
    assert finetune_config(params, "short_qat").quantization_applied == "ptq_dynamic"
    with pytest.raises(RecombError, match=r"^params.yaml: finetune.regime: 'huge' is not one of the regimes \(tuned, "):
        finetune_config(params, "huge")
    params["finetune"]["epochs"] = 1
    with pytest.raises(RecombError, match=r"^params.yaml: finetune.epochs: a regime's key; set it in regimes.<name> "
                                          r"\(the regime finetune.regime picks, now 'tuned'\) or pick another regime$"):
        finetune_config(params)
    del params["finetune"]["epochs"]
    params["regimes"]["short"]["quantization_applied"] = "qat_float"
    with pytest.raises(RecombError, match=r"^params.yaml: regimes.short.quantization_applied: must be one of none, "):
        finetune_config(params, "short")
    params["regimes"]["short"]["quantization_applied"] = "none"
    params["regimes"]["short"]["epochs"] = 0
    with pytest.raises(RecombError, match=r"^params.yaml: regimes.short.epochs: must be ≥ 1 \(got 0\)$"):
        finetune_config(params, "tuned")


def test_the_cosine_schedule_decays_the_rate_to_zero_and_refuses_a_plateau_beside_it():
    a, b = parents()
    result = finetune_one(seeded_qnetwork(CHILD, 7), a, b, config(epochs=3, learning_rate=0.01))
    assert result.history[1]["lr"] < 0.01 and result.history[-1]["lr"] < 1e-4
    with pytest.raises(RecombError, match=r"^params.yaml: finetune.lr_schedule_patience: must be 0 with "):
        config(lr_schedule="cosine", lr_schedule_patience=2)

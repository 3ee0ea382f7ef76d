import dataclasses

import pytest
import torch

from recomb import metrics
from recomb.distill import DistillConfig, distill, objective, split_indices
from recomb.networks import Architecture, seeded_qnetwork

TEACHER = Architecture(8, 4, 64, 0.1)
STUDENT = Architecture(8, 4, 32, 0.05)
CFG = DistillConfig(student_hidden=0, student_dropout=0.05, train_dropout=True, epochs=4, lr=1e-2, lr_schedule="cosine", warmup_fraction=0.05, batch_size=64, max_grad_norm=1.0,
                    val_fraction=0.1, seed=0, loss_fn="kl", temperature=3.0, temp_decay=1.0, alpha=1.0, q_weight=1.0)


def states(n=1500, seed=0):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def test_objective_terms():
    t = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    scale = torch.ones(1, 2)
    same = objective(t, t, scale, CFG, 3.0)
    assert same["soft"].item() == pytest.approx(0.0, abs=1e-7)
    assert same["q"].item() == 0.0
    hard_only = objective(t * 0, t, scale, dataclasses.replace(CFG, alpha=0.0, q_weight=0.0), 3.0)
    assert hard_only["total"].item() == pytest.approx(hard_only["hard"].item())
    assert hard_only["hard"].item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_split_is_seeded_and_disjoint():
    train, val = split_indices(100, 0.1, 3)
    assert len(val) == 10 and len(train) == 90
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(split_indices(100, 0.1, 3)[1], val)


def test_distillation_learns_and_keeps_best_epoch():
    teachers = [seeded_qnetwork(TEACHER, 42).eval(), seeded_qnetwork(TEACHER, 43).eval()]
    students = [seeded_qnetwork(STUDENT, 7), seeded_qnetwork(STUDENT, 8)]
    x, heldout = states(), states(500, seed=1)
    before = [metrics.action_agreement(t(heldout), s.eval()(heldout)) for t, s in zip(teachers, students)]
    result = distill(students, teachers, x, CFG, [7, 8])
    with torch.no_grad():
        after = [metrics.action_agreement(t(heldout), s(heldout)) for t, s in zip(teachers, result.students)]
    assert all(a > b + 0.2 for a, b in zip(after, before)), (before, after)
    for history, best in zip(result.histories, result.best_epochs):
        assert len(history) == CFG.epochs
        assert history[best - 1]["val_loss"] == min(row["val_loss"] for row in history)


def test_distillation_is_deterministic():
    teacher = seeded_qnetwork(TEACHER, 42).eval()
    runs = [distill([seeded_qnetwork(STUDENT, 7)], [teacher], states(300), dataclasses.replace(CFG, epochs=2), [7])
            for _ in range(2)]
    for key, value in runs[0].students[0].state_dict().items():
        assert torch.equal(value, runs[1].students[0].state_dict()[key])


def test_a_member_trains_the_same_alone_or_in_a_population():
    teachers = [seeded_qnetwork(TEACHER, 42).eval(), seeded_qnetwork(TEACHER, 43).eval()]
    cfg = dataclasses.replace(CFG, epochs=2)
    x = states(300)
    pair = distill([seeded_qnetwork(STUDENT, 7), seeded_qnetwork(STUDENT, 8)], teachers, x, cfg, [7, 8])
    alone = distill([seeded_qnetwork(STUDENT, 8)], teachers[1:], x, cfg, [8])
    for key, value in pair.students[1].state_dict().items():
        torch.testing.assert_close(value, alone.students[0].state_dict()[key], rtol=1e-5, atol=1e-6)

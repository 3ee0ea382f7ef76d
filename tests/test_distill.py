import dataclasses
import math

import pytest
import torch

from recomb import metrics
from recomb.selection import split_indices
from recomb.evaluation.validation import RobustnessConfig, robustness
from recomb.training.distill import DistillConfig, distill, noisy_copies, objective
from recomb.networks import Architecture, seeded_qnetwork

TEACHER = Architecture(8, 4, 64, 0.1)
STUDENT = Architecture(8, 4, 32, 0.05)
CFG = DistillConfig(student_hidden=0, student_dropout=0.05, student_family="layernorm", train_dropout=True, epochs=4, lr=1e-2, lr_schedule="cosine", warmup_fraction=0.05, batch_size=64, max_grad_norm=1.0,
                    val_fraction=0.1, seed=0, loss_fn="kl", temperature=3.0, temp_decay=1.0, alpha=1.0, q_weight=1.0,
                    augment_copies=0, augment_noise=0.2)


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


def test_objective_on_a_hand_computed_two_action_case():
    ln3 = math.log(3.0)  # float32 rounding of ln 3 is why the tolerances are 1e-6
    teacher = torch.tensor([[[ln3, 0.0]]])  # softmax: p = (3/4, 1/4), greedy action 0
    student = torch.tensor([[[0.0, 0.0]]])  # softmax: q = (1/2, 1/2)
    cfg = dataclasses.replace(CFG, alpha=0.25, q_weight=2.0)
    terms = objective(student, teacher, torch.tensor([[2.0, 0.5]]), cfg, 1.0)
    # soft = KL(teacher ‖ student) = ¾·ln(¾ / ½) + ¼·ln(¼ / ½) = ¾·ln 1.5 − ¼·ln 2 = 0.1308120
    # (the other direction, KL(student ‖ teacher) = ½·ln(4/3) = 0.1438410, would be wrong)
    assert terms["soft"].item() == pytest.approx(0.1308120, abs=1e-6)
    # hard = cross-entropy of q on the teacher's action 0 = −ln ½ = 0.6931472
    assert terms["hard"].item() == pytest.approx(0.6931472, abs=1e-6)
    # q: raw MSE ((ln 3)² + 0)/2 over scale 2 → (ln 3)²/4; advantages (±ln 3/2 vs 0) MSE (ln 3)²/4 over 0.5 → (ln 3)²/2;
    # half their sum: 3·(ln 3)²/8 = 0.4526059
    assert terms["q"].item() == pytest.approx(0.4526059, abs=1e-6)
    # total = 0.25·soft + 0.75·hard + 2·q = 0.0327030 + 0.5198604 + 0.9052117 = 1.4577751
    assert terms["total"].item() == pytest.approx(1.4577751, abs=1e-6)
    # the two scales are not interchangeable: raw over 0.5 → (ln 3)², advantages over 2 → (ln 3)²/8; half: 9·(ln 3)²/16
    assert objective(student, teacher, torch.tensor([[0.5, 2.0]]), cfg, 1.0)["q"].item() == pytest.approx(0.6789088, abs=1e-6)
    # at T = 2 the teacher [2·ln 3, 0] gives p again, and the KL term is scaled by T² = 4: 4 · 0.1308120 = 0.5232481
    assert objective(student, 2 * teacher, torch.ones(1, 2), cfg, 2.0)["soft"].item() == pytest.approx(0.5232481, abs=1e-6)
    # loss_fn mse: mean over actions of (p − q)² = ((¾ − ½)² + (¼ − ½)²)/2 = 0.0625
    mse = objective(student, teacher, torch.ones(1, 2), dataclasses.replace(cfg, loss_fn="mse"), 1.0)
    assert mse["soft"].item() == pytest.approx(0.0625, abs=1e-6)


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


def test_noisy_copies_are_seeded_and_scaled_per_feature():
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 10.0, 0.0])
    copies = noisy_copies(x, 2, 0.3, seed=5)
    assert copies.shape == (800, 3) and copies.dtype == torch.float32
    assert torch.equal(copies, noisy_copies(x, 2, 0.3, seed=5)) and not torch.equal(copies, noisy_copies(x, 2, 0.3, 6))
    noise = (copies - x.repeat(2, 1))[:, :2] / x[:, :2].std(0)
    assert torch.equal(copies[:, 2], torch.zeros(800))  # a constant feature stays constant
    row_std = noise.pow(2).mean(1).sqrt()  # each copy's noise: a std drawn from [0, 0.3], in units of each feature's std
    assert 0.1 < row_std.mean() < 0.2 and row_std.max() < 0.3 * 2.5


def test_noisy_copies_teach_the_student_its_teacher_off_the_buffer():
    """States on a plane in 8-D: plain distillation matches the teacher on the plane and not beside it, where
    a 0.2σ noise moves a tenth of the teacher's actions; copies labelled by the teacher teach it the neighbourhood."""
    embed = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    x, heldout = [torch.randn(n, 2, generator=torch.Generator().manual_seed(s)) @ embed for n, s in ((2000, 1), (1000, 2))]
    teacher = seeded_qnetwork(TEACHER, 42).eval()
    cfg = dataclasses.replace(CFG, train_dropout=False, epochs=8, temperature=1.0, alpha=0.5, augment_noise=0.4)
    followed = []
    for copies in (0, 1):
        student = distill([seeded_qnetwork(STUDENT, 7)], [teacher], x, dataclasses.replace(cfg, augment_copies=copies),
                          [7]).students[0]
        teacher_q = teacher(heldout).detach()
        clean = metrics.action_agreement(teacher_q, student(heldout))
        found = robustness(teacher, student, heldout.numpy(), teacher_q, clean, RobustnessConfig(0.2, 1.1, 0))
        assert clean > 0.99 and found["gaussian_noise"]["teacher_changed"] > 0.08
        followed.append(found["gaussian_noise"]["followed"])
    assert followed[0] < 0.2 and followed[1] > followed[0] + 0.3, followed

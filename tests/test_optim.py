import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recomb.training.distill import lr_factor
from recomb.optim import ReduceOnPlateau, make_optimizer
from recomb.portable import VmlGuard


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(99, 100, "cosine", 0.1) < 0.01
    assert lr_factor(50, 100, "constant", 0.1) == 1.0


@pytest.mark.parametrize("name, kwargs, reference", [
    ("adam", {}, lambda p: torch.optim.Adam(p, lr=1e-2)),
    ("adam", {"weight_decay": 0.1}, lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1)),
    ("adamw", {}, lambda p: torch.optim.AdamW(p, lr=1e-2)),
    ("adamw", {"weight_decay": 0.3, "betas": [0.8, 0.99]},
     lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.3, betas=(0.8, 0.99))),
    ("sgd", {}, lambda p: torch.optim.SGD(p, lr=1e-2)),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.01}, lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=0.01)),
    ("sgd", {"momentum": 0.9, "nesterov": True}, lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True)),
    ("rmsprop", {}, lambda p: torch.optim.RMSprop(p, lr=1e-2)),
    ("rmsprop", {"momentum": 0.5, "weight_decay": 0.01}, lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5, weight_decay=0.01)),
])
def test_optimizers_match_torch(name, kwargs, reference):
    """Bit for bit without a square root (SGD), within a few ulp with one (Adam, RMSprop: `portable.sqrt`),
    the learning rate changed between steps as the trainers' schedules do; no step runs an operator of VML."""
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(2, 3, 4)), torch.nn.Parameter(torch.randn(2, 5))]  # a population of 2
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_ref = make_optimizer(name, ours, 1e-2, kwargs), reference(ref)
    for step in range(15):
        opt_ours.lr = opt_ref.param_groups[0]["lr"] = 1e-2 / (1 + step % 4)
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        with VmlGuard() as guard:
            opt_ours.step()
        assert guard.calls == {}
        opt_ref.step()
    for p, q in zip(ours, ref):
        if name == "sgd":
            assert torch.equal(p, q)
        else:
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_the_fused_adam_matches_torchs_fused_adam():
    """The DQN's optimizer: torch's fused kernel, bit for bit the class with `fused=True`."""
    from recomb.optim import Adam
    torch.manual_seed(1)
    ours = [torch.nn.Parameter(torch.randn(16, 4)), torch.nn.Parameter(torch.randn(16))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_ref = Adam(ours, lr=2e-3, fused=True), torch.optim.Adam(ref, lr=2e-3, fused=True)
    for _ in range(20):
        for p, q in zip(ours, ref):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        with VmlGuard() as guard:
            opt_ours.step()
        assert guard.calls == {}
        opt_ref.step()
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)


def test_the_dqn_gradient_step_is_torchs_bit_for_bit():
    """The DQN's update (`autograd.grad`, our clip, the fused step on those grads) against what it replaced:
    `backward`, `torch.nn.utils.clip_grad_norm_(foreach=True)` and `torch.optim.Adam(fused=True)`; the
    norm is clipped on most steps (max 0.5) and left alone on some."""
    from recomb.networks import Architecture, seeded_qnetwork
    from recomb.optim import Adam, clip_grad_norm_
    ours, ref = (seeded_qnetwork(Architecture(8, 4, 32, 0.1), 3).eval() for _ in range(2))
    opt_ours, opt_ref = Adam(ours.parameters(), lr=1e-3, fused=True), torch.optim.Adam(ref.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(0)
    clipped = 0
    for step in range(30):
        states, targets = torch.randn(64, 8, generator=gen), torch.randn(64, 4, generator=gen) * (step % 3)
        grads = list(torch.autograd.grad(torch.nn.functional.smooth_l1_loss(ours(states), targets), list(ours.parameters())))
        clip_grad_norm_(grads, 0.5)
        opt_ours.step(grads)
        opt_ref.zero_grad()
        torch.nn.functional.smooth_l1_loss(ref(states), targets).backward()
        clipped += float(torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.5, foreach=True)) > 0.5
        opt_ref.step()
    assert 0 < clipped < 30
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_a_stack_member_steps_as_it_would_alone(name):
    """What lets a QNetworkStack train members together: an element's update does not depend on its neighbours."""
    torch.manual_seed(2)
    start, grads = torch.randn(3, 37), [torch.randn(3, 37) for _ in range(5)]
    rows = []
    for members in (1, 3):
        p = torch.nn.Parameter(start[:members].clone())
        opt = make_optimizer(name, [p], 1e-2, {"momentum": 0.9} if name in ("sgd", "rmsprop") else {})
        for g in grads:
            p.grad = g[:members].clone()
            opt.step()
        rows.append(p.detach()[0])
    assert torch.equal(rows[0], rows[1])


def test_optimizers_do_not_import_dynamo():
    """The reason this module exists: torch.optim's classes import torch._dynamo (~1-3 s) on construction."""
    code = (
        "import sys, torch\n"
        "from recomb.optim import make_optimizer\n"
        "for name in ('adam', 'adamw', 'sgd', 'rmsprop'):\n"
        "    p = torch.nn.Parameter(torch.ones(3))\n"
        "    p.grad = torch.ones(3)\n"
        "    make_optimizer(name, [p], 0.1, {'momentum': 0.9} if name in ('sgd', 'rmsprop') else {}).step()\n"
        "assert 'torch._dynamo' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_plateau_reduces_after_patience_epochs_without_improvement():
    opt = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 1.0, {})
    plateau = ReduceOnPlateau(opt, patience=2, factor=0.5)
    for loss in (1.0, 0.5, 0.6, 0.6):
        plateau.step(loss)
    assert opt.lr == 1.0
    plateau.step(0.6)
    assert opt.lr == 0.5

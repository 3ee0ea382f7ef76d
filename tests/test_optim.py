import pytest
import torch

from recomb.distill import lr_factor
from recomb.optim import Adam


def test_adam_matches_torch_adam():
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_ref = Adam(ours, lr=1e-2), torch.optim.Adam(ref, lr=1e-2)
    for step in range(20):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_ours.step()
        opt_ref.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(99, 100, "cosine", 0.1) < 0.01
    assert lr_factor(50, 100, "constant", 0.1) == 1.0

"""recomb.portable: the math the hashed path uses instead of MKL's VML, and the guard that keeps VML out."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recomb import portable
from recomb.portable import VmlGuard


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance in units in the last place between two same-signed float tensors."""
    ints = torch.int32 if a.dtype == torch.float32 else torch.int64
    return int((a.view(ints).long() - b.view(ints).long()).abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sqrt_is_within_one_ulp_of_the_rounded_root_and_runs_no_vml(dtype):
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(0), dtype=dtype) * 100
    rounded = torch.from_numpy(np.sqrt(x.numpy()))  # numpy: the hardware square root, correctly rounded
    with VmlGuard() as guard:
        ours = portable.sqrt(x)
    assert guard.calls == {}
    assert ulps(ours, rounded) <= 1
    assert portable.sqrt(torch.tensor([0.0, 4.0, math.inf])).tolist() == [0.0, 2.0, math.inf]


def test_the_guard_sees_every_way_torch_reaches_vml():
    x = torch.rand(64) + 0.1
    with VmlGuard() as guard:
        x.sqrt(), x.exp(), torch.log(x), x.tanh(), x.pow(0.5), torch._foreach_sqrt([x]), torch.logsumexp(x, 0)
        y = x.clone()
        y.exp_()
    assert set(guard.calls) >= {"sqrt", "exp", "log", "tanh", "pow", "_foreach_sqrt", "exp_"}
    assert "logsumexp" in guard.calls or guard.calls["exp"] >= 2  # the composite, or what it decomposes into


def test_the_guard_catches_torchs_own_adam_and_ignores_integer_and_safe_ops():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with VmlGuard() as guard:
        torch.optim.Adam([p], lr=0.1, foreach=True).step()  # what recomb.optim used to run
    assert "_foreach_sqrt" in guard.calls or "sqrt" in guard.calls
    with VmlGuard() as guard:
        z = torch.randn(8, 3)
        F.softmax(z, -1), F.log_softmax(z, -1), z.rsqrt(), torch.logaddexp(z, z), torch.arange(4).pow(2)
        torch.linalg.vector_norm(z, dim=1), z.std(0), F.cross_entropy(z, torch.zeros(8, dtype=torch.long))
    assert guard.calls == {}


def test_probabilities_of_normalised_log_probabilities_are_their_exponentials():
    log_p = F.log_softmax(torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, -30.0]], dtype=torch.float64), -1)
    torch.testing.assert_close(portable.probabilities(log_p), log_p.exp(), rtol=1e-14, atol=0.0)


def test_log_mixture_by_hand_and_at_both_ends():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    got = portable.log_mixture(p.log(), q.log(), 0.25)
    expected = torch.tensor([math.log(0.25 * 0.5 + 0.75 * 0.9), math.log(0.25 * 0.5 + 0.75 * 0.1)])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(portable.log_mixture(p.log(), q.log(), 1.0), p.log())
    torch.testing.assert_close(portable.log_mixture(p.log(), q.log(), 0.0), q.log())

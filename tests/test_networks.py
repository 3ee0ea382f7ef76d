import torch

from recomb.networks import PARAM_KEYS, Architecture, QNetwork, QNetworkStack, seeded_qnetwork, student_hidden

ARCH = Architecture(8, 4, 16, 0.1)


def test_state_dict_layout_matches_agentfarm_base_qnetwork():
    net = QNetwork(ARCH)
    assert tuple(net.state_dict()) == PARAM_KEYS
    assert net.state_dict()["network.0.weight"].shape == (16, 8)
    assert net.state_dict()["network.8.weight"].shape == (4, 16)


def test_init_is_xavier_with_zero_biases_and_seeded():
    a, b = seeded_qnetwork(ARCH, 3), seeded_qnetwork(ARCH, 3)
    for key in PARAM_KEYS:
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    bound = (6 / (8 + 16)) ** 0.5
    assert a.network[0].weight.abs().max() <= bound
    assert all(a.network[i].bias.abs().sum() == 0 for i in (0, 4, 8))
    assert not torch.equal(seeded_qnetwork(ARCH, 4).network[0].weight, a.network[0].weight)


def test_student_width_defaults_to_half_at_least_16():
    assert student_hidden(64, 0) == 32
    assert student_hidden(20, 0) == 16
    assert student_hidden(64, 48) == 48


def test_stack_member_computes_what_its_network_computes():
    nets = [seeded_qnetwork(ARCH, s).eval() for s in (1, 2, 3)]
    stack = QNetworkStack(ARCH, [n.state_dict() for n in nets]).eval()
    x = torch.randn(10, 8)
    out = stack(x)
    assert out.shape == (3, 10, 4)
    for p, net in enumerate(nets):
        torch.testing.assert_close(out[p], net(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stack.member(p)(x), net(x))


def test_per_member_clipping_leaves_other_members_alone():
    stack = QNetworkStack(ARCH, [seeded_qnetwork(ARCH, s).state_dict() for s in (1, 2)])
    for param in stack.params.values():
        param.grad = torch.ones_like(param)
        param.grad[1] *= 1e-4
    stack.per_member_grad_norm_clip_(1.0)
    norms = torch.stack([p.grad.pow(2).flatten(1).sum(1) for p in stack.params.values()]).sum(0).sqrt()
    assert abs(norms[0].item() - 1.0) < 1e-4
    assert norms[1].item() < 0.1

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
    # Xavier-uniform bound √(6 / (fan_in + fan_out)): layer 0 √(6/24) = 0.5, layer 4 √(6/32) = 0.4330, layer 8 √(6/20) = 0.5477;
    # uniform on the whole interval, so with ≥ 64 draws the largest is within 10 % of the bound
    for idx, bound in ((0, 0.5), (4, 0.4330127), (8, 0.5477226)):
        largest = a.network[idx].weight.abs().max().item()
        assert 0.9 * bound < largest <= bound
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
    # a member has 16·8 + 16·3 + 16·16 + 16·3 + 4·16 + 4 = 548 parameters: member 0's all-ones gradient has norm
    # √548 = 23.409 and is scaled to norm 1, i.e. every entry to 1/√548 = 0.04271788; member 1's (norm
    # 1e-4·√548 = 0.0023) is under the limit and stays exactly as it was
    assert sum(p[0].numel() for p in stack.params.values()) == 548
    for param in stack.params.values():
        assert torch.allclose(param.grad[0], torch.full_like(param.grad[0], 0.04271788), rtol=1e-6, atol=0)
        assert torch.equal(param.grad[1], torch.ones_like(param.grad[1]) * 1e-4)


def test_the_plain_family_is_the_same_network_without_its_layernorms():
    """`layer_norm: False` (SB3's and CleanRL's MLP): Linear keys only, the same starting Linear weights as the
    LayerNorm family's for a seed, its stack computing what each member computes; the LayerNorm family's
    sidecar keeps its old form (no `layer_norm` key)."""
    plain, normed = Architecture(4, 2, 8, 0.0, layer_norm=False), Architecture(4, 2, 8, 0.0)
    net = seeded_qnetwork(plain, 5)
    assert list(net.state_dict()) == list(plain.param_keys()) == [
        f"network.{i}.{name}" for i in (0, 4, 8) for name in ("weight", "bias")]
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == plain.shapes()
    twin = seeded_qnetwork(normed, 5).state_dict()
    assert all(torch.equal(value, twin[key]) for key, value in net.state_dict().items())
    x = torch.randn(32, 4)
    with torch.no_grad():
        manual = net.network[8](torch.relu(net.network[4](torch.relu(net.network[0](x)))))
        torch.testing.assert_close(net.eval()(x), manual, rtol=0, atol=0)
        stack = QNetworkStack(plain, [net.state_dict(), seeded_qnetwork(plain, 6).state_dict()]).eval()
        torch.testing.assert_close(stack(x)[0], net(x), rtol=0, atol=0)
    assert "layer_norm" not in normed.to_dict() and plain.to_dict()["layer_norm"] is False

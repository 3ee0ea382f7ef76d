"""Parents brought from Stable-Baselines3, CleanRL or any MLP: read by content through the real SB3 files, refused
in one line when they are not a plain MLP Q-network, and carried through the pipeline; the child back out as
ONNX (checked by onnxruntime) and a torch state dict (read back by recomb's AgentFarm reader)."""

import io
import json
import zipfile

import numpy as np
import onnxruntime
import pytest
import torch
from stable_baselines3 import DQN, PPO
from torch import nn

from conftest import SMALL_SYNTHETIC
from recomb.artifacts import load_checkpoint, load_parent
from recomb.errors import RecombError
from recomb.export import ONNX_INPUT, architecture_card, onnx_bytes, sb3_zip_bytes, state_dict_bytes
from recomb.networks import Architecture, MLPArchitecture, MLPQNetwork, QNetwork, seeded_qnetwork
from recomb.quantization.quantize import ptq
from scratch import BIN
from test_pipeline import one_line_error

STATES = torch.from_numpy(np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32))


def refused(read, *args) -> str:
    with pytest.raises(RecombError) as caught:
        read(*args)
    return str(caught.value)


def sb3_dqn(path, net_arch=(64, 64), activation=None, seed=0) -> DQN:
    kwargs = {"net_arch": list(net_arch), **({"activation_fn": activation} if activation else {})}
    model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=kwargs, seed=seed, device="cpu")
    model.save(path)
    return model


def cleanrl_network(seed: int) -> nn.Sequential:
    """CleanRL's dqn.py QNetwork for CartPole: 4 → 120 → 84 → 2 with ReLU, saved as its state dict."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))


def test_an_sb3_zip_is_read_as_sb3_computes_it_without_deserializing_its_objects(tmp_path):
    for activation, name in ((None, "relu"), (nn.Tanh, "tanh")):
        path = tmp_path / f"dqn_{name}.zip"
        model = sb3_dqn(path, activation=activation)
        parent = load_parent(path, 0.1, "relu")  # the zip names its own activation
        assert parent.arch == MLPArchitecture(4, 2, (64, 64), False, name)
        assert parent.meta["imported_from"] == "sb3"
        with torch.no_grad():
            torch.testing.assert_close(parent.model(STATES), model.q_net(STATES), rtol=0, atol=0)
        assert (parent.model(STATES).argmax(1).numpy() == model.predict(STATES.numpy(), deterministic=True)[0]).all()


def test_cleanrl_state_dicts_and_any_mlp_are_read_by_content_whatever_their_name(tmp_path):
    net = cleanrl_network(0)
    for name in ("agent.cleanrl_model", "agent.pth", "agent.bin"):  # the reader is chosen by content
        torch.save(net.state_dict(), tmp_path / name)
        parent = load_parent(tmp_path / name, 0.1, "relu")
        assert parent.arch == MLPArchitecture(4, 2, (120, 84), False, "relu")
        torch.testing.assert_close(parent.model(STATES), net(STATES), rtol=0, atol=0)

    class Named(nn.Module):  # a user's own module with named layers, LayerNorm'd, Tanh
        def __init__(self):
            super().__init__()
            self.fc1, self.ln1, self.fc2 = nn.Linear(4, 32), nn.LayerNorm(32), nn.Linear(32, 3)

        def forward(self, x):
            return self.fc2(torch.tanh(self.ln1(self.fc1(x))))
    named = Named()
    torch.save(named.state_dict(), tmp_path / "mine.pt")
    parent = load_parent(tmp_path / "mine.pt", 0.1, "tanh")
    assert parent.arch == MLPArchitecture(4, 3, (32,), True, "tanh")
    torch.testing.assert_close(parent.model(STATES), named(STATES))

    agentfarm = seeded_qnetwork(Architecture(4, 2, 16, 0.1), 0)  # AgentFarm's layout stays recomb's own family
    torch.save(agentfarm.state_dict(), tmp_path / "agentfarm.pth")
    parent = load_parent(tmp_path / "agentfarm.pth", 0.1, "relu")
    assert isinstance(parent.model, QNetwork) and parent.arch == Architecture(4, 2, 16, 0.1)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_what_is_not_a_plain_mlp_q_network_is_refused_in_one_line_naming_the_file(tmp_path):
    cases = {}
    sb3_dqn(tmp_path / "dqn.zip")
    PPO("MlpPolicy", "CartPole-v1", device="cpu").save(tmp_path / "ppo.zip")
    cases["ppo.zip"] = ("an SB3 model of another algorithm (policy from stable_baselines3.common.policies, no q_net "
                        "tensors); recomb reads DQN Q-networks")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    cases["other.zip"] = "a zip that is neither an SB3 model.save() nor a torch.save file (holds notes.txt)"
    torch.save({"0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(4), "1.weight": torch.zeros(2, 5),
                "1.bias": torch.zeros(2)}, tmp_path / "unchained.pth")
    cases["unchained.pth"] = ("not a plain MLP Q-network: layer 1 takes 5 inputs but the layer before it gives 4: "
                              "the layers do not chain")
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    torch.save(conv.state_dict(), tmp_path / "conv.pth")
    cases["conv.pth"] = ("not a plain MLP Q-network: layer 0 has a 4-D weight (8, 3, 3, 3): a convolution; recomb "
                         "reads MLPs of Linear layers only")
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).state_dict(), tmp_path / "bn.pth")
    cases["bn.pth"] = "not a plain MLP Q-network: layer 1 is a batch norm; recomb reads MLPs of Linear and LayerNorm layers"
    torch.save({"model": cleanrl_network(0).state_dict(), "step": 5}, tmp_path / "nested.pth")
    cases["nested.pth"] = "expected a state dict of tensors (a Q-network's state_dict()), found 'model', 'step'"
    unsafe = "refused: holds objects other than tensors (unsafe pickle)"
    for name in ("evil.pth", "evil.cleanrl_model"):
        torch.save({"network.0.weight": Evil()}, tmp_path / name)
        cases[name] = unsafe
    with zipfile.ZipFile(tmp_path / "dqn.zip") as good, zipfile.ZipFile(tmp_path / "evil.zip", "w") as evil:
        evil.writestr("data", good.read("data"))  # SB3's members, a pickle that runs code as its policy
        payload = io.BytesIO()
        torch.save({"q_net.q_net.0.weight": Evil()}, payload)
        evil.writestr("policy.pth", payload.getvalue())
    cases["evil.zip"] = unsafe
    for name, message in cases.items():
        assert refused(load_parent, tmp_path / name, 0.1, "relu") == f"{tmp_path / name}: {message}", name


def test_the_child_exported_as_onnx_and_a_state_dict_computes_what_it_computes(tmp_path):
    child = seeded_qnetwork(Architecture(4, 2, 16, 0.1), 3).eval()
    int8 = ptq(child, "static", [STATES])
    for network in (child, int8):
        session = onnxruntime.InferenceSession(onnx_bytes(network))
        got = session.run(None, {ONNX_INPUT: STATES.numpy()})[0]
        with torch.no_grad():
            want = network(STATES).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert (got.argmax(1) == want.argmax(1)).all()
    (tmp_path / "child.pt").write_bytes(state_dict_bytes(child))
    back = load_parent(tmp_path / "child.pt", 0.1, "relu")  # AgentFarm's layout, read as AgentFarm's is
    assert back.arch == child.arch
    torch.testing.assert_close(back.model(STATES), child(STATES), rtol=0, atol=0)
    plain = seeded_qnetwork(Architecture(4, 2, 16, 0.1, layer_norm=False), 3).eval()
    session = onnxruntime.InferenceSession(onnx_bytes(ptq(plain, "dynamic")))
    np.testing.assert_allclose(session.run(None, {ONNX_INPUT: STATES.numpy()})[0],
                               ptq(plain, "dynamic")(STATES).numpy(), rtol=1e-5, atol=1e-5)
    assert refused(sb3_zip_bytes, child, "CartPole-v1").startswith("an SB3 zip needs a float child of the plain family")
    card = architecture_card(int8, {"role": "child_int8", "params": {"seed": 1}, "history": []})
    assert card["architecture"] == child.arch.to_dict() and card["made_by"] == {"role": "child_int8",
                                                                                "params": {"seed": 1}}


def test_sb3_and_cleanrl_parents_go_through_the_pipeline_with_their_task(project):
    """An SB3 zip × a CleanRL state dict, of different widths, on CartPole with no states file: the states are
    both parents' rollouts, the students share one width in the plain family, the returns are gated; crossing
    the parents themselves is refused in one line, and `recomb export` writes the child, which SB3 loads and
    plays as recomb does on every held-out state."""
    p = project
    sb3_dqn(p.path / "data/user/dqn.zip", seed=1)
    torch.save(cleanrl_network(2).state_dict(), p.path / "data/user/agent.cleanrl_model")
    p.set(**{**SMALL_SYNTHETIC, "parents.source": "files", "parents.env": "CartPole-v1",
             "distill.student_family": "plain",  # students and child in SB3's and CleanRL's family
             "parents.files.parent_a": "data/user/dqn.zip", "parents.files.parent_b": "data/user/agent.cleanrl_model",
             "parents.files.states": "", "parents.files.task": True, "parents.files.input_dim": 4,
             "parents.files.output_dim": 2, "parents.files.buffer.n_states": 300,
             "validate_recombination.eval_episodes": 2})
    for stage in ("inputs", "parents", "distill", "ptq", "qat", "crossover", "finetune", "validate_recombination"):
        p.stage(stage)
    imported = [json.loads((p.path / f"data/inputs/parent_{pair}.json").read_text()) for pair in "AB"]
    assert [(s["architecture"]["widths"], s["imported_from"]) for s in imported] == [([64, 64], "sb3"),
                                                                                     ([120, 84], "torch")]
    assert json.loads((p.path / "data/parents/parent_A.json").read_text())["env"] == "CartPole-v1"
    assert len(np.load(p.path / "data/states/train.npy")) + len(np.load(p.path / "data/states/heldout.npy")) == 300
    student = load_checkpoint(p.path / "data/students/student_A.safetensors")
    assert student.arch == Architecture(4, 2, 60, 0.05, layer_norm=False)  # half the widest parent (120), one width
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    assert report["greedy_return"]["child"] is not None and "child_greedy_return" in report["checks"]
    assert "checks_not_run" not in report
    p.set(**{"crossover.parents": "parents"})
    assert one_line_error(p.stage("crossover", check=False)).endswith(
        "crossover needs two networks of one shape (the students share one: crossover.parents: students)")
    sb3_dqn(p.path / "data/user/twin.zip", seed=3)  # one shape, still outside recomb's family
    p.set(**{"parents.files.parent_b": "data/user/twin.zip"})
    p.stage("inputs")
    p.stage("parents")
    assert one_line_error(p.stage("crossover", check=False)) == (
        "crossover.parents: parents is a brought MLP outside recomb's LayerNorm family, which the operators "
        "cannot cross; cross its students (crossover.parents: students)")
    p.set(**{"crossover.parents": "students"})
    printed = p.run(str(BIN / "recomb"), "export").stdout
    assert printed.splitlines() == [f"wrote data/export/child{ext}" for ext in (".json", ".onnx", ".pt", "_sb3.zip")]
    child = load_checkpoint(p.path / "data/children/finetuned/child.safetensors").model
    agent = DQN.load(p.path / "data/export/child_sb3.zip", device="cpu")  # SB3 itself opens the child
    heldout = np.load(p.path / "data/states/heldout.npy")
    with torch.no_grad():
        greedy = child(torch.from_numpy(heldout)).argmax(1).numpy()
    assert (agent.predict(heldout, deterministic=True)[0] == greedy).all()

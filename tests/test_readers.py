"""Every reader of a user-supplied file, fed the damage files really suffer: nothing, random bytes, a copy cut
short anywhere, and valid syntax with the wrong content. Each must end in one RecombError line that names
the file, never another exception (the `error:` line of a stage or of `recomb`)."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from recomb.artifacts import Outputs, load_checkpoint, load_parent, load_states, read_json, sidecar_path
from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.quantization.quantize import ptq
from scratch import ROOT
from stages.params_check import check_params

ARCH = Architecture(4, 2, 16, 0.1)


def damaged(whole: bytes, wrong: bytes) -> list[tuple[str, bytes]]:
    """(label, content): empty, random bytes, the file cut at every tenth, and `wrong` (valid syntax, wrong
    content)."""
    noise = np.random.default_rng(0).integers(0, 256, size=max(len(whole), 64), dtype=np.uint8).tobytes()
    return [("empty", b""), ("random bytes", noise),
            *((f"cut at {tenths}0 %", whole[:len(whole) * tenths // 10]) for tenths in range(1, 10)),
            ("wrong content", wrong)]


def write_checkpoint(path, model) -> None:
    out = Outputs()
    out.add_checkpoint(path, model, "student", {})
    out.commit()


def checkpoint_files(tmp_path):
    """(path read, path damaged, whole bytes, wrong bytes) of each file a checkpoint is made of."""
    path = tmp_path / "student.safetensors"
    write_checkpoint(tmp_path / "other.safetensors", seeded_qnetwork(Architecture(4, 2, 8, 0.1), 1))
    write_checkpoint(path, seeded_qnetwork(ARCH, 0))
    other = tmp_path / "other.safetensors"
    yield "tensors", path, path, path.read_bytes(), other.read_bytes()  # another network's tensors under this sidecar
    sidecar = json.loads(sidecar_path(path).read_text())
    wrong = json.dumps({**sidecar, "architecture": {**sidecar["architecture"], "hidden": 32}}).encode()
    yield "sidecar", path, sidecar_path(path), sidecar_path(path).read_bytes(), wrong


def int8_checkpoint(tmp_path):
    path = tmp_path / "student_int8.safetensors"
    states = torch.from_numpy(np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32))
    out = Outputs()
    out.add_checkpoint(path, ptq(seeded_qnetwork(ARCH, 0), "static", [states]), "student_int8", {})
    out.commit()
    return path


def readers(tmp_path):
    """(name, path read, path damaged, whole bytes, wrong bytes, read): every reader of a user file."""
    for part, path, target, whole, wrong in checkpoint_files(tmp_path):
        yield f"checkpoint {part}", target, whole, wrong, lambda p=path: load_checkpoint(p)
    int8 = int8_checkpoint(tmp_path)
    yield "int8 checkpoint", int8, int8.read_bytes(), (tmp_path / "student.safetensors").read_bytes(), \
        lambda: load_checkpoint(int8)
    states = tmp_path / "states.npy"
    np.save(states, np.zeros((20, 4), np.float32))
    wrong = io.BytesIO()
    np.save(wrong, np.zeros((20, 3), np.float32))  # the wrong input dim
    yield "states", states, states.read_bytes(), wrong.getvalue(), lambda: load_states(states, 4)
    parent = tmp_path / "parent_A.pt"
    torch.save(seeded_qnetwork(ARCH, 0).state_dict(), parent)
    wrong = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)  # a state dict of another architecture
    yield "AgentFarm .pt", parent, parent.read_bytes(), wrong.getvalue(), lambda: load_parent(parent, 0.1, "relu")
    sb3 = tmp_path / "sb3_dqn.zip"
    sb3_zip(sb3, seeded_qnetwork(ARCH, 0))
    wrong = tmp_path / "sb3_wrong.zip"
    with zipfile.ZipFile(wrong, "w") as archive:  # SB3's members, but not a policy that SB3's DQN writes
        archive.writestr("data", json.dumps({"policy_class": {"__module__": "elsewhere"}}))
        archive.writestr("policy.pth", sb3.read_bytes())
    yield "SB3 zip", sb3, sb3.read_bytes(), wrong.read_bytes(), lambda: load_parent(sb3, 0.1, "relu")
    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes())
    yield "params.yaml", params, params.read_bytes(), b"- a list\n- not sections\n", lambda: check_params(str(params))
    report = tmp_path / "pipeline.json"
    report.write_text(json.dumps({"passed": True, "gates": {}}))
    yield "JSON report", report, report.read_bytes(), b"[1, 2]", lambda: read_json(report, "report")


def sb3_zip(path, net) -> None:
    """The members of an SB3 DQN `model.save()` zip that recomb reads: `data` (JSON) and `policy.pth`."""
    layers = {f"q_net.q_net.{i}.{name}": value for i, layer in ((0, net.network[0]), (2, net.network[4]),
                                                             (4, net.network[8]))
              for name, value in layer.state_dict().items()}
    policy = io.BytesIO()
    torch.save(layers, policy)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.dqn.policies"},
                                             "policy_kwargs": {"net_arch": [16, 16]}}))
        archive.writestr("policy.pth", policy.getvalue())


def test_every_reader_turns_every_damage_into_one_line_naming_the_file(tmp_path):
    for name, target, whole, wrong, read in readers(tmp_path):
        for label, content in damaged(whole, wrong):
            target.write_bytes(content)
            try:
                read()
            except RecombError as exc:
                message = str(exc)
                assert "\n" not in message and target.stem in message, (name, label, message)  # the file, or its checkpoint
            except Exception as exc:  # noqa: BLE001 - what the test exists to catch
                pytest.fail(f"{name}, {label}: {type(exc).__name__}: {exc}")
            else:
                assert name == "JSON report" and label == "wrong content", (name, label)  # JSON a caller checks
        target.write_bytes(whole)
        read()  # the undamaged file still reads

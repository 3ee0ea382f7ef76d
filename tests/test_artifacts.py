"""Every bad-input case of the artifact layer, with its exact one-line message."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from recomb.artifacts import Outputs, load_checkpoint, load_parent, load_states, sidecar_path
from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork

ARCH = Architecture(8, 4, 16, 0.1)


def save(path, net=None, role="parent_A"):
    out = Outputs()
    out.add_checkpoint(path, net or seeded_qnetwork(ARCH, 0), role, {"metrics": {"x": 1.0}})
    out.commit()
    return path


def refused(fn, *args):
    with pytest.raises(RecombError) as err:
        fn(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_checkpoint_round_trip_and_sidecar(tmp_path):
    net = seeded_qnetwork(ARCH, 5)
    path = save(tmp_path / "p.safetensors", net)
    ckpt = load_checkpoint(path)
    x = torch.randn(3, 8)
    torch.testing.assert_close(ckpt.model(x), net.eval()(x))
    assert ckpt.meta["role"] == "parent_A" and ckpt.meta["architecture"]["hidden"] == 16
    assert sidecar_path(path).name == "p.json"


def test_commit_leaves_no_temp_files_and_nothing_before_commit(tmp_path):
    out = Outputs()
    out.add_json(tmp_path / "a" / "r.json", {"k": 1})
    assert not (tmp_path / "a").exists()
    out.commit()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["r.json"]


def three_outputs(tmp_path, blocked: Path) -> Outputs:
    out = Outputs()
    out.add_json(tmp_path / "a" / "first.json", {"new": 1})
    out.add_json(blocked, {"new": 2})
    out.add_json(tmp_path / "c" / "last.json", {"new": 3})
    return out


def previous_outputs(tmp_path) -> dict[Path, str]:
    old = {tmp_path / "a" / "first.json": '{"old": 1}', tmp_path / "c" / "last.json": '{"old": 3}'}
    for path, text in old.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return old


def test_an_output_that_cannot_be_staged_leaves_every_previous_output_as_it_was(tmp_path):
    old = previous_outputs(tmp_path)
    (tmp_path / "b").write_text("a file where the stage wants a folder")
    blocked = tmp_path / "b" / "middle.json"
    message = refused(three_outputs(tmp_path, blocked).commit)
    assert message.startswith(f"{blocked}: cannot write (") and message.endswith("no output was changed")
    assert {path: path.read_text() for path in old} == old
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["first.json"]  # no temp file left


def test_a_folder_where_an_output_goes_is_refused_before_anything_changes(tmp_path):
    old = previous_outputs(tmp_path)
    blocked = tmp_path / "b" / "middle.json"
    blocked.mkdir(parents=True)
    assert refused(three_outputs(tmp_path, blocked).commit) == (
        f"{blocked}: cannot write (a folder is in the way); no output was changed")
    assert {path: path.read_text() for path in old} == old and blocked.is_dir()


def test_an_output_that_cannot_be_swapped_in_restores_the_ones_already_swapped(tmp_path, monkeypatch):
    import recomb.artifacts as artifacts
    old = previous_outputs(tmp_path)
    blocked = tmp_path / "b" / "middle.json"
    rename = artifacts.os.replace

    def failing_replace(src, dst):  # the one rename a full or failing disk refuses
        if Path(dst) == blocked:
            raise OSError(5, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", failing_replace)
    message = refused(three_outputs(tmp_path, blocked).commit)
    assert message == f"{blocked}: cannot replace (Input/output error); the previous outputs are back"
    assert {path: path.read_text() for path in old} == old and not blocked.exists()
    for folder in ("a", "b", "c"):
        assert not [p for p in (tmp_path / folder).iterdir() if p.name.startswith(".")], folder


def test_missing_checkpoint(tmp_path):
    assert refused(load_checkpoint, tmp_path / "nope.safetensors") == f"{tmp_path / 'nope.safetensors'}: checkpoint not found"


def test_missing_sidecar(tmp_path):
    path = save(tmp_path / "p.safetensors")
    sidecar_path(path).unlink()
    assert refused(load_checkpoint, path) == f"{tmp_path / 'p.json'}: checkpoint sidecar not found"


def test_truncated_checkpoint(tmp_path):
    path = save(tmp_path / "p.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    assert refused(load_checkpoint, path).startswith(f"{path}: truncated or not a safetensors file")


def test_pickle_renamed_as_checkpoint_is_refused(tmp_path):
    path = save(tmp_path / "p.safetensors")
    torch.save(seeded_qnetwork(ARCH, 0), path)  # a whole pickled module
    assert refused(load_checkpoint, path) == f"{path}: is a pickle/torch.save file, not safetensors; refusing to unpickle it"


def test_foreign_sidecar(tmp_path):
    path = save(tmp_path / "p.safetensors")
    sidecar_path(path).write_text('{"hello": 1}')
    assert refused(load_checkpoint, path) == (
        f"{tmp_path / 'p.json'}: not a recomb checkpoint sidecar (missing format 'recomb.checkpoint')")


def test_sidecar_shape_mismatch(tmp_path):
    path = save(tmp_path / "p.safetensors")
    text = sidecar_path(path).read_text().replace('"hidden": 16', '"hidden": 32')
    sidecar_path(path).write_text(text)
    assert refused(load_checkpoint, path) == (
        f"{path}: tensor network.0.weight has shape (16, 8), architecture needs (32, 8)")


@pytest.mark.parametrize("value, shown", [('"0.1"', "'0.1'"), ("1.5", "1.5"), ("true", "True")])
def test_sidecar_dropout_must_be_a_rate(tmp_path, value, shown):
    path = save(tmp_path / "p.safetensors")
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["architecture"]["dropout"] = json.loads(value)
    sidecar_path(path).write_text(json.dumps(sidecar))
    assert refused(load_checkpoint, path) == (
        f"{tmp_path / 'p.json'}: architecture.dropout must be a number in [0, 1) (got {shown})")


def test_nan_weights(tmp_path):
    net = seeded_qnetwork(ARCH, 0)
    with torch.no_grad():
        net.network[4].weight[0, 0] = float("nan")
    path = save(tmp_path / "p.safetensors", net)
    assert refused(load_checkpoint, path) == f"{path}: tensor network.4.weight contains NaN or Inf"


def test_dims_not_matching_params(tmp_path):
    ckpt = load_checkpoint(save(tmp_path / "p.safetensors"))
    assert refused(ckpt.expect_dims, 4, 4, "params.yaml parents.files") == (
        f"{ckpt.path}: input_dim is 8 but params.yaml parents.files says 4")


def test_agentfarm_state_dict_loads_without_unpickling_objects(tmp_path):
    net = seeded_qnetwork(Architecture(8, 4, 64, 0.1), 1)
    path = tmp_path / "parent_A.pt"
    torch.save(net.state_dict(), path)
    ckpt = load_parent(path, dropout=0.1, activation="relu")
    assert ckpt.arch == Architecture(8, 4, 64, 0.1)
    x = torch.randn(2, 8)
    torch.testing.assert_close(ckpt.model(x), net.eval()(x))


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_pt_is_refused(tmp_path):
    path = tmp_path / "parent_A.pt"
    torch.save({"network.0.weight": Evil()}, path)
    assert refused(load_parent, path, 0.1, "relu") == f"{path}: refused: holds objects other than tensors (unsafe pickle)"


def test_empty_truncated_and_random_pt_files_say_what_they_are(tmp_path):
    path = tmp_path / "parent_A.pt"
    torch.save(seeded_qnetwork(Architecture(8, 4, 64, 0.1), 0).state_dict(), path)
    whole = path.read_bytes()
    path.write_bytes(b"")
    expected = "(expected an SB3 zip, a torch.save state dict, or safetensors)"
    assert refused(load_parent, path, 0.1, "relu") == f"{path}: empty file {expected}"
    path.write_bytes(bytes(range(256)) * 4)
    assert refused(load_parent, path, 0.1, "relu") == f"{path}: not a network file recomb reads {expected}"
    for tenths in range(1, 10):  # cut anywhere, as a failed copy leaves it: the zip's directory is at its end
        path.write_bytes(whole[:len(whole) * tenths // 10])
        assert refused(load_parent, path, 0.1, "relu").startswith(f"{path}: a truncated or damaged zip ("), tenths


def test_pt_that_is_not_a_base_qnetwork(tmp_path):
    path = tmp_path / "parent_A.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    assert refused(load_parent, path, 0.1, "relu") == (
        f"{path}: not a plain MLP Q-network: layer fc: weight (2, 2) without a bias of 2 values; recomb reads "
        "Linear layers with biases")


def write_npy(path, array):
    np.save(path, array, allow_pickle=True)
    return path


def test_states_round_trip(tmp_path):
    states = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    out = Outputs()
    out.add_states(tmp_path / "s.npy", states)
    out.commit()
    np.testing.assert_array_equal(load_states(tmp_path / "s.npy", 8), states)


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 3), np.float32), "states must have shape (N, 8) with N > 0, got (5, 3)"),
    (np.zeros((5,), np.float32), "states must have shape (N, 8) with N > 0, got (5,)"),
    (np.zeros((0, 8), np.float32), "states must have shape (N, 8) with N > 0, got (0, 8)"),
    (np.zeros((5, 8), np.float64), "states must be float32, got float64"),
    (np.array([[0.0] * 8, [np.nan] + [0.0] * 7], np.float32), "1 of 2 states contain NaN or Inf (first at row 1)"),
    (np.array([[np.inf] * 8], np.float32), "1 of 1 states contain NaN or Inf (first at row 0)"),
])
def test_bad_states(tmp_path, array, message):
    path = write_npy(tmp_path / "s.npy", array)
    assert refused(load_states, path, 8) == f"{path}: {message}"


def test_pickled_states_are_refused(tmp_path):
    path = write_npy(tmp_path / "s.npy", np.array([{"a": 1}], dtype=object))
    assert refused(load_states, path, 8) == f"{path}: holds Python objects (pickle); refusing to load"
    path.write_bytes(pickle.dumps([1, 2]))
    assert refused(load_states, path, 8) == f"{path}: holds Python objects (pickle); refusing to load"
    path.write_bytes(b"hello, not an array")
    assert refused(load_states, path, 8) == f"{path}: not a .npy file"


def test_truncated_states(tmp_path):
    path = write_npy(tmp_path / "s.npy", np.zeros((50, 8), np.float32))
    path.write_bytes(path.read_bytes()[:200])
    assert refused(load_states, path, 8) == (f"{path}: truncated or corrupt: its header promises shape (50, 8) "
                                             "(1600 bytes of float32) but 72 bytes follow")
    path.write_bytes(path.read_bytes()[:20])  # cut inside the header
    assert refused(load_states, path, 8) == f"{path}: truncated or not a .npy file"


def test_a_header_that_promises_terabytes_is_refused_before_anything_is_allocated(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8)})
    path = tmp_path / "s.npy"
    path.write_bytes(header.getvalue() + bytes(64))
    assert refused(load_states, path, 8) == (f"{path}: truncated or corrupt: its header promises shape "
                                             "(1000000000000, 8) (32000000000000 bytes of float32) but 64 bytes follow")


def test_missing_states(tmp_path):
    assert refused(load_states, tmp_path / "s.npy", 8) == f"{tmp_path / 's.npy'}: states file not found"


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_a_plain_family_network_and_its_int8_form_round_trip(tmp_path, mode):
    """The plain family's sidecar says `layer_norm: false`; its float and int8 checkpoints read back as written,
    and the int8 one holds no LayerNorm tensors."""
    from recomb.quantization.quantize import ptq
    net = seeded_qnetwork(Architecture(4, 2, 16, 0.1, layer_norm=False), 0).eval()
    states = torch.randn(64, 4)
    out = Outputs()
    out.add_checkpoint(tmp_path / "child.safetensors", net, "child", {})
    out.add_checkpoint(tmp_path / "child_int8.safetensors", ptq(net, mode, [states]), "child_int8", {})
    out.commit()
    assert json.loads((tmp_path / "child.json").read_text())["architecture"]["layer_norm"] is False
    back = load_checkpoint(tmp_path / "child.safetensors")
    torch.testing.assert_close(back.model(states), net(states), rtol=0, atol=0)
    int8 = load_checkpoint(tmp_path / "child_int8.safetensors")
    assert not any(".1." in key or ".5." in key for key in int8.model.tensors())
    assert (int8.model(states).argmax(1) == net(states).argmax(1)).float().mean() > 0.9
    sidecar = json.loads((tmp_path / "child.json").read_text())
    sidecar["architecture"]["layer_norm"] = "no"
    (tmp_path / "child.json").write_text(json.dumps(sidecar))
    assert refused(load_checkpoint, tmp_path / "child.safetensors") == (
        f"{tmp_path / 'child.json'}: architecture.layer_norm must be true or false (got 'no')")

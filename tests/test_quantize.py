"""Int8 quantization: the scheme's invariants, both kernels, QAT ↔ conversion, int8 checkpoints."""

import pickle

import pytest
import torch

from recomb.artifacts import Outputs, load_checkpoint
from recomb.config import load_params
from recomb.training.distill import distill
from recomb.errors import RecombError
from recomb.networks import Architecture, QNetworkStack, seeded_qnetwork
from recomb.quantization.int8 import tensor_bytes
from recomb.quantization.quantize import (activation_qparams, calibration_batches, fake_quantize_weight, import_torchao, ptq,
                                          quantize_weight)
from recomb.training.qat import QATConfig, qat
from scratch import ROOT

ARCH = Architecture(8, 4, 32, 0.0)
STATES = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))


def teacher_and_student():
    return seeded_qnetwork(Architecture(8, 4, 64, 0.0), 1).eval(), seeded_qnetwork(ARCH, 2).eval()


def calibration():
    return calibration_batches(STATES, 4, 64, seed=0)


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 37.0])
def test_weight_quantization_is_torchaos_bit_for_bit(magnitude):
    qp = import_torchao()
    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(2)) * magnitude
    weight[0, :3] = torch.tensor([127.0, 2.5, -40.5]) * magnitude / 127  # exact rounding ties
    scale, zero_point = qp.choose_qparams_affine(weight, qp.MappingType.SYMMETRIC, (1, 8), torch.int8,
                                                 quant_min=-127, quant_max=127, scale_dtype=torch.float32)
    reference = qp.quantize_affine(weight, (1, 8), scale, zero_point, torch.int8, -127, 127)
    q, ours = quantize_weight(weight)
    assert torch.equal(q, reference) and torch.equal(ours, scale.reshape(-1))


@pytest.mark.parametrize("low, high", [(-1.3, 2.7), (0.0, 4.2), (0.5, 3.0), (-5.0, -0.25), (-1e-9, 1e-9)])
def test_activation_qparams_are_torchaos(low, high):
    qp = import_torchao()
    scale, zero_point = qp.choose_qparams_affine_with_min_max(
        torch.tensor([low]), torch.tensor([high]), qp.MappingType.ASYMMETRIC, (1,), torch.int8,
        quant_min=-128, quant_max=127, scale_dtype=torch.float32, zero_point_dtype=torch.int32)
    assert activation_qparams(low, high) == (float(scale[0]), int(zero_point[0]))


def test_weights_are_symmetric_int8_per_output_channel():
    weight = torch.randn(16, 8) * torch.linspace(0.1, 3, 16).unsqueeze(1)
    q, scale = quantize_weight(weight)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert int(q.abs().max()) == 127 and int(q.min()) >= -127
    assert ((q.float() * scale.unsqueeze(1) - weight).abs() <= scale.unsqueeze(1) / 2 + 1e-6).all()


def test_weight_quantization_of_a_hand_made_weight():
    q, scale = quantize_weight(torch.tensor([[2.54, -1.0, 0.3], [-0.5, 0.1, 0.0], [0.0, 0.0, 0.0]]))
    # row 0: scale 2.54/127 = 0.02, values 2.54/0.02 = 127, −1/0.02 = −50, 0.3/0.02 = 15
    # row 1: the largest magnitude is negative: scale 0.5/127 = 0.003937008, values −127, 0.1·254 = 25.4 → 25, 0
    # row 2: all zero: the scale is clamped to float32's smallest normal (1.1754944e-38), not 0, and values are 0
    assert q.tolist() == [[127, -50, 15], [-127, 25, 0], [0, 0, 0]]
    assert scale.tolist() == pytest.approx([0.02, 0.003937008, 1.1754944e-38], rel=1e-6)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_network_tracks_the_float_network(mode):
    net = seeded_qnetwork(ARCH, 3).eval()
    int8 = ptq(net, mode, calibration())
    with torch.inference_mode():
        float_q, int8_q = net(STATES), int8(STATES)
    assert (float_q.argmax(1) == int8_q.argmax(1)).float().mean() > 0.95
    assert (float_q - int8_q).abs().max() < 0.05 * float_q.abs().max()
    assert int8.network_0_weight.dtype == torch.int8


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_outputs_do_not_depend_on_batching(mode):
    int8 = ptq(seeded_qnetwork(ARCH, 3), mode, calibration())
    with torch.inference_mode():
        together = int8(STATES[:64])
        alone = torch.cat([int8(STATES[i:i + 1]) for i in range(64)])
        halves = torch.cat([int8(STATES[:17]), int8(STATES[17:64])])
    assert torch.equal(together, alone) and torch.equal(together, halves)


def test_static_reference_backend_is_bit_identical_to_int8_kernels():
    net = seeded_qnetwork(ARCH, 4)
    with torch.inference_mode():
        assert torch.equal(ptq(net, "static", calibration())(STATES),
                           ptq(net, "static", calibration(), backend="reference")(STATES))
        torch.testing.assert_close(ptq(net, "dynamic")(STATES), ptq(net, "dynamic", backend="reference")(STATES))


def test_static_ranges_come_from_exactly_the_calibration_states_and_clip_outside():
    # calibration sees 4 batches of 64 of the 512 states; with this seed they leave out both extreme entries,
    # so a range read off all 512 states would differ
    batches = calibration_batches(STATES, 4, 64, seed=13)
    seen = torch.cat(batches)
    assert seen.shape == (256, 8) and len({tuple(row) for row in seen.tolist()}) == 256
    low, high = seen.min().item(), seen.max().item()
    assert STATES.min().item() < low and high < STATES.max().item()
    int8 = ptq(seeded_qnetwork(ARCH, 4), "static", batches)
    scale, zero_point = int8.network_0_input_scale.item(), int8.network_0_input_zero_point.item()
    assert (scale, zero_point) == activation_qparams(low, high)
    assert (scale, zero_point) != activation_qparams(STATES.min().item(), STATES.max().item())
    # the int8 grid (q − zero_point)·scale, q in [−128, 127], spans the calibrated range to within a step
    grid_low, grid_high = (-128 - zero_point) * scale, (127 - zero_point) * scale
    assert abs(grid_low - low) < scale and abs(grid_high - high) < scale
    # states with entries beyond it compute as if those entries were clipped to the grid's ends
    outside = STATES[((STATES < low) | (STATES > high)).any(1)]
    clipped = outside.clamp(grid_low, grid_high)
    assert len(outside) >= 2 and not torch.equal(clipped, outside)
    with torch.inference_mode():
        assert torch.equal(int8(outside), int8(clipped))


def test_dequantized_network_is_the_dynamic_int8_network():
    int8 = ptq(seeded_qnetwork(ARCH, 5), "dynamic")
    with torch.inference_mode():
        torch.testing.assert_close(int8.dequantized()(STATES), int8(STATES), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 37.0])
def test_fake_quantization_matches_conversion_and_passes_gradients_straight(magnitude):
    weight = (torch.randn(3, 16, 8, generator=torch.Generator().manual_seed(1)) * magnitude).requires_grad_()
    with torch.no_grad():  # exact rounding ties: value (k + 0.5)·scale for a row whose scale is its max / 127
        weight[0, 0, :3] = torch.tensor([127.0, 2.5, -40.5]) * magnitude / 127
    fake = fake_quantize_weight(weight)
    for p in range(3):
        q, scale = quantize_weight(weight[p])
        torch.testing.assert_close(fake[p], q.float() * scale.unsqueeze(1), rtol=0, atol=0)
    fake.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))


def qat_config(**overrides) -> QATConfig:
    section = {**load_params(ROOT / "params.yaml")["qat"], "epochs": 2, **overrides}
    return QATConfig.from_mapping(section, "params.yaml: qat")


def test_qat_student_converts_to_exactly_what_it_trained_against():
    teacher, student = teacher_and_student()
    trained = qat([student], [teacher], STATES, qat_config(), [0]).students[0]
    stack = QNetworkStack(ARCH, [trained.state_dict()])
    stack.weight_transform = fake_quantize_weight
    with torch.inference_mode():
        torch.testing.assert_close(stack(STATES)[0], ptq(trained, "dynamic")(STATES), rtol=1e-5, atol=1e-4)


def test_qat_moves_weights_and_differs_from_float_distillation():
    teacher, student = teacher_and_student()
    cfg = qat_config(lr=1e-3)
    trained = qat([student], [teacher], STATES, cfg, [0]).students[0]
    plain = distill([student], [teacher], STATES, cfg.distill_config(), [0]).students[0]
    assert not torch.equal(trained.network[0].weight, student.network[0].weight)
    assert not torch.equal(trained.network[0].weight, plain.network[0].weight)


def test_qat_params_are_validated_under_their_own_key():
    with pytest.raises(RecombError, match=r"^params.yaml: qat.lr: must be > 0 \(got -1.0\)$"):
        qat_config(lr=-1.0)


def save(path, model, role="student_A_int8"):
    out = Outputs()
    out.add_checkpoint(path, model, role, {})
    out.commit()
    return path


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_checkpoint_round_trip(tmp_path, mode):
    int8 = ptq(seeded_qnetwork(ARCH, 6), mode, calibration())
    ckpt = load_checkpoint(save(tmp_path / "s_int8.safetensors", int8))
    assert ckpt.kind == "int8" and ckpt.model.mode == mode and ckpt.meta["quantization"]["mode"] == mode
    with torch.inference_mode():
        assert torch.equal(ckpt.model(STATES), int8(STATES))
    assert ckpt.float_model().network[0].weight.dtype == torch.float32
    assert tensor_bytes(int8) < 0.5 * tensor_bytes(seeded_qnetwork(ARCH, 6))


def test_pickle_renamed_to_the_int8_file_name_is_refused(tmp_path):
    path = save(tmp_path / "student_A_int8.safetensors", ptq(seeded_qnetwork(ARCH, 6), "dynamic"))
    torch.save(ptq(seeded_qnetwork(ARCH, 6), "dynamic"), path)  # a whole-module pickle, as the peer writes
    with pytest.raises(RecombError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: is a pickle/torch.save file, not safetensors; refusing to unpickle it"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(RecombError, match="refusing to unpickle"):
        load_checkpoint(path)


def test_int8_checkpoint_with_wrong_tensor_dtype_or_scale_is_refused(tmp_path):
    int8 = ptq(seeded_qnetwork(ARCH, 6), "dynamic")
    tensors = int8.tensors()
    as_float = type(int8)(ARCH, "dynamic", {**tensors, "network.4.weight": tensors["network.4.weight"].float()})
    path = save(tmp_path / "a.safetensors", as_float)
    with pytest.raises(RecombError, match=r"a.safetensors: tensor network.4.weight has dtype torch.float32, expected torch.int8$"):
        load_checkpoint(path)
    zero_scale = type(int8)(ARCH, "dynamic", {**tensors, "network.8.weight_scale": torch.zeros(4)})
    with pytest.raises(RecombError, match="network.8.weight_scale has a non-positive quantization scale"):
        load_checkpoint(save(tmp_path / "b.safetensors", zero_scale))


def test_int8_checkpoint_missing_static_tensors_is_refused(tmp_path):
    path = save(tmp_path / "c.safetensors", ptq(seeded_qnetwork(ARCH, 6), "dynamic"))
    sidecar = path.with_suffix(".json")
    sidecar.write_text(sidecar.read_text().replace('"dynamic"', '"static"'))
    with pytest.raises(RecombError, match=r"not an int8 static Q-network checkpoint .*missing network.0.input_scale"):
        load_checkpoint(path)


def test_qat_keeps_its_starting_point_when_no_epoch_validates_better():
    teacher, student = teacher_and_student()
    result = qat([student], [teacher], STATES, qat_config(lr=1e-12), [0])
    assert result.best_epochs == [0]
    assert result.histories[0][0]["epoch"] == 0 and result.histories[0][0]["train_loss"] is None
    assert torch.equal(result.students[0].network[4].weight, student.network[4].weight)
    # with a real learning rate an epoch beats the start, and its weights, not the start's, come back
    trained = qat([student], [teacher], STATES, qat_config(lr=1e-3), [0])
    assert trained.best_epochs != [0]
    assert trained.best_row(0)["val_loss"] < trained.histories[0][0]["val_loss"]
    assert not torch.equal(trained.students[0].network[4].weight, student.network[4].weight)

import pytest

from recomb.config import load_params
from recomb.training.distill import DistillConfig
from recomb.errors import RecombError

GOOD = dict(student_hidden=0, student_dropout=0.05, student_family="layernorm", train_dropout=True, epochs=2, lr=1e-3, lr_schedule="cosine", warmup_fraction=0.05, batch_size=8, max_grad_norm=1.0,
            val_fraction=0.1, seed=0, loss_fn="kl", temperature=3.0, temp_decay=1.0, alpha=1.0, q_weight=1.0,
            augment_copies=0, augment_noise=0.2)
WHERE = "params.yaml: distill"


def test_valid_section_parses():
    cfg = DistillConfig.from_mapping(GOOD, WHERE)
    assert cfg.lr == 1e-3 and cfg.student_hidden == 0


@pytest.mark.parametrize("change, message", [
    ({"lr": -1.0}, "params.yaml: distill.lr: must be > 0 (got -1.0)"),
    ({"alpha": 1.5}, "params.yaml: distill.alpha: must be in [0, 1] (got 1.5)"),
    ({"epochs": "ten"}, "params.yaml: distill.epochs: expected an integer (got 'ten')"),
    ({"epochs": 2.5}, "params.yaml: distill.epochs: expected an integer (got 2.5)"),
    ({"loss_fn": "huber"}, "params.yaml: distill.loss_fn: must be one of kl, mse (got 'huber')"),
    ({"val_fraction": 1.0}, "params.yaml: distill.val_fraction: must be in (0, 1) (got 1.0)"),
    ({"lr": float("nan")}, "params.yaml: distill.lr: must be finite (got nan)"),
    ({"augment_copies": -1}, "params.yaml: distill.augment_copies: must be ≥ 0 (0 = no noisy copies) (got -1)"),
    ({"augment_copies": 1, "augment_noise": 0.0}, "params.yaml: distill.augment_noise: must be > 0 when "
                                                  "augment_copies is not 0"),
    ({"temperatur": 3.0}, "params.yaml: distill.temperatur: unknown key (expected one of: "),
])
def test_bad_values_name_the_key(change, message):
    with pytest.raises(RecombError) as err:
        DistillConfig.from_mapping({**GOOD, **change}, WHERE)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_missing_key_is_an_error_not_a_default():
    data = dict(GOOD)
    del data["temperature"]
    with pytest.raises(RecombError, match=r"^params.yaml: distill.temperature: missing key$"):
        DistillConfig.from_mapping(data, WHERE)


def test_a_key_written_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("distill:\n  lr: 0.01\n  epochs: 3\n  lr: 0.5\n")
    with pytest.raises(RecombError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: key 'distill.lr' is written twice (line 4)"  # lr is in qat, finetune… too
    path.write_text("distill:\n  lr: 0.01\nregimes:\n  short:\n    epochs: 1\n    lr: 0.1\n    epochs: 2\n")
    with pytest.raises(RecombError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: key 'regimes.short.epochs' is written twice (line 7)"


def test_a_params_file_of_random_bytes_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(RecombError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: not a text file (not UTF-8)"


def test_an_unknown_section_is_refused_when_the_sections_are_given(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("distill: {lr: 0.01}\nfinetun: {seed: 1}\n")
    assert set(load_params(path)) == {"distill", "finetun"}
    with pytest.raises(RecombError) as err:
        load_params(path, ("distill", "finetune"))
    assert str(err.value) == f"{path}: finetun: unknown section (expected one of: distill, finetune)"


def test_a_number_or_task_threshold_takes_either_and_names_both_when_neither():
    from recomb.evaluation.validation import RecombThresholds
    for value in (475, "task"):
        assert RecombThresholds.from_mapping({"min_gain_over_copy": 0.5, "min_child_return": value},
                                             "x").min_child_return == value
    with pytest.raises(RecombError) as err:
        RecombThresholds.from_mapping({"min_gain_over_copy": 0.5, "min_child_return": "tusk"}, "x")
    assert str(err.value) == "x.min_child_return: must be a float or one of task (got 'tusk')"

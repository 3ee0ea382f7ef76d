"""Every artifact read and write of the pipeline goes through this module.

Checkpoints are safetensors tensors plus a JSON sidecar (architecture, role, the
params that made them, metrics); states are float32 `.npy` arrays; reports are
JSON, Markdown, CSV and PNG. Nothing here ever unpickles: a foreign or truncated
file is refused with one line naming it. Stages stage their outputs in an
`Outputs` object and commit them together at the end, each through a temporary
file and an atomic rename, so a failing stage leaves nothing half-written.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import RecombError
from .layouts import LayoutError, is_recomb_layout, read_mlp, recomb_architecture
from .networks import ACTIVATIONS, Architecture, MLPArchitecture, MLPQNetwork, QNetwork
from .quantization.int8 import Int8QNetwork, int8_tensor_spec

CHECKPOINT_FORMAT = "recomb.checkpoint"
CHECKPOINT_VERSION = 1
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")
NPY_MAGIC = b"\x93NUMPY"


USER_FOLDER = "data/user"  # the folder dvc.yaml tracks for the user's files: files elsewhere would go unnoticed


def in_user_folder(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return parts[:2] == tuple(USER_FOLDER.split("/")) and ".." not in parts


def sidecar_path(path: str | Path) -> Path:
    """`student_A.safetensors` → `student_A.json`."""
    return Path(path).with_suffix(".json")


# ----------------------------------------------------------------------------- writing


@dataclass
class Outputs:
    """A stage's outputs, held in memory until `commit` writes them all atomically."""

    files: dict[Path, bytes] = field(default_factory=dict)

    def add_bytes(self, path: str | Path, data: bytes) -> None:
        self.files[Path(path)] = data

    def add_json(self, path: str | Path, obj: Any) -> None:
        self.add_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())

    def add_text(self, path: str | Path, text: str) -> None:
        self.add_bytes(path, text.encode())

    def add_csv(self, path: str | Path, rows: list[dict], empty_header: list[str] | None = None) -> None:
        """Rows as CSV (DVC plots); `empty_header` names the columns when there are no rows."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else empty_header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.add_text(path, buf.getvalue())

    def add_figure(self, path: str | Path, figure) -> None:
        """A matplotlib figure as PNG, without the version stamp so bytes are reproducible."""
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        self.add_bytes(path, buf.getvalue())

    def add_states(self, path: str | Path, states: np.ndarray) -> None:
        check_states(states, Path(path), states.shape[1] if states.ndim == 2 else -1)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(states, dtype=np.float32), allow_pickle=False)
        self.add_bytes(path, buf.getvalue())

    def add_labels(self, path: str | Path, labels: np.ndarray) -> None:
        """One non-negative integer per state (int64 `.npy`), e.g. the condition each state was visited in."""
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if labels.ndim != 1 or (labels < 0).any():
            raise ValueError(f"{path}: labels must be non-negative integers, one per state")
        buf = io.BytesIO()
        np.save(buf, labels, allow_pickle=False)
        self.add_bytes(path, buf.getvalue())

    def add_checkpoint(self, path: str | Path, model: QNetwork | Int8QNetwork, role: str, meta: dict) -> None:
        """Tensors to `path` (safetensors) and everything else to its JSON sidecar.

        An `Int8QNetwork` is stored as its int8 weights, scales, zero points and
        float biases/LayerNorm parameters (kind `int8`, with its mode and backend).
        """
        if isinstance(model, Int8QNetwork):
            tensors = {k: v.detach().contiguous().clone() for k, v in model.tensors().items()}
            kind = {"kind": "int8", "quantization": {"mode": model.mode, "backend": model.backend}}
        else:
            tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
            kind = {"kind": "float"}
        self.add_bytes(path, st_save(tensors, metadata={"format": CHECKPOINT_FORMAT}))
        sidecar = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            **kind,
            "role": role,
            "architecture": model.arch.to_dict(),
            **meta,
        }
        self.add_json(sidecar_path(path), sidecar)

    def commit(self) -> None:
        """Write every file, or none: all are staged beside their targets first, then swapped in.

        A file that cannot be staged (a read-only folder, a full disk) stops the commit
        before any target changes. The swaps are renames in one folder; should one fail
        anyway, the targets already swapped get their previous contents back.
        """
        staged: dict[Path, Path] = {}
        try:
            for path, data in self.files.items():
                if path.is_dir():
                    raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(path))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
                staged[path] = tmp
                with open(tmp, "wb") as fh:
                    fh.write(data)
        except OSError as exc:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            raise RecombError(f"{path}: cannot write ({exc.strerror}); no output was changed") from None
        backups: dict[Path, Path | None] = {}
        try:
            for path, tmp in staged.items():
                backup = path.with_name(f".{path.name}.previous{os.getpid()}")
                backups[path] = backup if path.exists() else None
                if backups[path] is not None:
                    os.replace(path, backup)
                os.replace(tmp, path)
        except OSError as exc:
            for done, backup in backups.items():
                if backup is not None and backup.exists():
                    os.replace(backup, done)
                elif backup is None:
                    done.unlink(missing_ok=True)
            raise RecombError(f"{path}: cannot replace ({exc.strerror}); the previous outputs are back") from None
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.exists():
        raise RecombError(f"{path}: {what} not found")
    if not path.is_file():
        raise RecombError(f"{path}: expected a file, found a directory")
    return path.read_bytes()


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    try:
        return json.loads(_read_bytes(path, what))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecombError(f"{path}: not valid JSON ({exc.__class__.__name__} at byte {getattr(exc, 'pos', '?')})") from None


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode; float or int8) and its sidecar."""

    path: Path
    model: QNetwork | MLPQNetwork | Int8QNetwork
    meta: dict

    @property
    def arch(self) -> Architecture | MLPArchitecture:
        return self.model.arch

    @property
    def kind(self) -> str:
        return "int8" if isinstance(self.model, Int8QNetwork) else "float"

    def float_model(self) -> QNetwork | MLPQNetwork:
        """The network as float weights: itself, or the int8 weights dequantized."""
        return self.model.dequantized() if isinstance(self.model, Int8QNetwork) else self.model

    def expect_dims(self, input_dim: int, output_dim: int, source: str) -> None:
        """Refuse a checkpoint whose dims differ from the params the stage runs with."""
        for name, want in (("input_dim", input_dim), ("output_dim", output_dim)):
            got = getattr(self.arch, name)
            if got != want:
                raise RecombError(f"{self.path}: {name} is {got} but {source} says {want}")


def _first_line(exc: BaseException) -> str:
    """What a reader's exception says, on one line (its type when it says nothing)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _safetensors(path: Path, raw: bytes) -> dict[str, torch.Tensor]:
    try:
        return st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise RecombError(f"{path}: truncated or not a safetensors file ({_first_line(exc)})") from None


def _check_tensors(path: Path, tensors: dict[str, torch.Tensor], spec: dict[str, tuple[tuple[int, ...], torch.dtype | None]],
                   what: str) -> None:
    """Every tensor of `spec` (key → shape, dtype; None = any floating point) present, as specified, finite."""
    missing = sorted(set(spec) - set(tensors))
    extra = sorted(set(tensors) - set(spec))
    if missing or extra:
        detail = f"missing {missing[0]}" if missing else f"unexpected tensor {extra[0]}"
        raise RecombError(f"{path}: not {what} of this architecture ({detail})")
    for key, (shape, dtype) in spec.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != shape:
            raise RecombError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, architecture needs {shape}")
        if dtype is None and not tensor.is_floating_point():
            raise RecombError(f"{path}: tensor {key} has dtype {tensor.dtype}, expected floating point")
        if dtype is not None and tensor.dtype != dtype:
            raise RecombError(f"{path}: tensor {key} has dtype {tensor.dtype}, expected {dtype}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RecombError(f"{path}: tensor {key} contains NaN or Inf")


def _float_spec(arch: Architecture) -> dict:
    return {key: (shape, None) for key, shape in arch.shapes().items()}


def _build(arch: Architecture | MLPArchitecture, tensors: dict[str, torch.Tensor]) -> QNetwork | MLPQNetwork:
    model = MLPQNetwork(arch) if isinstance(arch, MLPArchitecture) else QNetwork(arch)
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    return model.eval()


def _positive_ints(values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _mlp_architecture_from(path: Path, data: dict) -> MLPArchitecture:
    """A brought parent's sidecar architecture (family `mlp`)."""
    try:
        arch = MLPArchitecture(data["input_dim"], data["output_dim"], tuple(data["widths"]), data["layer_norm"],
                               data["activation"])
    except (KeyError, TypeError):
        raise RecombError(f"{sidecar_path(path)}: an 'mlp' architecture must hold input_dim, output_dim, widths, "
                          "layer_norm, activation") from None
    if not _positive_ints((arch.input_dim, arch.output_dim, *arch.widths)) or not isinstance(arch.layer_norm, bool) \
            or arch.activation not in ACTIVATIONS:
        raise RecombError(f"{sidecar_path(path)}: architecture dims must be positive integers, layer_norm a boolean "
                          f"and activation one of {', '.join(ACTIVATIONS)}")
    return arch


def _architecture_from(path: Path, data: Any) -> Architecture | MLPArchitecture:
    if isinstance(data, dict) and data.get("family") == "mlp":
        return _mlp_architecture_from(path, data)
    try:
        arch = Architecture(**{k: data[k] for k in ("input_dim", "output_dim", "hidden", "dropout")},
                            layer_norm=data.get("layer_norm", True))
    except (KeyError, TypeError, AttributeError):
        raise RecombError(f"{sidecar_path(path)}: 'architecture' must hold input_dim, output_dim, hidden, dropout") from None
    if not isinstance(arch.layer_norm, bool):
        raise RecombError(f"{sidecar_path(path)}: architecture.layer_norm must be true or false "
                          f"(got {arch.layer_norm!r})")
    if not _positive_ints((arch.input_dim, arch.output_dim, arch.hidden)):
        raise RecombError(f"{sidecar_path(path)}: architecture dims must be positive integers")
    dropout = arch.dropout
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise RecombError(f"{sidecar_path(path)}: architecture.dropout must be a number in [0, 1) (got {dropout!r})")
    return arch


def _check_int8_tensors(path: Path, tensors: dict[str, torch.Tensor], arch: Architecture, mode: str) -> None:
    _check_tensors(path, tensors, int8_tensor_spec(arch, mode), f"an int8 {mode} Q-network checkpoint")
    for key, tensor in tensors.items():
        if key.endswith("scale") and not (tensor > 0).all():
            raise RecombError(f"{path}: tensor {key} has a non-positive quantization scale")
        if key.endswith("zero_point") and not ((tensor >= -128) & (tensor <= 127)).all():
            raise RecombError(f"{path}: tensor {key} holds a zero point outside the int8 range")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by `Outputs.add_checkpoint` (float or int8), refusing anything else."""
    path = Path(path)
    raw = _read_bytes(path, "checkpoint")
    if raw.startswith(PICKLE_MAGIC):
        raise RecombError(f"{path}: is a pickle/torch.save file, not safetensors; refusing to unpickle it")
    meta = read_json(sidecar_path(path), "checkpoint sidecar")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise RecombError(f"{sidecar_path(path)}: not a recomb checkpoint sidecar (missing format '{CHECKPOINT_FORMAT}')")
    kind = meta.get("kind")
    if kind not in ("float", "int8"):
        raise RecombError(f"{sidecar_path(path)}: checkpoint kind is {kind!r}, expected 'float' or 'int8'")
    tensors = _safetensors(path, raw)
    arch = _architecture_from(path, meta.get("architecture"))
    if kind == "float":
        _check_tensors(path, tensors, _float_spec(arch), "a Q-network checkpoint")
        return Checkpoint(path, _build(arch, tensors), meta)
    quant = meta.get("quantization")
    mode = quant.get("mode") if isinstance(quant, dict) else None
    backend = quant.get("backend") if isinstance(quant, dict) else None
    if mode not in ("dynamic", "static") or backend not in ("int8", "reference"):
        raise RecombError(f"{sidecar_path(path)}: 'quantization' must hold mode (dynamic|static) and backend (int8|reference)")
    if isinstance(arch, MLPArchitecture):
        raise RecombError(f"{sidecar_path(path)}: an int8 checkpoint of a brought MLP; recomb quantizes its own family")
    _check_int8_tensors(path, tensors, arch, mode)
    return Checkpoint(path, Int8QNetwork(arch, mode, tensors, backend).eval(), meta)


def stored_bytes(path: str | Path) -> dict[str, int]:
    """Bytes on disk of a checkpoint's tensor file and of its sidecar."""
    path = Path(path)
    return {"tensors_file": path.stat().st_size, "sidecar": sidecar_path(path).stat().st_size}


def _torch_state(path: Path, raw: bytes) -> dict:
    """A torch.save file read with `weights_only=True`: plain tensors and containers only, so a file
    carrying code is refused instead of executed."""
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise RecombError(f"{path}: refused: holds objects other than tensors (unsafe pickle)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:  # OSError: a zip cut short
        raise RecombError(f"{path}: truncated or not a torch state dict ({_first_line(exc)})") from None


# SB3's `policy_kwargs.activation_fn`, as its JSON names the class, → recomb's activation name.
SB3_ACTIVATIONS = {f"<class 'torch.nn.modules.activation.{cls}'>": name for cls, name in (
    ("ReLU", "relu"), ("Tanh", "tanh"), ("ELU", "elu"), ("LeakyReLU", "leaky_relu"), ("GELU", "gelu"),
    ("SiLU", "silu"), ("Sigmoid", "sigmoid"))}


def _sb3_dqn(path: Path, archive: zipfile.ZipFile) -> tuple[dict, str]:
    """The Q-network of an SB3 `model.save()` zip and its activation, read from `policy.pth` (weights only)
    and the `data` JSON; the serialized objects in either are never deserialized."""
    try:
        data = json.loads(archive.read("data"))
        policy = archive.read("policy.pth")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise RecombError(f"{path}: a damaged SB3 zip ({_first_line(exc)})") from None
    policy_class = data.get("policy_class") if isinstance(data, dict) else None
    module = policy_class.get("__module__", "?") if isinstance(policy_class, dict) else "?"
    state = _torch_state(path, policy)
    q_net = {k.removeprefix("q_net."): v for k, v in state.items() if k.startswith("q_net.")} \
        if isinstance(state, dict) else {}
    if not q_net:
        raise RecombError(f"{path}: an SB3 model of another algorithm (policy from {module}, no q_net tensors); "
                          "recomb reads DQN Q-networks")
    kwargs = data.get("policy_kwargs")
    named = kwargs.get("activation_fn") if isinstance(kwargs, dict) else None
    if named is not None and named not in SB3_ACTIVATIONS:
        raise RecombError(f"{path}: SB3 activation {named} is not one recomb evaluates "
                          f"({', '.join(SB3_ACTIVATIONS.values())})")
    return q_net, SB3_ACTIVATIONS.get(named, "relu")  # DQN's MlpPolicy default: ReLU


def _is_safetensors(raw: bytes) -> bool:
    return len(raw) > 8 and raw[8:9] == b"{" and int.from_bytes(raw[:8], "little") <= len(raw) - 8


def _brought_network(path: Path, state, source: str, dropout: float,
                     activation: str) -> tuple[QNetwork | MLPQNetwork, dict]:
    """The network a brought state dict holds: recomb's own family for AgentFarm's layout, else a plain MLP."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = ", ".join(f"{k!r}" for k in list(state)[:4]) if isinstance(state, dict) else type(state).__name__
        raise RecombError(f"{path}: expected a state dict of tensors (a Q-network's state_dict()), found {found}")
    try:
        arch, params = read_mlp(state, activation)
    except LayoutError as exc:
        raise RecombError(f"{path}: not a plain MLP Q-network: {exc}") from None
    _check_tensors(path, state, {key: (tuple(t.shape), None) for key, t in state.items()}, "a Q-network")
    if is_recomb_layout(state, arch):
        return _build(recomb_architecture(arch, dropout), dict(state)), {"imported_from": "agentfarm"}
    model = MLPQNetwork(arch)
    model.load_state_dict({key: tensor.to(torch.float32) for key, tensor in zip(model.state_dict(), params)})
    return model.eval(), {"imported_from": source}


def load_parent(path: str | Path, dropout: float, activation: str) -> Checkpoint:
    """A user-given parent, its reader chosen by content, never by name: recomb's checkpoint (safetensors +
    sidecar), a bare safetensors state dict, SB3's `model.save()` zip, or any torch.save state dict (CleanRL's
    `.cleanrl_model`, AgentFarm's `.pt`, a `.pth`) read with `weights_only=True`.

    `dropout` is the one AgentFarm's BaseQNetwork was built with (its file holds weights only);
    `activation` is that of a plain MLP whose file does not say it (an SB3 zip says its own).
    """
    path = Path(path)
    raw = _read_bytes(path, "parent checkpoint")
    if raw.startswith(b"PK\x03\x04"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(raw))
            names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise RecombError(f"{path}: a truncated or damaged zip ({_first_line(exc)})") from None
        if {"data", "policy.pth"} <= set(names):
            state, activation = _sb3_dqn(path, archive)
            source = "sb3"
        elif any(PurePosixPath(name).name == "data.pkl" for name in names):
            state, source = _torch_state(path, raw), "torch"
        else:
            raise RecombError(f"{path}: a zip that is neither an SB3 model.save() nor a torch.save file "
                              f"(holds {', '.join(names[:4]) or 'nothing'})")
    elif raw.startswith(b"\x80"):  # torch.save before torch 1.6: a bare pickle
        state, source = _torch_state(path, raw), "torch"
    elif _is_safetensors(raw):
        if sidecar_path(path).exists():
            return load_checkpoint(path)
        state, source = _safetensors(path, raw), "safetensors"
    else:
        raise RecombError(f"{path}: {'empty file' if not raw else 'not a network file recomb reads'} (expected an "
                          "SB3 zip, a torch.save state dict, or safetensors)")
    model, meta = _brought_network(path, state, source, dropout, activation)
    return Checkpoint(path, model, {"role": "parent", **meta})


def check_states(states: np.ndarray, path: Path, input_dim: int) -> None:
    if states.ndim != 2 or states.shape[1] != input_dim or states.shape[0] == 0:
        raise RecombError(f"{path}: states must have shape (N, {input_dim}) with N > 0, got {states.shape}")
    if states.dtype != np.float32:
        raise RecombError(f"{path}: states must be float32, got {states.dtype}")
    bad = ~np.isfinite(states).all(axis=1)
    if bad.any():
        raise RecombError(f"{path}: {int(bad.sum())} of {len(states)} states contain NaN or Inf (first at row {int(np.argmax(bad))})")


def _check_npy_size(raw: bytes, path: Path) -> None:
    """Compare the size the .npy header promises with the bytes there, before numpy allocates that size."""
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buf)
    except (ValueError, OSError, EOFError):
        raise RecombError(f"{path}: truncated or not a .npy file") from None
    if dtype.hasobject:
        return  # refused by np.load as a pickle, with its own message
    promised = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    present = len(raw) - buf.tell()
    if promised != present:
        raise RecombError(f"{path}: truncated or corrupt: its header promises shape {shape} ({promised} bytes of "
                          f"{dtype}) but {present} bytes follow")


def _load_npy(path: Path, what: str) -> np.ndarray:
    """One `.npy` array; pickles, archives and truncated files are refused in one line naming the file."""
    raw = _read_bytes(path, what)
    if not raw.startswith(NPY_MAGIC):
        reason = "holds Python objects (pickle); refusing to load" if raw.startswith(PICKLE_MAGIC) else "not a .npy file"
        raise RecombError(f"{path}: {reason}")
    _check_npy_size(raw, path)
    try:
        states = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        reason = "holds Python objects (pickle); refusing to load" if "pickle" in str(exc) else "truncated or not a .npy file"
        raise RecombError(f"{path}: {reason}") from None
    except (OSError, EOFError):
        raise RecombError(f"{path}: truncated or not a .npy file") from None
    if not isinstance(states, np.ndarray):
        raise RecombError(f"{path}: expected a single .npy array, got an archive")
    return states


def load_states(path: str | Path, input_dim: int) -> np.ndarray:
    """A float32 (N, input_dim) array of finite states; object arrays (pickles) are refused."""
    states = _load_npy(Path(path), "states file")
    check_states(states, Path(path), input_dim)
    return states


def load_labels(path: str | Path, n_states: int, n_labels: int) -> np.ndarray:
    """The int64 label of each of `n_states` states, each in [0, n_labels) (`Outputs.add_labels`)."""
    labels = _load_npy(Path(path), "labels file")
    if labels.dtype != np.int64 or labels.shape != (n_states,):
        raise RecombError(f"{path}: expected {n_states} int64 labels, one per state, got {labels.dtype} "
                          f"{labels.shape}")
    if n_states and not (0 <= labels.min() and labels.max() < n_labels):
        raise RecombError(f"{path}: labels must lie in [0, {n_labels}) (got {labels.min()}..{labels.max()})")
    return labels

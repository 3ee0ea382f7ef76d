"""The child back out, in the formats its users load: a torch state dict in AgentFarm's layout with a small
architecture JSON, and ONNX (what game engines and robot stacks run).

Pure: networks in, bytes and dicts out; `recomb export` writes them through `artifacts.Outputs`.
The ONNX graph takes `states` (batch, input_dim) float32 and returns `q_values` (batch, actions);
an int8 child is exported as its integer arithmetic carried out in float32 (the `reference`
kernels, exact for static mode and equal up to rounding for dynamic mode), since ONNX runtimes
differ in which integer kernels they offer.
"""

from __future__ import annotations

import io
import warnings

import torch

from .errors import RecombError
from .networks import QNetwork
from .quantization.int8 import Int8QNetwork

ONNX_INPUT, ONNX_OUTPUT = "states", "q_values"
ONNX_OPSET = 17


def state_dict_bytes(model: QNetwork) -> bytes:
    """A float network's `state_dict()` as `torch.save` bytes: AgentFarm's BaseQNetwork loads it unchanged
    (`network.{0,1,4,5,8}`), and `torch.load(..., weights_only=True)` reads it anywhere."""
    buffer = io.BytesIO()
    torch.save({key: value.detach().clone() for key, value in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def architecture_card(model: QNetwork | Int8QNetwork, meta: dict) -> dict:
    """What rebuilding the network needs, beside its weights: the layout and where the weights came from."""
    return {
        "layout": "Linear→LayerNorm→ReLU→Dropout ×2 → Linear (AgentFarm BaseQNetwork; state-dict keys "
                  "network.{0,1,4,5,8}.{weight,bias})",
        "architecture": model.arch.to_dict(),
        "onnx": {"input": ONNX_INPUT, "output": ONNX_OUTPUT, "opset": ONNX_OPSET},
        "made_by": {key: meta[key] for key in ("role", "params") if key in meta},
    }


def onnx_bytes(model: QNetwork | Int8QNetwork) -> bytes:
    """The network as an ONNX model with a dynamic batch dimension."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it; an optional extra)
    except ImportError:
        raise RecombError("ONNX export needs the onnx package: pip install -e '.[interop]'") from None
    if isinstance(model, Int8QNetwork):
        model = Int8QNetwork(model.arch, model.mode, model.tensors(), "reference").eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's concern
        torch.onnx.export(model.eval(), (torch.zeros(1, model.arch.input_dim),), buffer, dynamo=False,
                          input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT], opset_version=ONNX_OPSET,
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
    return buffer.getvalue()

"""The child back out, in the formats its users load: a torch state dict (AgentFarm's layout, for the LayerNorm
family) with a small architecture JSON, ONNX (what game engines and robot stacks run), and, for the plain family, a Stable-Baselines3
DQN zip.

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
    """A float network's `state_dict()` as `torch.save` bytes, which `torch.load(..., weights_only=True)` reads
    anywhere; in the LayerNorm family AgentFarm's BaseQNetwork loads it unchanged (`network.{0,1,4,5,8}`)."""
    buffer = io.BytesIO()
    torch.save({key: value.detach().clone() for key, value in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def architecture_card(model: QNetwork | Int8QNetwork, meta: dict) -> dict:
    """What rebuilding the network needs, beside its weights: the layout and where the weights came from."""
    return {
        "layout": "Linear→LayerNorm→ReLU→Dropout ×2 → Linear (AgentFarm BaseQNetwork; state-dict keys "
                  "network.{0,1,4,5,8}.{weight,bias})" if model.arch.layer_norm else
                  "Linear→ReLU→Dropout ×2 → Linear (state-dict keys network.{0,4,8}.{weight,bias}; SB3's and "
                  "CleanRL's MLP)",
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


# recomb's plain-family Linear layers → SB3's `q_net` Sequential (Linear, ReLU, Linear, ReLU, Linear).
SB3_LAYERS = {"network.0": "0", "network.4": "2", "network.8": "4"}


def _spaces_only_env(input_dim: int, actions: int):
    """A Gymnasium environment that only declares the spaces: what SB3 needs to build a DQN it will not train."""
    import gymnasium
    import numpy as np

    class SpacesOnly(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (input_dim,), np.float32)
        action_space = gymnasium.spaces.Discrete(actions)

    return SpacesOnly()


def sb3_zip_bytes(model: QNetwork, env_id: str | None) -> bytes:
    """A plain-family float network as the zip that `stable_baselines3.DQN.load` opens: SB3 builds its own DQN
    (net_arch [hidden, hidden], ReLU) on the task's spaces, takes the weights (online and target network) and
    saves itself, so the file is exactly SB3's."""
    if not isinstance(model, QNetwork) or model.arch.layer_norm:
        raise RecombError("an SB3 zip needs a float child of the plain family (distill.student_family: plain): "
                          "SB3's QNetwork has no LayerNorm")
    try:
        from stable_baselines3 import DQN
    except ImportError:
        raise RecombError("the SB3 export needs stable-baselines3: pip install -e '.[interop]'") from None
    import gymnasium
    arch = model.arch
    env = gymnasium.make(env_id) if env_id else _spaces_only_env(arch.input_dim, arch.output_dim)
    agent = DQN("MlpPolicy", env, policy_kwargs={"net_arch": [arch.hidden, arch.hidden]}, device="cpu", seed=0)
    state = model.state_dict()
    weights = {f"{SB3_LAYERS[layer]}.{name}": state[f"{layer}.{name}"].detach().clone()
               for layer in SB3_LAYERS for name in ("weight", "bias")}
    agent.q_net.q_net.load_state_dict(weights)
    agent.q_net_target.q_net.load_state_dict(weights)
    buffer = io.BytesIO()
    agent.save(buffer)
    return buffer.getvalue()

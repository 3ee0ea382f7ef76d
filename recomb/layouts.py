"""What Q-network a foreign state dict holds: its layers read off the tensors, in the order they were saved.

Researchers bring parents from Stable-Baselines3 (`q_net.q_net.0.weight`, …), CleanRL
(`network.0.weight`, …), AgentFarm (`network.{0,1,4,5,8}`) or their own modules
(`fc1.weight`, …). Whatever the names, a plain MLP is a chain: a 2-D weight with its bias
is a Linear layer, a 1-D weight and bias of the preceding layer's width is a LayerNorm,
and parameter-free modules between them (activations, dropout) leave no tensor at all.
So the architecture is read from the shapes; only the activation cannot be, and is given.
Anything else (convolutions, batch norm, layers that do not chain) is refused in one line.
"""

from __future__ import annotations

import torch

from .networks import ACTIVATIONS, PARAM_KEYS, Architecture, MLPArchitecture

# Names under which a network keeps a lagging copy of itself (SB3's `q_net_target`, CleanRL's `target_network`).
TARGET_MARKERS = ("target",)


class LayoutError(ValueError):
    """The tensors are not a plain MLP Q-network; the message says what was found."""


def _modules(state: dict[str, torch.Tensor]) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(module name, {parameter name: tensor}) in saved order."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        module, _, name = key.rpartition(".")
        modules.setdefault(module, {})[name] = tensor
    return list(modules.items())


def _without_target_copies(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The online network: tensors under a top-level name marked as a target copy are dropped, if others remain."""
    online = {k: v for k, v in state.items() if not any(m in k.split(".")[0] for m in TARGET_MARKERS)}
    return online or state


def read_mlp(state: dict[str, torch.Tensor], activation: str) -> tuple[MLPArchitecture, list[torch.Tensor]]:
    """The architecture of the MLP Q-network in `state`, and its parameters in `MLPQNetwork` order."""
    if activation not in ACTIVATIONS:
        raise LayoutError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    layers: list[tuple[int, int]] = []  # (inputs, outputs) of each Linear layer
    norms: list[bool] = []  # whether each Linear layer is followed by a LayerNorm
    params: list[torch.Tensor] = []
    for module, tensors in _modules(_without_target_copies(state)):
        where = module or "(top level)"
        if "running_mean" in tensors or "num_batches_tracked" in tensors:
            raise LayoutError(f"layer {where} is a batch norm; recomb reads MLPs of Linear and LayerNorm layers")
        weight, bias = tensors.get("weight"), tensors.get("bias")
        if weight is None or set(tensors) - {"weight", "bias"}:
            raise LayoutError(f"layer {where} holds {', '.join(sorted(tensors))}; recomb reads Linear and "
                              "LayerNorm layers (weight and bias)")
        if weight.dim() > 2:
            raise LayoutError(f"layer {where} has a {weight.dim()}-D weight {tuple(weight.shape)}: a convolution; "
                              "recomb reads MLPs of Linear layers only")
        if bias is None or bias.dim() != 1 or bias.shape[0] != weight.shape[0]:
            raise LayoutError(f"layer {where}: weight {tuple(weight.shape)} without a bias of {weight.shape[0]} "
                              "values; recomb reads Linear layers with biases")
        if weight.dim() == 2:
            if layers and weight.shape[1] != layers[-1][1]:
                raise LayoutError(f"layer {where} takes {weight.shape[1]} inputs but the layer before it gives "
                                  f"{layers[-1][1]}: the layers do not chain")
            layers.append((int(weight.shape[1]), int(weight.shape[0])))
            norms.append(False)
        else:
            if not layers or norms[-1] or weight.shape[0] != layers[-1][1]:
                raise LayoutError(f"layer {where}: a {weight.shape[0]}-wide norm that does not follow a Linear "
                                  "layer of its width")
            norms[-1] = True
        params += [weight, bias]
    if not layers:
        raise LayoutError("holds no Linear layer (no 2-D weight with a bias)")
    if norms[-1]:
        raise LayoutError("ends with a LayerNorm; a Q-network ends with its Linear output layer")
    if len(set(norms[:-1])) > 1:
        raise LayoutError("normalises some hidden layers and not others; recomb reads all or none")
    widths = tuple(out for _, out in layers[:-1])
    return MLPArchitecture(layers[0][0], layers[-1][1], widths, norms[0] and len(layers) > 1, activation), params


def is_recomb_layout(state: dict[str, torch.Tensor], arch: MLPArchitecture) -> bool:
    """Whether the tensors are AgentFarm's `BaseQNetwork` (and recomb's) layout: `network.{0,1,4,5,8}`,
    two equal LayerNorm'd ReLU layers — read as recomb's own family, so it can also be crossed and quantized."""
    return (list(state) == list(PARAM_KEYS) and arch.layer_norm and arch.activation == "relu"
            and len(arch.widths) == 2 and arch.widths[0] == arch.widths[1])


def recomb_architecture(arch: MLPArchitecture, dropout: float) -> Architecture:
    return Architecture(arch.input_dim, arch.output_dim, arch.widths[0], dropout)

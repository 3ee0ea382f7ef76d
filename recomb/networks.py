"""Q-networks: the parent/student architecture, a stacked population of it, and any plain MLP parent.

`QNetwork` keeps AgentFarm's `BaseQNetwork` layout (state-dict keys
`network.{0,1,4,5,8}.{weight,bias}`), so AgentFarm parents load unchanged.
`QNetworkStack` holds P networks of one shape as stacked tensors and runs them
in one batched forward: training P small networks together costs about as much
Python overhead as training one, which is what makes distilling both pairs (and,
later, searching many children) fast on two cores.
`MLPQNetwork` is a parent brought from elsewhere (Stable-Baselines3, CleanRL, any
MLP): Linear layers of any widths, optionally LayerNorm'd; recomb only evaluates it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import portable

LINEAR_INDICES = (0, 4, 8)
NORM_INDICES = (1, 5)
PARAM_KEYS = tuple(
    f"network.{i}.{name}" for i in (0, 1, 4, 5, 8) for name in ("weight", "bias")
)


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a QNetwork; stored in every checkpoint sidecar.

    `layer_norm: False` is the plain family (SB3's and CleanRL's MLPs): the same network with
    its LayerNorms left out, so a child of it goes back into those libraries.
    """

    input_dim: int
    output_dim: int
    hidden: int
    dropout: float
    layer_norm: bool = True

    @property
    def norm_indices(self) -> tuple[int, ...]:
        return NORM_INDICES if self.layer_norm else ()

    def param_keys(self) -> tuple[str, ...]:
        """The state-dict keys of this family, in `PARAM_KEYS` order."""
        return PARAM_KEYS if self.layer_norm else tuple(k for k in PARAM_KEYS if int(k.split(".")[1]) in LINEAR_INDICES)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected parameter shapes by state-dict key."""
        i, h, o = self.input_dim, self.hidden, self.output_dim
        shapes = {
            "network.0.weight": (h, i), "network.0.bias": (h,),
            "network.1.weight": (h,), "network.1.bias": (h,),
            "network.4.weight": (h, h), "network.4.bias": (h,),
            "network.5.weight": (h,), "network.5.bias": (h,),
            "network.8.weight": (o, h), "network.8.bias": (o,),
        }
        return {key: shapes[key] for key in self.param_keys()}

    def to_dict(self) -> dict:
        """The sidecar's architecture; the LayerNorm family's has no `layer_norm` key (checkpoints from before
        the plain family read the same)."""
        data = asdict(self)
        return data if not self.layer_norm else {k: v for k, v in data.items() if k != "layer_norm"}


# The activations a brought MLP may use, by the name `parents.files.activation` gives them.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


@dataclass(frozen=True)
class MLPArchitecture:
    """Any plain MLP Q-network: Linear layers of `widths` (hidden) then `output_dim`, one activation after
    each hidden layer, optionally a LayerNorm before it. Dropout is not recorded: it is the identity when the
    network is evaluated, which is all recomb does with a brought parent."""

    input_dim: int
    output_dim: int
    widths: tuple[int, ...]
    layer_norm: bool
    activation: str

    @property
    def width(self) -> int:
        """The widest hidden layer (the input width when there is none): what a student's width is halved from."""
        return max(self.widths, default=self.input_dim)

    def layers(self) -> list[nn.Module]:
        dims = (self.input_dim, *self.widths)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(dims, dims[1:]):
            layers += [nn.Linear(fan_in, fan_out), *([nn.LayerNorm(fan_out)] if self.layer_norm else []),
                       ACTIVATIONS[self.activation]()]
        return [*layers, nn.Linear(dims[-1], self.output_dim)]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected parameter shapes by state-dict key (`layers.<index>.weight|bias`)."""
        return {f"layers.{i}.{name}": tuple(param.shape)
                for i, layer in enumerate(self.layers()) for name, param in layer.named_parameters()}

    def to_dict(self) -> dict:
        return {"family": "mlp", **asdict(self), "widths": list(self.widths)}


class MLPQNetwork(nn.Module):
    """A brought parent of any `MLPArchitecture`; its weights come from the user's file."""

    def __init__(self, arch: MLPArchitecture):
        super().__init__()
        self.arch = arch
        self.layers = nn.Sequential(*arch.layers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def width(arch: Architecture | MLPArchitecture) -> int:
    """A network's hidden width: recomb's one width, or a brought MLP's widest layer."""
    return arch.width if isinstance(arch, MLPArchitecture) else arch.hidden


def student_hidden(parent_hidden: int, requested: int) -> int:
    """The student's width: `requested` if not 0, else half the parent's, at least 16."""
    return requested if requested else max(16, parent_hidden // 2)


class QNetwork(nn.Module):
    """Linear→LayerNorm→ReLU→Dropout ×2 → Linear (the plain family: no LayerNorm), Xavier-uniform weights,
    zero biases. A LayerNorm draws no random numbers, so both families start from the same Linear weights."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        i, h, o, p = arch.input_dim, arch.hidden, arch.output_dim, arch.dropout
        norm = (lambda: nn.LayerNorm(h)) if arch.layer_norm else nn.Identity
        self.network = nn.Sequential(
            nn.Linear(i, h), norm(), nn.ReLU(), nn.Dropout(p),
            nn.Linear(h, h), norm(), nn.ReLU(), nn.Dropout(p),
            nn.Linear(h, o),
        )
        for idx in LINEAR_INDICES:
            nn.init.xavier_uniform_(self.network[idx].weight)
            nn.init.zeros_(self.network[idx].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def seeded_qnetwork(arch: Architecture, seed: int) -> QNetwork:
    """A freshly initialised network whose weights depend only on `seed`."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return QNetwork(arch)
    finally:
        torch.random.set_rng_state(gen_state)


class QNetworkStack(nn.Module):
    """P QNetworks of one architecture, evaluated together.

    Parameters carry a leading population dimension; `forward` takes states of
    shape (B, in) (shared by all members) or (P, B, in) and returns (P, B, out).
    Member p computes exactly what `QNetwork` with `member_state_dict(p)` computes.
    """

    def __init__(self, arch: Architecture, state_dicts: list[dict[str, torch.Tensor]]):
        super().__init__()
        if not state_dicts:
            raise ValueError("QNetworkStack needs at least one member")
        self.arch = arch
        self.size = len(state_dicts)
        self.weight_transform = None  # e.g. QAT's fake quantization of the Linear weights
        self.params = nn.ParameterDict({
            key.replace(".", "_"): nn.Parameter(
                torch.stack([sd[key].detach().to(torch.float32) for sd in state_dicts]).clone()
            )
            for key in arch.param_keys()
        })

    def _p(self, idx: int, name: str) -> torch.Tensor:
        param = self.params[f"network_{idx}_{name}"]
        if self.weight_transform is not None and idx in LINEAR_INDICES and name == "weight":
            return self.weight_transform(param)
        return param

    def forward(self, x: torch.Tensor, dropout_masks: torch.Tensor | None = None) -> torch.Tensor:
        """`dropout_masks` (P, 2, B, hidden), already scaled by 1/(1−p), replaces
        torch's global-RNG dropout in training so each member's noise is its own."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.size, -1, -1)
        for layer, (lin, norm) in enumerate(zip(LINEAR_INDICES[:2], NORM_INDICES)):
            x = torch.baddbmm(self._p(lin, "bias").unsqueeze(1), x, self._p(lin, "weight").transpose(1, 2))
            if self.arch.layer_norm:
                x = F.layer_norm(x, (self.arch.hidden,))
                x = torch.relu(x * self._p(norm, "weight").unsqueeze(1) + self._p(norm, "bias").unsqueeze(1))
            else:
                x = torch.relu(x)
            if dropout_masks is not None:
                x = x * dropout_masks[:, layer]
            else:
                x = F.dropout(x, self.arch.dropout, self.training)
        last = LINEAR_INDICES[2]
        return torch.baddbmm(self._p(last, "bias").unsqueeze(1), x, self._p(last, "weight").transpose(1, 2))

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {key: self.params[key.replace(".", "_")][member].detach().clone() for key in self.arch.param_keys()}

    def member(self, member: int) -> QNetwork:
        net = QNetwork(self.arch)
        net.load_state_dict(self.member_state_dict(member))
        return net.eval()

    def per_member_grad_norm_clip_(self, max_norm: float) -> None:
        """Clip each member's gradient to `max_norm` on its own, as if trained alone."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if not grads or max_norm <= 0:
            return
        # (P, tensors) summed along each row: a member's norm is then the same bits at any P.
        sq = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads], dim=1).sum(1)
        scale = (max_norm / (portable.sqrt(sq) + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))

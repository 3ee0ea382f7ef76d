"""DQN parents: config validation, determinism, target-network sync, the quality bar, one real solve."""

import numpy as np
import pytest
import torch

from recomb.training import envs
from recomb.training.dqn import DQNConfig, _Replay, _train_round, train_dqn
from recomb.training.tasks import task
from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.optim import Adam

torch.set_num_threads(1)

WHERE = "params.yaml: parents.presets.CartPole-v1"
CARTPOLE = task("CartPole-v1")
ARCH = Architecture(input_dim=4, output_dim=2, hidden=64, dropout=0.1)
GOOD = {
    "total_steps": 50_000, "num_envs": 8, "learning_rate": 2.3e-3, "batch_size": 128,
    "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99, "train_freq": 128,
    "gradient_steps": 32, "target_update_interval": 10, "max_grad_norm": 10.0,
    "train_dropout": False, "exploration_fraction": 0.16, "exploration_initial_eps": 1.0,
    "exploration_final_eps": 0.04, "eval_interval": 1024, "eval_episodes": 100,
    "eval_seed": 10_000, "pass_return": 475.0, "stop_return": 500.0,
}


def config(**changes) -> DQNConfig:
    return DQNConfig.from_mapping({**GOOD, **changes}, WHERE)


@pytest.mark.parametrize("key, value", [
    ("total_steps", 0), ("num_envs", 0), ("learning_rate", 0.0), ("batch_size", 200_000),
    ("learning_starts", -1), ("gamma", 1.5), ("gradient_steps", 0), ("max_grad_norm", -1.0),
    ("exploration_fraction", 0.0), ("exploration_final_eps", 1.2), ("eval_episodes", 0),
    ("stop_return", 400.0), ("train_dropout", 1), ("train_freq", 1.5),
])
def test_config_rejects_bad_values(key, value):
    with pytest.raises(RecombError) as err:
        config(**{key: value})
    message = str(err.value)
    assert message.startswith(f"{WHERE}.{key}: ") and "\n" not in message


def test_config_requires_every_key():
    data = dict(GOOD)
    del data["gamma"]
    with pytest.raises(RecombError, match=r"parents\.presets\.CartPole-v1\.gamma: missing key"):
        DQNConfig.from_mapping(data, WHERE)


def test_tiny_run_is_deterministic():
    tiny = config(total_steps=1200, learning_starts=256, buffer_size=1000, gradient_steps=8,
                  eval_interval=600, eval_episodes=5, pass_return=1.0, train_dropout=True)
    first, second = train_dqn(tiny, CARTPOLE, ARCH, seed=4), train_dqn(tiny, CARTPOLE, ARCH, seed=4)
    assert first.env_steps == second.env_steps == 1200
    assert first.history == second.history and len(first.history) == 2
    assert not first.network.training
    for key, value in first.network.state_dict().items():
        assert torch.equal(value, second.network.state_dict()[key]), key
    other = train_dqn(tiny, CARTPOLE, ARCH, seed=5).network.state_dict()
    assert any(not torch.equal(v, other[k]) for k, v in first.network.state_dict().items())


def test_too_small_budget_names_seed_and_bar():
    with pytest.raises(RecombError) as err:
        train_dqn(config(total_steps=800, learning_starts=400, eval_episodes=10), CARTPOLE, ARCH, seed=3)
    message = str(err.value)
    assert "parent seed 3" in message and "pass_return 475.0" in message and "\n" not in message


def test_solves_cartpole():
    rows = []
    result = train_dqn(config(), CARTPOLE, ARCH, seed=4, on_eval=rows.append)  # 489 at 10k steps, never 500: all 50k steps
    assert result.best_return >= 475.0
    assert rows == result.history and rows[-1]["step"] == result.env_steps
    assert result.best_step == max(rows, key=lambda r: r["mean_return"])["step"]


@pytest.mark.parametrize("gradient_steps, interval, rounds", [(7, 3, 3), (1, 3, 7), (4, 4, 2), (2, 5, 5)])
def test_target_syncs_exactly_every_interval_gradient_steps(gradient_steps, interval, rounds):
    """Before each gradient step, the target equals the online net iff the steps done so far are a multiple of
    `target_update_interval`, and otherwise still holds the online weights of the last such step,
    across and within training rounds."""
    cfg = config(gradient_steps=gradient_steps, target_update_interval=interval, batch_size=16, buffer_size=64)
    rng = np.random.default_rng(0)
    replay = _Replay(cfg.buffer_size, envs.OBS_DIM)
    replay.add(rng.standard_normal((64, envs.OBS_DIM), dtype=np.float32), rng.integers(0, 2, 64),
               np.ones(64, dtype=np.float32), rng.standard_normal((64, envs.OBS_DIM), dtype=np.float32),
               rng.random(64) < 0.1)
    online, target = seeded_qnetwork(ARCH, 0).train(False), seeded_qnetwork(ARCH, 0).eval().requires_grad_(False)
    snapshots = [[p.detach().clone() for p in online.parameters()]]  # online weights after each step

    class Watched(Adam):
        def step(self, grads=None):
            done = len(snapshots) - 1
            last_sync = snapshots[done - done % interval]
            assert all(torch.equal(t, s) for t, s in zip(target.parameters(), last_sync)), done
            synced = all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))
            assert synced == (done % interval == 0), done
            super().step(grads)
            snapshots.append([p.detach().clone() for p in online.parameters()])

    opt, done = Watched(online.parameters(), lr=cfg.learning_rate), 0
    for _ in range(rounds):
        done = _train_round(cfg, online, target, opt, replay, rng, done)
    assert done == len(snapshots) - 1 == gradient_steps * rounds
    synced = all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))
    assert synced == (done % interval == 0)

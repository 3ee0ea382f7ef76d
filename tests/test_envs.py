"""CartPole helpers: agreement with gymnasium, determinism, and the state buffer."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from recomb import envs

torch.set_num_threads(1)

# A hand-made linear policy that balances the pole for the full 500 steps.
_BALANCE = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 10.0], [0.0, 1.0]])


def balance(x):
    return x @ _BALANCE


def always_left(x):
    return torch.tensor([1.0, 0.0]).expand(x.shape[0], 2)


def wobbly(x):
    """Pushes by pole angle only: balances for a few dozen steps, episodes of many lengths."""
    return x @ torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("policy", [balance, always_left, wobbly])
def test_greedy_returns_match_gymnasium(policy):
    ours = envs.greedy_returns(policy, 5, seed=123)
    env = gym.make("CartPole-v1")
    for i in range(5):
        obs, _ = env.reset(seed=123 + i)
        total, done = 0.0, False
        while not done:
            action = int(policy(torch.from_numpy(obs[None])).argmax(1))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        assert ours[i] == total


def test_greedy_returns_deterministic_and_bounded():
    a = envs.greedy_returns(wobbly, 50, seed=7)
    b = envs.greedy_returns(wobbly, 50, seed=7)
    assert a.dtype == np.float64 and a.shape == (50,)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 1 and a.max() <= 500
    assert len(np.unique(a)) > 10
    assert not np.array_equal(a, envs.greedy_returns(wobbly, 50, seed=8))


def test_greedy_returns_truncate_at_500_and_max_steps():
    assert np.all(envs.greedy_returns(balance, 20, seed=0) == 500)
    assert np.all(envs.greedy_returns(balance, 20, seed=0, max_steps=50) == 50)


def test_constant_action_fails_fast():
    returns = envs.greedy_returns(always_left, 100, seed=0)
    assert 8 <= returns.mean() <= 11


def test_collect_states_shape_and_determinism():
    a = envs.collect_states([balance, wobbly], 1001, epsilon=0.1, seed=3)
    b = envs.collect_states([balance, wobbly], 1001, epsilon=0.1, seed=3)
    assert a.shape == (1001, envs.OBS_DIM) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, envs.collect_states([balance, wobbly], 1001, epsilon=0.1, seed=4))


def test_collect_states_epsilon_one_is_random_play():
    states = envs.collect_states([balance], 4000, epsilon=1.0, seed=0)
    # Random play ends episodes within a few dozen steps, so every state stays near
    # upright, and the policy's choices play no part.
    np.testing.assert_array_equal(states, envs.collect_states([always_left], 4000, epsilon=1.0, seed=0))
    assert np.abs(states[:, 2]).max() <= 0.21
    assert np.abs(states[:, 0]).max() < 2.4

"""CartPole helpers: agreement with gymnasium, determinism, and the state buffer."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from recomb.training import envs, tasks

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


def test_greedy_returns_deterministic():
    a = envs.greedy_returns(wobbly, 50, seed=7)
    b = envs.greedy_returns(wobbly, 50, seed=7)
    assert a.dtype == np.float64 and a.shape == (50,)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) > 10
    assert not np.array_equal(a, envs.greedy_returns(wobbly, 50, seed=8))


def test_greedy_returns_truncate_at_500_and_max_steps():
    assert np.all(envs.greedy_returns(balance, 20, seed=0) == 500)
    assert np.all(envs.greedy_returns(balance, 20, seed=0, max_steps=50) == 50)


def test_constant_action_fails_fast():
    returns = envs.greedy_returns(always_left, 100, seed=0)
    assert 8 <= returns.mean() <= 11


def test_collect_states_shape_and_determinism():
    cartpole = tasks.task("CartPole-v1")
    a, origin = cartpole.collect_states([(balance, ()), (wobbly, ())], 1001, epsilon=0.1, seed=3)
    b, _ = cartpole.collect_states([(balance, ()), (wobbly, ())], 1001, epsilon=0.1, seed=3)
    assert a.shape == (1001, envs.OBS_DIM) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert sorted(np.bincount(origin)) == [500, 501]
    assert not np.array_equal(a, cartpole.collect_states([(balance, ()), (wobbly, ())], 1001, epsilon=0.1, seed=4)[0])


def test_collect_states_labels_each_state_with_its_rollout():
    """A rollout in a variant visits that variant's states: with a pole twice as long (it falls slower), random
    play reaches the angle limit later and its states are told apart by their labels."""
    cartpole = tasks.task("CartPole-v1")
    states, origin = cartpole.collect_states([(balance, ()), (balance, (("pole_length", 2.0),))], 4000,
                                             epsilon=1.0, seed=0)
    nominal, long_pole = (np.abs(states[origin == k, 3]).mean() for k in (0, 1))
    assert long_pole < 0.8 * nominal  # angular velocities are slower under the long pole


def test_collect_states_epsilon_one_is_random_play():
    states, _ = tasks.task("CartPole-v1").collect_states([(balance, ())], 4000, epsilon=1.0, seed=0)
    # The policy's choices play no part. (|θ| ≤ 0.2094 and |x| ≤ 2.4 would hold by construction: terminal states
    # are never recorded.) Random play ends episodes by the pole falling, within a few dozen steps: the pole gets
    # near its limit while the cart stays well inside its own.
    np.testing.assert_array_equal(states, tasks.task("CartPole-v1").collect_states([(always_left, ())], 4000,
                                                                                   epsilon=1.0, seed=0)[0])
    assert np.abs(states[:, 2]).max() > 0.19
    assert np.abs(states[:, 0]).max() < 1.0


def balance_np(obs: np.ndarray) -> np.ndarray:
    """`balance` on a numpy batch: push right when ẋ + 10·θ + θ̇ > 0."""
    return (obs[:, 1] + 10 * obs[:, 2] + obs[:, 3] > 0).astype(np.int64)


def test_batch_env_follows_gymnasium_through_an_autoreset_and_a_truncation():
    """One copy against gymnasium's CartPole-v1 on the same seed: an episode that terminates (always left), then
    one truncated at 500 steps (balance), then the start of a third. Same observations, flags and reset states."""
    env = envs.CartPoleBatch(1, seed=11)
    gym_env = gym.make("CartPole-v1")
    gym_obs, _ = gym_env.reset(seed=11)
    np.testing.assert_array_equal(env.observe()[0], gym_obs)
    for policy, how in ((lambda obs: np.zeros(1, np.int64), "terminated"), (balance_np, "truncated")):
        for t in range(1, 501):
            action = policy(env.observe())
            final_obs, rewards, terminated, truncated, next_obs = env.step(action)
            gym_obs, gym_reward, gym_terminated, gym_truncated, _ = gym_env.step(int(action[0]))
            assert rewards[0] == gym_reward == 1.0
            np.testing.assert_array_equal(final_obs[0], gym_obs)  # the transition's own next state, before reset
            assert (terminated[0], truncated[0]) == (gym_terminated, gym_truncated)
            if gym_terminated or gym_truncated:
                break
            np.testing.assert_array_equal(next_obs, final_obs)  # no reset while the episode runs
        assert (terminated[0], truncated[0]) == (how == "terminated", how == "truncated")
        assert t == 500 if how == "truncated" else 1 < t < 500
        # the same step already holds the reset: gymnasium's next reset (unseeded, same generator)
        gym_obs, _ = gym_env.reset()
        assert not np.array_equal(next_obs, final_obs)
        np.testing.assert_array_equal(next_obs[0], gym_obs)
        np.testing.assert_array_equal(env.observe()[0], gym_obs)


def test_batch_env_resets_only_the_copy_whose_episode_ended():
    """Two copies: copy 0 always pushes left (episodes of about ten steps), copy 1 balances (truncated at 500). Each
    reset takes the next four numbers of the one generator seeded by `seed`; the other copy runs on untouched."""
    stream = np.random.default_rng(5).uniform(-0.05, 0.05, size=(200, 4))  # rows 0, 1: the starts; then resets
    env = envs.CartPoleBatch(2, seed=5)
    np.testing.assert_array_equal(env.observe(), stream[:2].astype(np.float32))
    used, lengths, since = 2, [], 0
    for t in range(1, 501):
        actions = np.array([0, balance_np(env.observe()[1:])[0]])
        final_obs, rewards, terminated, truncated, next_obs = env.step(actions)
        since += 1
        if t < 500:
            assert not truncated.any() and not terminated[1]
            np.testing.assert_array_equal(next_obs[1], final_obs[1])  # copy 1 never reset by copy 0's ends
        if terminated[0]:
            np.testing.assert_array_equal(next_obs[0], stream[used].astype(np.float32))
            used, lengths, since = used + 1, lengths + [since], 0
        else:
            np.testing.assert_array_equal(next_obs[0], final_obs[0])
    # copy 1 is truncated on step 500 exactly, not terminated, and resets from the next row
    assert truncated[1] and not terminated[1]
    np.testing.assert_array_equal(next_obs[1], stream[used].astype(np.float32))
    # copy 0 ended ~50 episodes, each 8–11 steps (its step count restarts, so it is never truncated)
    assert len(lengths) > 40 and 8 <= min(lengths) and max(lengths) <= 11

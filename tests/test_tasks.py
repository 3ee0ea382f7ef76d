"""Tasks beyond CartPole (`parents.env`): spaces checked, episodes seeded `seed + i`, the pipeline end to end."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import run_recomb
from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.training import tasks
from scratch import Project
from stages import (common, crossover, distill, finetune, parents, ptq, qat, validate_distillation, validate_quantized,
                    validate_recombination)


@pytest.mark.parametrize("env_id, message", [
    ("NoSuchTask-v0", "x: no Gymnasium environment 'NoSuchTask-v0' (Environment `NoSuchTask` doesn't exist.)"),
    ("MountainCarContinuous-v0", "x: MountainCarContinuous-v0 has a continuous or non-discrete action space "
                                 "(Box(-1.0, 1.0, (1,), float32)); DQN parents need a Discrete one"),
    ("CarRacing-v3", "x: CarRacing-v3 observes Box(0, 255, (96, 96, 3), uint8); a Q-network here takes a flat "
                     "vector (a 1-D Box space), not images or nested spaces"),
])
def test_a_task_the_pipeline_cannot_play_is_one_line(env_id, message):
    with pytest.raises(RecombError) as err:
        tasks.task(env_id, "x")
    assert str(err.value) == message


def test_dims_come_from_the_spaces_and_a_network_that_does_not_fit_is_refused():
    lander = tasks.task("LunarLander-v3")
    assert (lander.obs_dim, lander.n_actions, lander.max_steps) == (8, 4, 1000)
    assert (tasks.task("Acrobot-v1").obs_dim, tasks.task("Acrobot-v1").n_actions) == (6, 3)
    lander.check_network(seeded_qnetwork(Architecture(8, 4, 16, 0.0), 0).eval(), "fits")
    for arch in (Architecture(4, 4, 16, 0.0), Architecture(8, 2, 16, 0.0)):
        with pytest.raises(RecombError, match=r"^student_A: does not fit LunarLander-v3 \(8 observations → 4 "):
            lander.check_network(seeded_qnetwork(arch, 0).eval(), "student_A")


def by_first_feature(x: torch.Tensor) -> torch.Tensor:
    """A fixed policy that reads the observation: action 2 when the first feature is positive, else 0."""
    return torch.stack([-x[:, 0], torch.zeros(len(x)), x[:, 0], torch.zeros(len(x))], dim=1)


def gymnasium_return(env, policy, seed: int) -> float:
    total = 0.0
    obs, _ = env.reset(seed=seed)
    while True:
        obs, reward, terminated, truncated, _ = env.step(int(policy(torch.from_numpy(obs[None])).argmax(1)))
        total += reward
        if terminated or truncated:
            return total


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "Acrobot-v1"])
def test_episode_i_of_an_evaluation_is_gymnasiums_episode_with_seed_plus_i(env_id):
    policy = by_first_feature if env_id == "LunarLander-v3" else (lambda x: by_first_feature(x)[:, :3])
    ours = tasks.task(env_id).greedy_returns(policy, 3, seed=40)
    for i, got in enumerate(ours):
        env, total = gym.make(env_id), 0.0
        obs, _ = env.reset(seed=40 + i)
        while True:
            obs, reward, terminated, truncated, _ = env.step(int(policy(torch.from_numpy(obs[None])).argmax(1)))
            total += reward
            if terminated or truncated:
                break
        assert got == pytest.approx(total, abs=1e-9)
    np.testing.assert_array_equal(ours, tasks.task(env_id).greedy_returns(policy, 3, seed=40))  # to the bit


def pumping(x: torch.Tensor) -> torch.Tensor:
    """Acrobot: torque along the joints' summed velocity, which swings the tip up within the time limit."""
    return torch.stack([-x[:, 4] - x[:, 5], torch.zeros(len(x)), x[:, 4] + x[:, 5]], dim=1)


@pytest.mark.parametrize("env_id, key, level, make_args, attributes", [
    ("LunarLander-v3", "gravity", -5.0, {"gravity": -5.0}, {}),
    ("LunarLander-v3", "wind_power", 20.0, {"enable_wind": True, "wind_power": 20.0, "turbulence_power": 0.0}, {}),
    ("LunarLander-v3", "turbulence_power", 2.0, {"enable_wind": True, "wind_power": 0.0, "turbulence_power": 2.0}, {}),
    ("Acrobot-v1", "link_length_1", 2.0, {}, {"LINK_LENGTH_1": 2.0}),
    ("Acrobot-v1", "torque_noise", 1.0, {}, {"torque_noise_max": 1.0}),
])
def test_a_shifted_episode_is_gymnasiums_with_that_argument_or_constant(env_id, key, level, make_args, attributes):
    """`generalize.physics` beyond CartPole: a make argument (LunarLander) or a constant set on the copy (Acrobot),
    episode i seeded `seed + i`, and the shift changes the returns."""
    task = tasks.task(env_id)
    policy = by_first_feature if task.n_actions == 4 else pumping
    shifted, nominal = task.condition_returns(policy, [task.shifted(key, level), tasks.envs.Condition()], 3, 40, 0)
    for i, got in enumerate(shifted):
        env = gym.make(env_id, **make_args)
        for name, value in attributes.items():
            setattr(env.unwrapped, name, value)
        assert got == pytest.approx(gymnasium_return(env, policy, 40 + i), abs=1e-9)
    assert not np.array_equal(shifted, nominal)


def test_observation_noise_is_seeded_and_changes_what_the_policy_sees():
    ours = tasks.task("LunarLander-v3").greedy_returns(by_first_feature, 3, seed=40)
    noise = np.full(8, 0.5)
    noisy = tasks.task("LunarLander-v3").greedy_returns(by_first_feature, 3, seed=40, observation_noise=noise)
    assert not np.array_equal(noisy, ours)
    np.testing.assert_array_equal(noisy, tasks.task("LunarLander-v3").greedy_returns(by_first_feature, 3, seed=40,
                                                              observation_noise=noise))


def test_training_copies_reset_on_the_step_an_episode_ends():
    env = tasks.GymBatch(tasks.task("LunarLander-v3"), 2, seed=3)
    reference = gym.make("LunarLander-v3")
    first, _ = reference.reset(seed=3)
    np.testing.assert_array_equal(env.observe()[0], first)
    for _ in range(1000):
        final, rewards, terminated, truncated, after = env.step(np.zeros(2, dtype=np.int64))
        obs, reward, done, cut, _ = reference.step(0)
        np.testing.assert_array_equal(final[0], obs)  # the transition's own next state, even on the last step
        assert rewards[0] == np.float32(reward)
        if done or cut:
            assert terminated[0] or truncated[0]
            assert not np.array_equal(after[0], final[0])  # already reset
            break
    else:
        pytest.fail("doing nothing never ended a LunarLander episode")


SMALL = {"total_steps": 2000, "eval_interval": 1000, "eval_episodes": 3, "buffer_size": 2000,
         "learning_starts": 200}
CORE = (parents, distill, validate_distillation, ptq, qat, validate_quantized, crossover, finetune,
        validate_recombination)


@pytest.mark.parametrize("env_id, dims", [("LunarLander-v3", (8, 4)), ("Acrobot-v1", (6, 3))])
def test_the_core_pipeline_on_a_task_beyond_cartpole(tmp_path, monkeypatch, env_id, dims):
    """A short DQN with a low bar, then every core stage (as `python -m stages.<name>` runs it, in process)."""
    p = Project(tmp_path / "project")
    p.set(**{"parents.env": env_id, "parents.dqn.hidden": 32, "parents.dqn.buffer.n_states": 400,
             **{f"parents.presets.{env_id}.{k}": v for k, v in SMALL.items()},
             f"parents.presets.{env_id}.pass_return": -1000.0, f"parents.presets.{env_id}.stop_return": 1000.0,
             "distill.epochs": 2, "qat.epochs": 1, "regimes.tuned.epochs": 1,
             "validate_distillation.eval_episodes": 2, "validate_distillation.latency_repeats": 10,
             "validate_quantized.eval_episodes": 2, "validate_quantized.latency_repeats": 10,
             "validate_quantized.throughput_repeats": 1, "validate_quantized.throughput_batch_size": 16,
             "validate_recombination.eval_episodes": 2, "selection.eval_episodes": 2})
    monkeypatch.chdir(p.path)
    params = common.with_task_values(common.load_params("params.yaml"))
    for stage in CORE:
        stage.main(params)
    sidecar = json.loads((p.path / "data/parents/parent_A.json").read_text())
    assert sidecar["env"] == env_id and sidecar["params"]["preset"]["total_steps"] == 2000
    assert (sidecar["architecture"]["input_dim"], sidecar["architecture"]["output_dim"]) == dims
    assert [row["step"] for row in sidecar["history"]] == [1000, 2000]
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    assert set(report["greedy_return"]) >= {"parent_A", "student_int8_B", "child"}
    assert all(isinstance(r, float) for r in report["greedy_return"].values())
    assert report["checks"]["child_greedy_return"]["min"] == -1000.0  # the task's bar, not CartPole's 475


def test_parents_env_that_cannot_be_played_stops_recomb_params_in_one_line(tmp_path, monkeypatch, capsys):
    p = Project(tmp_path / "project")
    needs = {"buffer_states": 1000, "distill_epochs": 5, "augment_copies": 0, "int8_return_gated": "both",
             "finetune_epochs": 5}
    p.set(**{"parents.env": "MountainCarContinuous-v0", "tasks.MountainCarContinuous-v0": needs})
    monkeypatch.chdir(p.path)
    code, out, err = run_recomb(capsys, "params")
    assert code == 1 and err.startswith("error: params.yaml: parents.env: MountainCarContinuous-v0 has a "
                                        "continuous") and err.count("\n") == 1
    p.set(**{"parents.env": "MountainCar-v0"})  # playable, but no DQN preset and no row of what it needs
    code, out, err = run_recomb(capsys, "params")
    assert (code, err) == (1, "error: params.yaml: parents.env: MountainCar-v0 has no row tasks.MountainCar-v0 with "
                              "buffer_states, which parents.dqn.buffer.n_states: task takes (add the row, or set "
                              "n_states itself)\n")
    p.set(**{"tasks.MountainCar-v0": needs})
    code, out, err = run_recomb(capsys, "params")
    assert code == 1 and err.startswith("error: params.yaml: parents.env: no DQN preset parents.presets.MountainCar-v0")
    assert not os.path.exists(p.path / "data/parents")


def test_only_the_task_constructor_tells_tasks_apart():
    """Everything that plays episodes takes a `Task`; comparing against a task id anywhere else is a defect."""
    from scratch import ROOT
    offenders = [str(path.relative_to(ROOT)) for folder in ("recomb", "stages") for path in (ROOT / folder).rglob("*.py")
                 if any(name in path.read_text() for name in ("ENV_ID", '"CartPole-v1"'))
                 and path.name not in ("envs.py", "tasks.py")]
    assert not offenders, f"task ids compared outside tasks.task(): {offenders}"
    cartpole, lander = tasks.task("CartPole-v1"), tasks.task("LunarLander-v3")
    assert list(cartpole.shifts) == list(tasks.envs.PHYSICS_KEYS) and cartpole.max_return == 500.0
    assert cartpole.plane is not None and (lander.max_return, lander.plane) == (None, None)
    assert list(lander.shifts) == ["gravity", "wind_power", "turbulence_power"]
    assert tasks.task("MountainCar-v0").shifts == {}
    assert tasks.of_parents({"env": "CartPole-v1"}) is cartpole and tasks.of_parents({}) is None


def test_the_old_source_name_is_refused_with_the_rename_in_one_line():
    from recomb.config import load_params
    from recomb.training.parents import ParentsConfig
    from scratch import ROOT
    params = load_params(ROOT / "params.yaml")
    for where, old in (("source", {**params["parents"], "source": "cartpole"}),
                       ("cartpole", {**params["parents"], "cartpole": params["parents"]["dqn"]})):
        with pytest.raises(RecombError) as err:
            ParentsConfig.from_params({"parents": old}, "parents")
        assert str(err.value).startswith(f"params.yaml: parents.{where}: the source `cartpole` is now `dqn`")
        assert "parents.presets.<env>" in str(err.value) and "\n" not in str(err.value)

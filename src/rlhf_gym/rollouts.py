"""Collect trajectories from any policy and cut them into fixed-length segments."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlhf_gym.types import Segment, Trajectory

Policy = Callable[[np.ndarray], object]


def rollout(env: gym.Env, policy: Policy, seed: int | None = None, max_steps: int | None = None,
            env_id: str | None = None, on_step: Callable[[gym.Env], None] | None = None) -> Trajectory:
    """Run one episode (or ``max_steps`` of one) and return it as a :class:`Trajectory`.

    ``on_step(env)`` is called after the reset and after every step (a video recorder grabs frames there).
    """
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    terminated = truncated = False
    if on_step is not None:
        on_step(env)
    while not (terminated or truncated):
        a = policy(obs)
        obs, r, terminated, truncated, _ = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(float(np.sum(r)))  # a vector reward (several objectives) is summed here
        if on_step is not None:
            on_step(env)
        if max_steps is not None and len(actions) >= max_steps and not terminated:
            truncated = True
    eid = env_id or (env.spec.id if env.spec else None)
    # Gymnasium may report both on the last step (the pole falls as the time limit hits): the MDP ended.
    return Trajectory(np.asarray(observations), np.asarray(actions), np.asarray(rewards), bool(terminated),
                      bool(truncated) and not bool(terminated), env_id=eid, seed=seed)


BatchPolicy = Callable[[np.ndarray], np.ndarray]


def rollout_batch(envs: Sequence[gym.Env], policy: BatchPolicy, seeds: Sequence[int | None],
                  env_id: str | None = None) -> list[Trajectory]:
    """One episode in each of ``envs`` (seeded with ``seeds``), stepped in lockstep.

    ``policy`` maps the stacked observations of the still-running episodes to their actions, so a
    neural policy runs one batched forward pass per step instead of one per episode. Each episode is
    the same as :func:`rollout` would give with the same seed and a deterministic policy.
    """
    if len(seeds) > len(envs):
        raise ValueError(f"{len(seeds)} seeds for {len(envs)} environments")
    n = len(seeds)
    obs_lists: list[list[Any]] = []
    for env, seed in zip(envs, seeds, strict=False):
        obs_lists.append([env.reset(seed=seed)[0]])
    acts: list[list[Any]] = [[] for _ in range(n)]
    rews: list[list[float]] = [[] for _ in range(n)]
    ended: list[tuple[bool, bool] | None] = [None] * n
    while True:
        live = [i for i in range(n) if ended[i] is None]
        if not live:
            break
        actions = policy(np.stack([obs_lists[i][-1] for i in live]))
        for k, i in enumerate(live):
            a = actions[k]
            a = np.asarray(a).item() if np.ndim(a) == 0 else np.asarray(a)
            obs, r, terminated, truncated, _ = envs[i].step(a)
            obs_lists[i].append(obs)
            acts[i].append(a)
            rews[i].append(float(r))
            if terminated or truncated:
                ended[i] = (bool(terminated), bool(truncated))
    out = []
    for i in range(n):
        term, trunc = ended[i]  # type: ignore[misc]
        eid = env_id or (envs[i].spec.id if envs[i].spec else None)
        out.append(Trajectory(np.asarray(obs_lists[i]), np.asarray(acts[i]), np.asarray(rews[i]), term,
                              trunc and not term, env_id=eid, seed=seeds[i]))
    return out


def rollouts(env: gym.Env, policy: Policy, n: int, seed: int = 0, max_steps: int | None = None) -> list[Trajectory]:
    """``n`` episodes with seeds ``seed, seed + 1, ...``."""
    return [rollout(env, policy, seed=seed + i, max_steps=max_steps) for i in range(n)]


def evaluate_policy(env: gym.Env | Sequence[gym.Env] | str, policy: Policy | BatchPolicy, episodes: int,
                    seed: int = 10_000, *, batched: bool = False) -> np.ndarray:
    """True (environment) returns of ``episodes`` episodes seeded ``seed, seed + 1, ...``.

    The one evaluation function: ``rlhf-gym evaluate``, the learners' periodic evaluation and the
    benchmarks all call it, so their numbers agree. ``env`` is one environment, several (stepped in
    lockstep, ``episodes`` in chunks of ``len(env)``), or an environment id (up to 16 are made and closed).
    ``batched=True`` says ``policy`` maps a stack of observations to a stack of actions (one forward pass
    per step for a neural policy); otherwise it takes one observation. The default seeds are disjoint
    from training's.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    owned = isinstance(env, str)
    if owned:
        from rlhf_gym.envs import make_env

        envs: Sequence[gym.Env] = [make_env(env) for _ in range(min(episodes, 16))]
    else:
        envs = [env] if isinstance(env, gym.Env) else list(env)
    batch = policy if batched else (lambda obs: [policy(o) for o in obs])
    rets: list[float] = []
    try:
        for k in range(0, episodes, len(envs)):
            seeds = list(range(seed + k, seed + min(k + len(envs), episodes)))
            rets += [t.ret for t in rollout_batch(envs, batch, seeds)]
    finally:
        if owned:
            for e in envs:
                e.close()
    return np.array(rets)


def random_policy(env: gym.Env) -> Policy:
    space = env.action_space
    return lambda _obs: space.sample()


def cut_segments(traj: Trajectory, length: int, stride: int | None = None, pad_absorbing: bool = True) -> Iterator[Segment]:
    """Cut ``traj`` into segments of ``length`` steps, every ``stride`` steps (default: ``length``).

    A terminated episode is padded past its end with the absorbing state (environment reward 0,
    ``absorbing=True``), so a clip in which the episode ended early can be compared with one in which
    it did not. A truncated episode is not padded (its last state is not absorbing); its final
    partial clip is dropped.
    """
    if length < 1:
        raise ValueError(f"segment length must be >= 1, got {length}")
    stride = stride or length
    n = len(traj)
    last_start = n - 1 if (traj.terminated and pad_absorbing) else n - length
    for start in range(0, max(last_start, -1) + 1, stride):
        yield segment_at(traj, start, length)


def segment_at(traj: Trajectory, start: int, length: int) -> Segment:
    """The clip ``traj[start:start + length]``, padded with the absorbing state past a termination."""
    n = len(traj)
    if not 0 <= start < n:
        raise ValueError(f"segment start {start} outside trajectory of length {n}")
    end = min(start + length, n)
    real = end - start
    pad = length - real
    if pad and not traj.terminated:
        raise ValueError("only a terminated trajectory can be padded with the absorbing state")
    idx = np.r_[np.arange(start, end), np.full(pad, n - 1)]
    obs = traj.obs[idx]
    nxt = traj.obs[np.minimum(idx + 1, n)]
    rews = np.r_[traj.rews[start:end], np.zeros(pad)]
    absorbing = np.r_[np.zeros(real, bool), np.ones(pad, bool)]
    if pad:  # padded steps sit in the terminal state itself
        obs[real:] = traj.obs[n]
        nxt[real:] = traj.obs[n]
    return Segment(obs, traj.acts[idx], nxt, rews, absorbing, traj_id=traj.id, start=start, env_id=traj.env_id,
                   seed=traj.seed)

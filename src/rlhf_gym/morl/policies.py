"""A set of policies covering the Pareto front (a weight sweep of SB3 on scalarised rewards), outcomes
drawn from them to ask about, and the policy for given weights (picked from the set, then fine-tuned).

Every policy is an SB3 model trained on ``weights @ vector_reward`` through
:class:`~rlhf_gym.morl.envs.ScalarisedReward`; its outcome is each objective's return, measured with
:func:`rlhf_gym.rollouts.evaluate_policy`. With linear weights the optimal policies lie on the convex
hull of the front (a known limit of weight sweeps; concave parts of a front are not reached).

The set is also an archive (as Pareto-archive methods such as PGMORL keep one): while a policy trains, its
checkpoints are screened (``checkpoints`` per policy, one greedy episode each) and one not dominated by the
set is evaluated in full and kept as a member of its own. RL on one weight passes through outcomes other
weights ask for (deep-sea-treasure, seed 0: the 11 final policies cover 0.934 of the true front's
hypervolume, with their checkpoints 0.991); the training itself is unchanged (a callback looks on).

Training (from scratch or fine-tuning) runs on the ``device`` it is given (a resolved one, the run's
``--device``); models loaded only to act (sampling outcomes, ``evaluate``, ``video``) are loaded on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_gym.morl.envs import ScalarisedReward, make_vector_env
from rlhf_gym.rollouts import evaluate_policy, rollout

ALGOS = ("ppo", "dqn")


def weight_grid(k: int, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` weight vectors on the simplex spreading over it: an even grid for 2 objectives; the corners,
    the centre and uniform Dirichlet draws for more."""
    if n < 1:
        raise ValueError(f"need at least one weight vector, got {n}")
    if k == 2:
        a = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
        return np.stack([a, 1 - a], axis=1)
    rng = rng if rng is not None else np.random.default_rng(0)
    base = [np.eye(k)[i] for i in range(min(k, n))]
    if n > k:
        base.append(np.full(k, 1.0 / k))
    while len(base) < n:
        base.append(rng.dirichlet(np.ones(k)))
    return np.stack(base[:n])


def make_algo(algo: str, venv: Any, seed: int, device: str = "cpu") -> Any:
    """SB3 PPO or DQN with this module's fixed defaults (the same for every task), on ``device``."""
    from stable_baselines3 import DQN, PPO

    from rlhf_gym.runtime import quiet_sb3

    if algo == "ppo":
        return quiet_sb3(PPO("MlpPolicy", venv, n_steps=128, batch_size=128, ent_coef=0.05, seed=seed, device=device,
                             verbose=0))
    if algo == "dqn":
        return quiet_sb3(DQN("MlpPolicy", venv, learning_starts=500, exploration_fraction=0.5, train_freq=4,
                             target_update_interval=500, seed=seed, device=device, verbose=0))
    raise ValueError(f"policy algorithm must be one of {', '.join(ALGOS)}, got {algo!r}")


def _venv(env_id: str, weights: np.ndarray, n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(lambda: ScalarisedReward(make_vector_env(env_id), weights), n_envs=n_envs, seed=seed)


def train_policy(env_id: str, weights: Any, timesteps: int, seed: int = 0, algo: str = "ppo",
                 init: str | Path | None = None, device: str = "cpu",
                 on_checkpoint: Callable[[Any], None] | None = None, checkpoints: int = 0) -> Any:
    """An SB3 model trained on ``device`` for ``timesteps`` on ``weights @ reward``; ``init`` (a saved model)
    fine-tunes. ``on_checkpoint(model)`` is called ``checkpoints - 1`` times at even steps before the end."""
    from rlhf_gym.learners.sb3_policy import _algo_class

    w = np.asarray(weights, float)
    venv = _venv(env_id, w, 4 if algo == "ppo" else 1, seed)
    if init is not None:
        from rlhf_gym.runtime import quiet_sb3

        model = quiet_sb3(_algo_class(algo).load(str(init), env=venv, device=device))
        model.set_random_seed(seed)
    else:
        model = make_algo(algo, venv, seed, device=device)
    callback = None
    if on_checkpoint is not None and checkpoints > 1:
        from stable_baselines3.common.callbacks import BaseCallback

        every = max(1, int(timesteps) // int(checkpoints))

        class _Checkpoints(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.done = 0

            def _on_step(self) -> bool:
                if self.done < checkpoints - 1 and self.n_calls * venv.num_envs >= (self.done + 1) * every:
                    self.done += 1
                    on_checkpoint(self.model)
                return True

        callback = _Checkpoints()
    model.learn(total_timesteps=int(timesteps), reset_num_timesteps=init is None, callback=callback)
    return model


def act_fn(model: Any, discrete: bool | None = None) -> Callable[[np.ndarray], Any]:
    """The model's greedy action as the environment takes it (``discrete``: from its action space)."""
    if discrete is None:
        discrete = hasattr(model.action_space, "n")

    def act(obs: np.ndarray) -> Any:
        a, _ = model.predict(np.asarray(obs), deterministic=True)
        return int(a) if discrete else np.asarray(a)

    return act


def objective_returns(env_id: str, policy: Callable[[np.ndarray], Any], episodes: int, seed: int = 10_000) -> np.ndarray:
    """Each objective's return per episode, (episodes, k), by the project's one evaluation function."""
    env = make_vector_env(env_id, seed=seed)
    wrapped = ScalarisedReward(env, np.zeros(_n_obj(env)))
    try:
        evaluate_policy(wrapped, policy, episodes, seed=seed)
    finally:
        wrapped.close()
    return np.stack(wrapped.episode_returns)


def _n_obj(env: Any) -> int:
    from rlhf_gym.morl.envs import n_objectives

    return n_objectives(env)


@dataclass
class PolicyEntry:
    """One policy of the set: the weights it was trained for, its mean return per objective, and whether it
    is a checkpoint the archive kept (not the end of a policy's training)."""

    weights: list[float]
    returns: list[float]
    path: str
    checkpoint: bool = False


@dataclass
class ParetoSet:
    """The policies of a weight sweep and their outcomes."""

    env_id: str
    objectives: tuple[str, ...]
    entries: list[PolicyEntry] = field(default_factory=list)

    @property
    def returns(self) -> np.ndarray:
        return np.array([e.returns for e in self.entries], float)

    def best_for(self, weights: Any) -> int:
        """Index of the policy with the highest utility ``weights @ returns``."""
        return int(np.argmax(self.returns @ np.asarray(weights, float)))

    def front(self) -> np.ndarray:
        """The set's non-dominated mean-return vectors (duplicates removed)."""
        return non_dominated(self.returns)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env_id, "objectives": list(self.objectives),
                "policies": [vars(e) for e in self.entries], "front": self.front().tolist()}


def build_pareto_set(env_id: str, objectives: Sequence[str], weights: np.ndarray, timesteps: int, out_dir: Path,
                     seed: int = 0, algo: str = "ppo", eval_episodes: int = 5,
                     log: Callable[[str], None] = print, device: str = "cpu", checkpoints: int = 10) -> ParetoSet:
    """A weight sweep: one policy per row of ``weights``, each trained from scratch on ``device``, with its
    per-objective returns (saved under ``out_dir``), and the checkpoints kept by the archive (0: none)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ps = ParetoSet(env_id, tuple(objectives))
    for i, w in enumerate(weights):
        model = train_policy(env_id, w, timesteps, seed=seed + i, algo=algo, device=device,
                             on_checkpoint=_archiver(ps, w, out_dir, eval_episodes, log), checkpoints=checkpoints)
        _add_policy(ps, model, w, out_dir, eval_episodes, log, f"{i + 1}/{len(weights)}")
    return ps


def build_pareto_set_ols(env_id: str, objectives: Sequence[str], n_policies: int, timesteps: int, out_dir: Path,
                         seed: int = 0, algo: str = "ppo", eval_episodes: int = 5,
                         log: Callable[[str], None] = print, rng: np.random.Generator | None = None,
                         reuse: bool = True, attempts: int = 2, device: str = "cpu", checkpoints: int = 10
                         ) -> ParetoSet:
    """Optimistic linear support (:mod:`rlhf_gym.morl.ols`): up to ``n_policies`` policies, each at the
    corner weight where the set can still improve the most.

    The simplex's corners are trained from scratch. At any other corner the first attempt fine-tunes the
    set's best policy for that weight (``reuse``); RL is an approximate solver, so a corner where the new
    policy does not improve the set is tried again from scratch (``attempts`` in all) before its value is
    trusted as the bound OLS relies on. Stops early when no corner can improve the set. Trains on ``device``.
    ``checkpoints``: screened per policy for the archive (0: none); the archive's members count towards
    the set OLS improves, not towards ``n_policies``.
    """
    from rlhf_gym.morl.ols import next_weight, set_value

    out_dir.mkdir(parents=True, exist_ok=True)
    ps = ParetoSet(env_id, tuple(objectives))
    k = len(objectives)
    trusted: list[np.ndarray] = []
    tried: dict[tuple[float, ...], int] = {}
    for i in range(int(n_policies)):
        w, gain = next_weight(ps.returns if ps.entries else np.zeros((1, k)), trusted, rng)
        if w is None:
            log(f"  optimistic linear support: no corner weight can improve the set by more than {gain:.3g}; "
                f"stopping at {i} policies")
            break
        key = tuple(np.round(w, 6))
        attempt = tried.get(key, 0)
        src = ps.best_for(w) if reuse and attempt == 0 and ps.entries and np.isfinite(gain) else None
        init = None if src is None else out_dir / ps.entries[src].path
        before = float(set_value(ps.returns, w)[0]) if ps.entries else -np.inf
        had = len(ps.entries)
        model = train_policy(env_id, w, timesteps, seed=seed + i, algo=algo, init=init, device=device,
                             on_checkpoint=_archiver(ps, w, out_dir, eval_episodes, log), checkpoints=checkpoints)
        how = "from scratch" if src is None else f"fine-tuned from policy {src + 1}"
        _add_policy(ps, model, w, out_dir, eval_episodes, log, f"{i + 1}/{n_policies}",
                    f" ({how}; possible gain {gain:.3g})" if had else "")
        span = float(np.ptp(ps.returns, axis=0).max()) if len(ps.entries) > 1 else 1.0
        # the new policy or one of its archived checkpoints
        improved = float((ps.returns[had:] @ w).max()) > before + 1e-4 * max(span, 1e-9)
        tried[key] = attempt + 1
        if improved or tried[key] >= attempts:
            trusted.append(np.asarray(w, float))
    return ps


def _add_policy(ps: ParetoSet, model: Any, w: np.ndarray, out_dir: Path, eval_episodes: int,
                log: Callable[[str], None], n: str, note: str = "", rets: np.ndarray | None = None,
                checkpoint: bool = False) -> None:
    path = out_dir / f"policy-{len(ps.entries):02d}.zip"
    model.save(str(path))
    if rets is None:
        rets = objective_returns(ps.env_id, act_fn(model), eval_episodes).mean(axis=0)
    ps.entries.append(PolicyEntry([float(x) for x in w], [float(x) for x in rets], str(path.name), checkpoint))
    log(f"  policy {n} for weights {np.round(w, 3).tolist()}{note}: returns {np.round(rets, 2).tolist()}")


def _dominated(point: np.ndarray, others: np.ndarray) -> bool:
    """Whether some row of ``others`` is at least as good everywhere (so ``point`` adds nothing)."""
    return bool(len(others)) and bool(np.any(np.all(others >= point - 1e-9, axis=1)))


def _archiver(ps: ParetoSet, w: np.ndarray, out_dir: Path, eval_episodes: int,
              log: Callable[[str], None]) -> Callable[[Any], None]:
    """The checkpoint callback of the archive: a checkpoint whose greedy episode the set does not dominate is
    evaluated on ``eval_episodes`` and, if the set still does not dominate it, kept as a member."""

    def look(model: Any) -> None:
        policy = act_fn(model)
        screen = objective_returns(ps.env_id, policy, 1).mean(axis=0)
        if ps.entries and _dominated(screen, ps.returns):
            return
        rets = objective_returns(ps.env_id, policy, eval_episodes).mean(axis=0)
        if not (ps.entries and _dominated(rets, ps.returns)):
            _add_policy(ps, model, w, out_dir, eval_episodes, log, "(a checkpoint)", rets=rets, checkpoint=True)

    return look


@dataclass(frozen=True)
class Outcome:
    """One episode's per-objective returns, with where it came from (to replay or show it)."""

    returns: np.ndarray
    policy: int
    seed: int
    epsilon: float
    actions: tuple = ()
    """The episode's actions, to replay it (render a clip) from ``seed``."""


def sample_outcomes(env_id: str, models: Sequence[Any], per_policy: int, rng: np.random.Generator,
                    epsilons: Sequence[float] = (0.0, 0.1, 0.3), seed: int = 20_000) -> list[Outcome]:
    """Episodes of each policy, some with epsilon-random actions so nearby outcomes are asked about too.

    Episode seeds start at ``seed`` (disjoint from evaluation's); the result keeps distinct outcomes only.
    """
    env = make_vector_env(env_id, seed=seed)
    wrapped = ScalarisedReward(env, np.zeros(_n_obj(env)))
    out: list[Outcome] = []
    seen: set[tuple[float, ...]] = set()
    try:
        n = 0
        for p, model in enumerate(models):
            greedy = act_fn(model)
            for e in range(per_policy):
                eps = float(epsilons[e % len(epsilons)])

                def pol(obs: np.ndarray, eps: float = eps, greedy: Callable = greedy) -> Any:
                    return wrapped.action_space.sample() if rng.random() < eps else greedy(obs)

                traj = rollout(wrapped, pol, seed=seed + n)
                vec = wrapped.episode_returns[-1]
                key = tuple(np.round(vec, 6))
                if key not in seen:
                    seen.add(key)
                    out.append(Outcome(vec, p, seed + n, eps, tuple(traj.acts.tolist())))
                n += 1
    finally:
        wrapped.close()
    return out


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Rows of ``points`` not dominated by another row (maximising every objective), unique, sorted."""
    pts = np.unique(np.asarray(points, float).round(9), axis=0)
    keep = [i for i, p in enumerate(pts) if not any((q >= p).all() and (q > p).any() for q in pts)]
    return pts[keep]


def hypervolume_2d(points: np.ndarray, ref: Sequence[float]) -> float:
    """Area dominated by ``points`` (2 objectives, maximised) and bounded below by ``ref``."""
    pts = non_dominated(np.asarray(points, float))
    pts = pts[(pts > np.asarray(ref)).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(-pts[:, 0])]
    hv, prev_y = 0.0, float(ref[1])
    for x, y in pts:
        if y > prev_y:
            hv += (x - ref[0]) * (y - prev_y)
            prev_y = y
    return float(hv)


def render_outcome(env_id: str, outcome: Outcome, path: Path, fps: int = 10) -> Path | None:
    """Replay ``outcome``'s episode with ``render_mode="rgb_array"`` and write it as a clip (None if the
    environment cannot be rendered here)."""
    from rlhf_gym.envs import try_render
    from rlhf_gym.runs import save_video

    try:
        env = make_vector_env(env_id, render_mode="rgb_array")
    except Exception:  # no rendering libraries: the person compares the numbers alone
        return None
    frames = []
    try:
        env.reset(seed=outcome.seed)
        for a in outcome.actions:
            fr = try_render(env)
            if fr is None:
                return None
            frames.append(fr)
            env.step(a)
        last = try_render(env)
        if last is not None:
            frames.append(last)
    finally:
        env.close()
    return save_video(frames, path, fps=fps) if frames else None

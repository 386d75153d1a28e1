"""The loop GAIL and AIRL share: an SB3 generator on a learned reward, a discriminator trained between its
rollouts on demonstrated versus generated transitions.

Transitions are rows ``(obs, act, next_obs, done, absorbing)``. An episode that *terminated* (the pole fell,
the goal was reached) is followed by one absorbing row (``absorbing=True``: no features but the flag), in
the demonstrations and in the generator's data alike; a time-limit truncation adds none, since its last
state is not absorbing. The discriminator therefore learns the absorbing state's own score, and the reward
handed to the generator is anchored to it (:meth:`RewardModel.set_output_normalisation` with
``use_absorbing``): after a ``done`` the RL algorithm assumes nothing more is paid, which is then exactly
the absorbing state's reward. Ending early is neither free reward (a positive per-step reward would make
"survive" the lesson on every task) nor free penalty (a negative one makes "end it now" the lesson); it pays
what the discriminator learned the absorbing state is worth (Kostrikov et al. 2019, Discriminator-Actor-Critic).
Three details keep that worth right: the anchor stays on the absorbing state once any episode of the run has
ended (not only while the recent window holds one); where only one side ever ends (CartPole's demonstrations
never do), the absorbing state is trained every step towards that side's certain label
(``disc_absorbing_bound``); and the gradient penalty draws no line between a state and the absorbing state
(``disc_gp_absorbing``). Without them a discriminator that had won against a falling generator valued
falling above every state it had not seen demonstrated, and a fresh policy on the saved reward learned to fall.

The discriminator's reward part is a :class:`~rlhf_gym.rewards.models.RewardModel` (one member, bounded
by ``tanh`` so its logits cannot run away to a 100%-sure discriminator), saved like the preference reward
model (safetensors + JSON) so ``rlhf-gym train --reward DIR`` can train a fresh policy on it.

Devices: the discriminator and the SB3 generator both live on the run's device (``train_adversarial(device=)``);
the generator's reward is computed by :meth:`RewardModel.reward` from CPU copies of the discriminator's weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.types import Trajectory


@dataclass
class AdversarialSettings:
    """The same defaults for every task (``--set disc_lr=...``, ``gen_n_envs=...``)."""

    disc_lr: float = 3e-4
    disc_batch: int = 256
    disc_updates: int = 1
    """Discriminator steps after each generator rollout (PPO) or every ``disc_every`` steps (SAC)."""
    disc_every: int = 512
    disc_scale: float = 4.0
    """Logit = scale x the reward network's tanh output: D stays within (1.8%, 98.2%)."""
    disc_window: int = 8192
    """Generated transitions the discriminator samples from (the most recent)."""
    disc_history: float = 0.5
    """Share of each generated batch drawn from a uniform sample (reservoir, ``disc_window`` rows) of every
    transition the generator made during the run, the rest from the most recent ones. With recent rows only,
    states the generator stopped visiting (falling, early) drop out of the discriminator's data, so the
    reward stops saying anything about them. 0: recent rows only. (5 seeds each, same seeds, 0.5 against 0:
    CartPole AIRL's transferred reward 5/5 against 4/5, Pendulum AIRL 2/5 against 1/5, every other GAIL and
    AIRL row on CartPole, Pendulum and MountainCar the same.)"""
    disc_hidden: int = 64
    disc_inputs: str = "obs_act"
    """What the reward network sees: ``obs_act`` (r(s, a)) or ``obs`` (a state-only r(s), the form AIRL's
    disentanglement argument needs for the recovered reward to transfer)."""
    gen_n_envs: int = 8
    gen_ent_coef: float = 0.0
    """PPO generator's entropy bonus in its loss (the preference learner's PPO has none)."""
    gen_logpi_reward: float = 0.0
    """PPO generator: this times ``-log pi(a|s)`` (its own policy's, at the step) is added to each step's
    reward, in the reward's normalised units (``/ (disc_scale * scale)``): at 1 the generator is paid AIRL's
    whole logit ``f - log pi`` rather than ``f`` alone, the entropy-regularised RL AIRL's argument assumes.
    SAC has its own entropy term and gets none. 0: off. Off by default: a bonus on every step alive is a
    survival reward (CartPole AIRL on random-policy "demonstrations" reached 500 with it)."""
    gamma: float = 0.99
    """Discount of AIRL's shaping term."""
    disc_gp: float = 10.0
    """Weight of a zero-centred gradient penalty on the reward network (its input gradient's squared norm at
    points between demonstrated and generated rows; Mescheder et al. 2018): keeps the discriminator from
    separating the two sets by a cliff the generator gets no gradient from (on CartPole, 5 seeds: GAIL
    solved 4/5 with it, 2/5 without; AIRL 3/5 either way). 0: off."""
    disc_absorbing_bound: bool = True
    """Where only one side ever ends its episodes (CartPole: the demonstrations never do, the generator does),
    the discriminator's best answer for the absorbing state is certain: "generated" (or "demonstrated").
    With this on, every step also trains the absorbing state towards that answer, which the rare absorbing
    rows in a batch otherwise leave near the demonstrated states' score. (With it and ``disc_gp_absorbing``
    off, a fresh PPO on CartPole AIRL's saved reward solved 5/5 seeds; without, at most 2/5: random states
    paid less than falling, so a fresh policy learned to fall.)"""
    disc_gp_absorbing: bool = False
    """Whether the gradient penalty's interpolation pairs may include an absorbing row. Between a state and
    the absorbing state (features: a flag) there is nothing to be smooth over, and the penalty along that
    line holds the absorbing state's reward near the demonstrated states', however often the generator
    ended its episodes."""

    def __post_init__(self) -> None:
        """Refuse values no run could use, naming the setting (the CLI turns this into exit code 2)."""
        import math

        positive = ("disc_lr", "disc_batch", "disc_updates", "disc_every", "disc_scale", "disc_window",
                    "disc_hidden", "gen_n_envs")
        for name in (*positive, "gen_ent_coef", "gen_logpi_reward", "disc_gp", "gamma"):
            v = getattr(self, name)
            if not math.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gen_ent_coef", "gen_logpi_reward", "disc_gp"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.disc_history <= 1:
            raise ValueError(f"disc_history must be in [0, 1], got {self.disc_history!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.disc_inputs not in ("obs_act", "obs"):
            raise ValueError(f"disc_inputs must be obs_act or obs, got {self.disc_inputs!r}")


@dataclass
class Rows:
    """Transitions as arrays (``acts`` one per row; absorbing rows carry zeros)."""

    obs: np.ndarray
    acts: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray
    absorbing: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(self.obs[idx], self.acts[idx], self.next_obs[idx], self.done[idx], self.absorbing[idx])

    @staticmethod
    def cat(a: Rows, b: Rows) -> Rows:
        """``a``'s rows, then ``b``'s."""
        return Rows(*(np.concatenate([x, y]) for x, y in zip((a.obs, a.acts, a.next_obs, a.done, a.absorbing),
                                                               (b.obs, b.acts, b.next_obs, b.done, b.absorbing),
                                                               strict=True)))

    @staticmethod
    def of(rows: Sequence[tuple[np.ndarray, Any, np.ndarray, bool, bool]]) -> Rows:
        """Rows from ``(obs, act, next_obs, done, absorbing)`` tuples."""
        o, a, n, d, ab = zip(*rows, strict=True)
        return Rows(np.asarray(o, np.float32), np.asarray(a), np.asarray(n, np.float32), np.asarray(d, bool),
                    np.asarray(ab, bool))


def demo_rows(trajs: Sequence[Trajectory]) -> Rows:
    """Every demonstrated step, plus one absorbing row after each terminated episode."""
    obs, acts, nxt, done, ab = [], [], [], [], []
    for t in trajs:
        n = len(t)
        obs.append(np.asarray(t.obs[:-1], np.float32))
        acts.append(np.asarray(t.acts))
        nxt.append(np.asarray(t.obs[1:], np.float32))
        d = np.zeros(n, bool)
        d[-1] = bool(t.terminated)
        done.append(d)
        ab.append(np.zeros(n, bool))
        if t.terminated:
            obs.append(np.asarray(t.obs[-1:], np.float32))
            acts.append(np.zeros_like(np.asarray(t.acts[:1])))
            nxt.append(np.asarray(t.obs[-1:], np.float32))
            done.append(np.ones(1, bool))
            ab.append(np.ones(1, bool))
    return Rows(np.concatenate(obs), np.concatenate(acts), np.concatenate(nxt), np.concatenate(done), np.concatenate(ab))


class _Watcher(VecEnvWrapper):
    """A wrapper that remembers the observations each step starts from and the actions taken in it."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self._obs: np.ndarray | None = None
        self._acts: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._obs = np.asarray(obs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._acts = np.asarray(actions)
        self.venv.step_async(actions)


class TransitionLog(_Watcher):
    """Keeps the generator's most recent transitions (with an absorbing row after each termination) and,
    with ``seed`` given, a uniform reservoir sample of all of them (Vitter's algorithm R, same capacity)."""

    def __init__(self, venv: VecEnv, capacity: int, seed: int | None = None) -> None:
        super().__init__(venv)
        self.capacity = capacity
        self.rows: list[tuple[np.ndarray, Any, np.ndarray, bool, bool]] = []
        self.reservoir: list[tuple[np.ndarray, Any, np.ndarray, bool, bool]] = []
        self.seen = 0
        self.terminations = 0
        self._rng = None if seed is None else np.random.default_rng(seed)
        self.steps = 0

    def step_wait(self) -> Any:
        obs, rews, dones, infos = self.venv.step_wait()
        assert self._obs is not None and self._acts is not None
        for i in range(self.num_envs):
            nxt = infos[i].get("terminal_observation", obs[i]) if dones[i] else obs[i]
            term = bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False)
            self._add((self._obs[i].copy(), self._acts[i].copy(), np.asarray(nxt).copy(), term, False))
            if term:
                self.terminations += 1
                self._add((np.asarray(nxt).copy(), np.zeros_like(self._acts[i]), np.asarray(nxt).copy(), True, True))
        if len(self.rows) > self.capacity:
            del self.rows[: len(self.rows) - self.capacity]
        self.steps += self.num_envs
        self._obs = np.asarray(obs)
        return obs, rews, dones, infos

    def _add(self, row: tuple[np.ndarray, Any, np.ndarray, bool, bool]) -> None:
        self.rows.append(row)
        if self._rng is None:
            return
        self.seen += 1
        if len(self.reservoir) < self.capacity:
            self.reservoir.append(row)
        else:
            j = int(self._rng.integers(self.seen))
            if j < self.capacity:
                self.reservoir[j] = row

    def recent(self) -> Rows:
        return Rows.of(self.rows)

    def history(self) -> Rows:
        """The reservoir: a uniform sample of every transition logged so far."""
        return Rows.of(self.reservoir)


class LogPiBonus(_Watcher):
    """Adds ``coef x -log pi(a|s) / (disc_scale x reward.scale)`` of the policy acting (``self.algo``, set once
    it exists) to every step's reward: the entropy part of AIRL's generator reward."""

    def __init__(self, venv: VecEnv, reward: RewardModel, coef: float, disc_scale: float) -> None:
        super().__init__(venv)
        self.reward, self.coef, self.disc_scale = reward, coef, disc_scale
        self.algo: Any = None

    def step_wait(self) -> Any:
        obs, rews, dones, infos = self.venv.step_wait()
        if self.algo is not None and self._obs is not None and self._acts is not None:
            lp = log_prob(self.algo, self._obs, self._acts).cpu().numpy()
            rews = rews - self.coef * lp / (self.disc_scale * float(self.reward.scale))
        self._obs = np.asarray(obs)
        return obs, np.asarray(rews, np.float32), dones, infos


def log_prob(algo: Any, obs: np.ndarray, acts: np.ndarray) -> torch.Tensor:
    """log pi(a|s) of the SB3 generator (PPO: its distribution; SAC: its squashed Gaussian), on its device."""
    from stable_baselines3 import SAC

    dev = algo.policy.device
    with torch.no_grad():
        obs_t = torch.as_tensor(np.asarray(obs, np.float32)).to(dev)
        if isinstance(algo, SAC):
            actor = algo.policy.actor
            mean, log_std, kw = actor.get_action_dist_params(obs_t)
            dist = actor.action_dist.proba_distribution(mean, log_std, **kw)
            scaled = torch.as_tensor(algo.policy.scale_action(np.asarray(acts, np.float32)), dtype=torch.float32)
            return dist.log_prob(scaled.to(dev).clamp(-0.999, 0.999))
        acts_t = torch.as_tensor(np.asarray(acts)).to(dev)
        if acts_t.dim() == 1 and algo.action_space.shape:
            acts_t = acts_t[:, None]
        _v, lp, _e = algo.policy.evaluate_actions(obs_t, acts_t)
        return lp


class Discriminator(torch.nn.Module):
    """Base of GAIL's and AIRL's discriminators: ``logits(rows, log_pi)`` > 0 means "demonstrated"."""

    needs_log_pi = False

    def __init__(self, reward: RewardModel, st: AdversarialSettings) -> None:
        super().__init__()
        self.reward, self.st = reward, st

    @property
    def device(self) -> torch.device:
        """Where the discriminator's weights live (its reward network's device)."""
        return self.reward.device

    def tensor(self, a: Any) -> torch.Tensor:
        """A numpy array of rows as a tensor on the discriminator's device."""
        return torch.as_tensor(a).to(self.device)

    def score(self, rows: Rows) -> torch.Tensor:
        """The reward network's raw (tanh-bounded) output per row, with gradient."""
        x = self.reward.features(rows.obs, rows.acts, rows.next_obs, rows.absorbing)
        return self.reward.member_rewards(x).mean(0)

    def logits(self, rows: Rows, log_pi: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class AdversarialResult:
    algo: Any
    reward: RewardModel
    disc: Discriminator
    env_steps: int = 0
    disc_steps: int = 0
    relabelled: int = 0
    """Replay-buffer transitions whose reward was recomputed after a discriminator update (SAC; 0 for PPO)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def disc_step(disc: Discriminator, opt: torch.optim.Optimizer, expert: Rows, gen: Rows, algo: Any,
              rng: np.random.Generator, batch: int, history: Rows | None = None,
              history_share: float = 0.0, absorbing_target: float | None = None) -> dict[str, float]:
    """One logistic-regression step: demonstrated rows labelled 1, generated rows 0 (balanced batches); a
    ``history_share`` of the generated rows comes from ``history`` (the run's reservoir), the rest from ``gen``;
    ``absorbing_target`` (0 or 1), where given, is the absorbing state's label in one more term."""
    e = expert.take(rng.integers(len(expert), size=batch))
    g = gen.take(rng.integers(len(gen), size=batch))
    if history is not None and len(history) and history_share > 0:
        k = int(rng.binomial(batch, history_share))
        g = Rows.cat(g.take(np.arange(batch - k)), history.take(rng.integers(len(history), size=k)))
    lp_e = lp_g = None
    if disc.needs_log_pi:  # the generator lives on the run's device, as the discriminator does
        lp_e = torch.where(disc.tensor(e.absorbing), 0.0, log_prob(algo, e.obs, e.acts).to(disc.device))
        lp_g = torch.where(disc.tensor(g.absorbing), 0.0, log_prob(algo, g.obs, g.acts).to(disc.device))
    le, lg = disc.logits(e, lp_e), disc.logits(g, lp_g)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    loss = bce(le, torch.ones_like(le)) + bce(lg, torch.zeros_like(lg))
    if absorbing_target is not None:
        one = e.take(np.zeros(1, int))
        end = Rows(one.obs, one.acts, one.obs, np.ones(1, bool), np.ones(1, bool))
        la = disc.logits(end, torch.zeros(1, device=disc.device) if disc.needs_log_pi else None)
        loss = loss + bce(la, torch.full_like(la, float(absorbing_target)))
    gp = 0.0
    if disc.st.disc_gp > 0 and not disc.reward.pixels:
        xe = disc.reward.features(e.obs, e.acts, e.next_obs, e.absorbing)
        xg = disc.reward.features(g.obs, g.acts, g.next_obs, g.absorbing)
        alpha = torch.as_tensor(rng.random((batch, 1)), dtype=xe.dtype)
        x = alpha * xe + (1 - alpha) * xg
        if not disc.st.disc_gp_absorbing:  # no line runs from a state to "the episode has ended"
            keep = np.flatnonzero(~e.absorbing & ~g.absorbing)
            x = x[torch.as_tensor(keep)]
        x = x.to(disc.device).requires_grad_(True)
        out = disc.st.disc_scale * disc.reward.member_rewards(x).mean(0)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        penalty = grad.pow(2).sum(1).mean() if len(x) else grad.sum()
        loss = loss + disc.st.disc_gp * penalty
        gp = float(penalty.detach())
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        acc = 0.5 * (float((le > 0).float().mean()) + float((lg < 0).float().mean()))
    return {"disc_loss": float(loss.detach()), "disc_accuracy": acc, "disc_grad_penalty": gp}


def renormalise(reward: RewardModel, expert: Rows, gen: Rows, rng: np.random.Generator,
                ended: bool = False) -> None:
    """Anchor the generator's reward to the absorbing state's (where episodes can end) and scale to RMS 1.

    ``ended``: an episode of this run has terminated before (the log's count), so the anchor stays on the
    absorbing state once the generator stops falling; judged on the recent rows alone, a CartPole generator
    that survived a whole window had its reward re-centred on the mean, half its states then paid less than
    falling, and it learned to fall (and the saved reward taught a fresh policy the same)."""
    both = [expert.take(rng.integers(len(expert), size=min(len(expert), 2048))),
            gen.take(rng.integers(len(gen), size=min(len(gen), 2048)))]
    real = [r.take(np.flatnonzero(~r.absorbing)) for r in both]
    obs = np.concatenate([r.obs for r in real])
    acts = np.concatenate([r.acts for r in real])
    nxt = np.concatenate([r.next_obs for r in real])
    use_absorbing = bool(ended or expert.absorbing.any() or gen.absorbing.any())
    reward.set_output_normalisation(obs, acts, nxt, use_absorbing=use_absorbing)


def train_adversarial(env_id: str, demos: Sequence[Trajectory], make_disc: Callable[[RewardModel], Discriminator],
                      *, algo: str, timesteps: int, seed: int = 0, settings: AdversarialSettings | None = None,
                      on_eval: Callable[[AdversarialResult], None] | None = None, eval_every: int = 10_000,
                      device: str = "cpu") -> AdversarialResult:
    """Train an SB3 ``algo`` (ppo or sac) generator against a discriminator built by ``make_disc``, both on
    ``device`` (a resolved one)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_gym.envs import make_env
    from rlhf_gym.learners.preference import make_algo
    from rlhf_gym.rewards.wrappers import LearnedRewardVecEnv, relabel_replay_buffer

    st = settings or AdversarialSettings()
    if not demos:
        raise ValueError("adversarial imitation needs at least one demonstration")
    probe = make_env(env_id)
    reward = RewardModel.for_spaces(probe.observation_space, probe.action_space, seed=seed, ensemble=1,
                                    hidden=st.disc_hidden, inputs=st.disc_inputs)
    probe.close()
    expert = demo_rows(demos)
    # input scaling from demonstrated *and* random-policy states: from the demonstrations alone (a balanced
    # pole barely moves) every state the generator reaches would be clipped to the same far-away corner
    from rlhf_gym.rollouts import random_policy, rollout

    env = make_env(env_id, seed=seed)
    rand = [rollout(env, random_policy(env), seed=seed + i, max_steps=200).obs for i in range(10)]
    env.close()
    reward.fit_input_normalisation(np.concatenate([expert.obs[~expert.absorbing], *rand]))
    disc = make_disc(reward).to(device)
    opt = torch.optim.Adam(disc.parameters(), lr=st.disc_lr)
    n_envs = st.gen_n_envs if algo == "ppo" else 1
    # our make_env, not gym.make: entry points, old-API classes and pixel preprocessing reach the generator too
    log = TransitionLog(make_vec_env(lambda: make_env(env_id), n_envs=n_envs, seed=seed), st.disc_window,
                        seed=seed + 1 if st.disc_history > 0 else None)
    venv = LearnedRewardVecEnv(log, reward)
    bonus = None
    if algo == "ppo" and st.gen_logpi_reward > 0:
        venv = bonus = LogPiBonus(venv, reward, st.gen_logpi_reward, st.disc_scale)
    model = make_algo(algo, venv, seed, timesteps, device=device)
    if bonus is not None:
        bonus.algo = model
    if algo == "ppo":
        model.ent_coef = float(st.gen_ent_coef)
    rng = np.random.default_rng(seed)
    res = AdversarialResult(model, reward, disc)
    t0 = time.time()
    state = {"last_disc": 0, "last_eval": 0}

    def update() -> None:
        if len(log.rows) < st.disc_batch:
            return
        gen = log.recent()
        old = log.history() if st.disc_history > 0 else None
        stats = {}
        target = None
        if st.disc_absorbing_bound and expert.absorbing.any() != (log.terminations > 0):
            target = 1.0 if expert.absorbing.any() else 0.0
        for _ in range(st.disc_updates):
            stats = disc_step(disc, opt, expert, gen, model, rng, st.disc_batch, old, st.disc_history, target)
            res.disc_steps += 1
        renormalise(reward, expert, gen, rng, ended=log.terminations > 0)
        # SAC learns from its whole replay buffer: rewards stored under older discriminators are recomputed
        # with the current one, or the generator keeps chasing what the discriminator no longer says
        res.relabelled += relabel_replay_buffer(model, reward)
        res.history.append({"env_steps": log.steps, **stats})

    class _Cb(BaseCallback):
        def _on_step(self) -> bool:
            if algo != "ppo" and log.steps - state["last_disc"] >= st.disc_every:
                state["last_disc"] = log.steps
                update()
            if on_eval is not None and log.steps - state["last_eval"] >= eval_every:
                state["last_eval"] = log.steps
                res.env_steps = log.steps
                on_eval(res)
            return True

        def _on_rollout_end(self) -> None:
            if algo == "ppo":
                update()

    model.learn(total_timesteps=timesteps, callback=_Cb())
    res.env_steps = log.steps
    res.wall_s = time.time() - t0
    venv.close()
    return res

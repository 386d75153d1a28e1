"""Simulated teachers for evaluative feedback ("was that action right?"), for any discrete-action task.

A teacher is a :class:`SimulatedTeacher` (a :class:`FeedbackSource`, so it swaps with a person by one
CLI argument) built from a *judge* and noise options:

* judges: :class:`ExpertActionJudge` (good iff the action is the expert's, or as good by its Q-values),
  :class:`AdvantageJudge` (good iff ``Q(s,a) >= max_a' Q(s,a') - margin``) and :class:`RandomJudge`
  (the control: 0/1 at random). The expert is a Stable-Baselines3 model trained on the true reward and
  cached per environment once it reaches the task's bar on held-out episodes (:func:`load_or_train_expert`:
  PPO with SB3's defaults, then DQN, :data:`EXPERT_RECIPES`), or a DQN/PPO/A2C file the user supplies
  (``--set expert=PATH``).
* noise options, which compose: ``noise`` (wrong answers at rate epsilon), ``skip`` (no answer at rate p)
  and ``delay`` (answers arrive 2-6 steps late, stamped with the step at which they were *given*; the
  learner is not told which step they judge, as with a person pressing a key while the agent moves on).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.registry import TeacherRequest, register_teacher
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.learners.sb3_policy import greedy
from rlhf_gym.types import Feedback, Query, StepQuery

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

Judge = Callable[[StepQuery], float]
QFunction = Callable[[np.ndarray], np.ndarray]

# -- judges --------------------------------------------------------------------------------------------
@dataclass
class AdvantageJudge:
    """Good (1.0) iff ``Q(s, a) >= max_a' Q(s, a') - margin``, else bad (0.0).

    ``q`` maps an observation to one value per action: the expert's Q-values (DQN), or its action
    log-probabilities (PPO/A2C), where the same test reads "nearly as likely as the best action".
    """

    q: QFunction
    margin: float = 0.0

    def __call__(self, query: StepQuery) -> float:
        qs = np.asarray(self.q(np.asarray(query.obs)), dtype=np.float64).ravel()
        return float(qs[int(query.action)] >= qs.max() - self.margin)


@dataclass
class ExpertActionJudge:
    """Good iff the action is the one the expert would take (ties in its values count as the same)."""

    policy: Callable[[np.ndarray], int]

    def __call__(self, query: StepQuery) -> float:
        return float(int(query.action) == int(self.policy(np.asarray(query.obs))))


@dataclass
class RandomJudge:
    """The control teacher: good or bad by a fair coin, whatever the agent did."""

    rng: np.random.Generator

    def __call__(self, query: StepQuery) -> float:
        return float(self.rng.integers(2))


# -- the source ----------------------------------------------------------------------------------------
class SimulatedTeacher(FeedbackSource):
    """A :class:`FeedbackSource` that answers step queries with a judge plus optional noise.

    Args:
        judge: the noiseless answer for a query (1.0 good, 0.0 bad).
        annotator_id, store, run_id: as for every source; answers are committed before they are returned.
        rng: the teacher's own random generator (noise, skips, delays), so runs are reproducible.
        noise: probability of flipping an answer (a wrong answer).
        skip: probability of not answering (stored as a skipped answer, ``value=None``).
        delay: ``(lo, hi)`` environment steps after the judged step at which the answer is given, drawn
            uniformly; ``None`` answers at once. Delayed answers carry ``step`` = the step when given.
    """

    simulated = True

    def __init__(self, judge: Judge, annotator_id: str, store: FeedbackStore | None = None,
                 run_id: str | None = None, rng: np.random.Generator | None = None, noise: float = 0.0,
                 skip: float = 0.0, delay: tuple[int, int] | None = None) -> None:
        super().__init__(annotator_id, store, run_id)
        if not 0.0 <= noise <= 1.0 or not 0.0 <= skip <= 1.0:
            raise ValueError(f"noise and skip must be rates in [0, 1], got noise={noise}, skip={skip}")
        if delay is not None and not 0 <= delay[0] <= delay[1]:
            raise ValueError(f"delay must be (lo, hi) with 0 <= lo <= hi, got {delay}")
        self.judge, self.noise, self.skip, self.delay = judge, noise, skip, delay
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._due: list[tuple[int, StepQuery, float | None]] = []

    @property
    def reports_judged_step(self) -> bool:
        """False for a delayed teacher: its answers say only *when* they were given."""
        return self.delay is None

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, StepQuery):
                raise TypeError(f"evaluative teachers answer step queries, got a {q.kind} query")
            value: float | None = self.judge(q)
            if self.rng.random() < self.skip:
                value = None
            elif self.rng.random() < self.noise:
                value = 1.0 - value
            due = q.step if self.delay is None else q.step + int(self.rng.integers(self.delay[0], self.delay[1] + 1))
            self._due.append((due, q, value))

    def _collect(self, step: int | None) -> list[Feedback]:
        now = step if step is not None else 2**62
        ready = [d for d in self._due if d[0] <= now]
        self._due = [d for d in self._due if d[0] > now]
        out = []
        for due, q, v in ready:
            given = q.step if self.delay is None else (step if step is not None else due)
            out.append(self._record(q, v, step=given))
        return out

    def cancel(self, query_ids: list[str]) -> None:  # type: ignore[override]
        super().cancel(query_ids)
        ids = set(query_ids)
        self._due = [d for d in self._due if d[1].id not in ids]


# -- experts -------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where trained experts are kept: ``$RLHF_GYM_CACHE`` or ``~/.cache/rlhf-gym``."""
    return Path(os.environ.get("RLHF_GYM_CACHE") or Path.home() / ".cache" / "rlhf-gym")


def expert_path(env_id: str, algo: str = "dqn") -> Path:
    return cache_dir() / "experts" / f"{env_id.replace('/', '_')}-{algo}.zip"


def expert_card_path(path: Path) -> Path:
    """The JSON beside a cached expert: its bar, its held-out return, how it was trained."""
    return path.with_suffix(".json")


#: DQN settings of the discrete recipe's second step: a long epsilon-greedy phase (20% of 150k steps) and
#: frequent small updates, so a goal-ending task whose reward says nothing until the goal (MountainCar-v0,
#: where PPO's defaults stay at -200 for 100k steps) is reached by exploration first.
DQN_SETTINGS: dict[str, Any] = {
    "learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10_000, "learning_starts": 1_000, "gamma": 0.98,
    "target_update_interval": 600, "train_freq": 16, "gradient_steps": 8, "exploration_fraction": 0.2,
    "exploration_final_eps": 0.07, "policy_kwargs": {"net_arch": [256, 256]}}

#: the recipes an expert is trained with, by kind of action space, tried in order until one reaches the
#: task's bar on held-out episodes (the same list for every task): ``(algorithm, max steps, check every,
#: settings)``. PPO with SB3's defaults solves CartPole-v1 in ~30k steps; DQN above reaches MountainCar-v0's
#: goal in ~80k (and solves CartPole-v1 too).
EXPERT_RECIPES: dict[str, tuple[tuple[str, int, int, dict[str, Any]], ...]] = {
    "discrete": (("ppo", 100_000, 10_000, {}), ("dqn", 150_000, 10_000, DQN_SETTINGS)),
    "continuous": (("sac", 60_000, 5_000, {}),),
}
#: the mean held-out return an expert must reach, for tasks Gymnasium registers without a
#: ``reward_threshold`` (the others use theirs: CartPole-v1 475, MountainCar-v0 -110, Acrobot-v1 -100, ...)
EXPERT_BARS: dict[str, float] = {"Pendulum-v1": -200.0}
#: held-out episodes an expert is judged on (seeds no training check used)
HELDOUT_EPISODES, HELDOUT_SEED = 50, 70_000


class ExpertError(ValueError):
    """No recipe produced an expert that reaches the task's bar (the CLI reports it with exit status 2)."""


def _kind(env_id: str) -> str:
    from rlhf_gym.envs import env_spec

    return "discrete" if env_spec(env_id).discrete else "continuous"


def expert_algo(env_id: str) -> str:
    """The first recipe's algorithm for ``env_id``: ``ppo`` for discrete actions, ``sac`` for continuous ones."""
    return EXPERT_RECIPES[_kind(env_id)][0][0]


def expert_bar(env_id: str) -> float | None:
    """The mean held-out return an expert for ``env_id`` must reach: the registered ``reward_threshold``, else
    :data:`EXPERT_BARS`; ``None`` for a task with neither (the best checkpoint is kept, and the card says so)."""
    import gymnasium as gym

    if env_id in EXPERT_BARS:
        return EXPERT_BARS[env_id]
    try:
        threshold = gym.spec(env_id).reward_threshold
    except gym.error.Error:
        return None
    return None if threshold is None else float(threshold)


def heldout_return(model: Any, env_id: str) -> tuple[float, float]:
    """Mean and worst greedy return of an SB3 model over :data:`HELDOUT_EPISODES` held-out episodes."""
    from rlhf_gym.envs import make_env
    from rlhf_gym.rollouts import evaluate_policy

    discrete = _kind(env_id) == "discrete"
    env = make_env(env_id)
    try:
        rets = evaluate_policy(env, greedy(model, discrete), HELDOUT_EPISODES, seed=HELDOUT_SEED)
    finally:
        env.close()
    return float(rets.mean()), float(rets.min())


def train_expert(env_id: str, seed: int = 0, log: Callable[[str], None] = print,
                 patience: int = 3) -> Path:
    """Train an expert on the true reward, trying :data:`EXPERT_RECIPES` in order until one's best checkpoint
    reaches :func:`expert_bar` on held-out episodes; cache it with its card (bar, held-out return, recipe).

    Each recipe trains in chunks and checks 20 greedy episodes after each; it stops early once the worst of
    them reaches the bar (a teacher should be reliably good, not good on average), or, with no bar, once
    ``patience`` checks in a row did not improve; the best checkpoint is kept. Raises :class:`ExpertError`
    (naming every recipe's held-out return and ``--set expert=PATH``) when none reaches the bar; nothing is
    cached then. Each recipe has its own file (:func:`expert_path`).
    Deterministic for a given seed on one thread.
    """
    import json

    from rlhf_gym.runtime import torch_threads

    bar = expert_bar(env_id)
    tried = []
    for algo, max_steps, chunk, settings in EXPERT_RECIPES[_kind(env_id)]:
        target = expert_path(env_id, algo)
        with torch_threads(1):
            model, steps = _train_recipe(env_id, target, algo, settings, seed, max_steps, chunk, bar, log, patience)
        mean, worst = heldout_return(model, env_id)
        tried.append(f"{algo.upper()} {mean:.1f}")
        log(f"  expert {env_id} ({algo}): held-out return {mean:.1f} (worst {worst:.1f}) over {HELDOUT_EPISODES} "
            f"episodes; bar {bar if bar is not None else 'none stated'}")
        if bar is None or mean >= bar:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.stem + ".partial.zip")
            model.save(str(tmp))
            card = {"env_id": env_id, "algo": algo, "seed": seed, "steps": steps, "bar": bar,
                    "heldout_mean": mean, "heldout_min": worst, "heldout_episodes": HELDOUT_EPISODES,
                    "heldout_seed": HELDOUT_SEED, "settings": settings}
            expert_card_path(target).write_text(json.dumps(card, indent=2))
            os.replace(tmp, target)
            return target
    raise ExpertError(f"no expert for {env_id} reached the bar {bar} (mean return over {HELDOUT_EPISODES} held-out "
                      f"episodes): {', '.join(tried)}; supply one with --set expert=PATH (an SB3 zip)")


def _train_recipe(env_id: str, path: Path, algo: str, settings: dict[str, Any], seed: int, max_steps: int,
                  chunk: int, bar: float | None, log: Callable[[str], None], patience: int) -> tuple[Any, int]:
    """One recipe: the best checkpoint (by mean and worst of 20 check episodes) and the steps it had trained."""
    from stable_baselines3 import DQN, PPO, SAC

    from rlhf_gym.envs import make_env
    from rlhf_gym.rollouts import evaluate_policy
    from rlhf_gym.runtime import quiet_sb3

    cls = {"ppo": PPO, "dqn": DQN, "sac": SAC}[algo]
    env = make_env(env_id, seed=seed)
    eval_env = make_env(env_id, seed=seed + 1)
    model = quiet_sb3(cls("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **settings))
    discrete = algo != "sac"
    path.parent.mkdir(parents=True, exist_ok=True)
    best_file = path.with_name(path.stem + ".best.zip")
    best, best_steps, stale, done, t0 = -np.inf, 0, 0, 0, time.time()
    while done < max_steps:
        model.learn(chunk, reset_num_timesteps=False)
        done += chunk
        rets = evaluate_policy(eval_env, greedy(model, discrete), 20, seed=50_000)
        score = float(rets.mean() + rets.min()) / 2
        if score > best:
            best, best_steps, stale = score, done, 0
            model.save(str(best_file))
        else:
            stale += 1
        log(f"  expert {env_id} ({algo}): {done} steps, greedy return {rets.mean():.1f} (worst {rets.min():.1f}), "
            f"{time.time() - t0:.0f}s")
        if bar is not None and rets.min() >= bar:
            break
        if bar is None and stale >= patience:
            break
    env.close()
    eval_env.close()
    model = cls.load(str(best_file), device="cpu")
    best_file.unlink()
    return model, best_steps


def load_expert(path: str | Path) -> Any:
    """Load a Stable-Baselines3 model (DQN, PPO, A2C or SAC) from a zip the user trained or we cached."""
    from stable_baselines3 import A2C, DQN, PPO, SAC

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"expert file {path} not found")
    errors = []
    for cls in (DQN, PPO, A2C, SAC):
        try:
            return cls.load(str(path), device="cpu")
        except Exception as e:  # wrong class for this file: try the next
            errors.append(f"{cls.__name__}: {e}")
    raise ValueError(f"{path} is not a Stable-Baselines3 DQN, PPO, A2C or SAC model ({'; '.join(errors)})")


def expert_card(env_id: str) -> dict[str, Any] | None:
    """The card of the cached expert for ``env_id`` that reaches its bar (first recipe first), or ``None``.

    A cached file without a card (from before cards) is judged on the held-out episodes now and gets one;
    one below the bar is not used (a later recipe, or training, takes its place).
    """
    import json

    bar = expert_bar(env_id)
    for algo, *_rest in EXPERT_RECIPES[_kind(env_id)]:
        path = expert_path(env_id, algo)
        if not path.exists():
            continue
        card_file = expert_card_path(path)
        if card_file.exists():
            card = json.loads(card_file.read_text())
        else:
            mean, worst = heldout_return(load_expert(path), env_id)
            card = {"env_id": env_id, "algo": algo, "bar": bar, "heldout_mean": mean, "heldout_min": worst,
                    "heldout_episodes": HELDOUT_EPISODES, "heldout_seed": HELDOUT_SEED}
            card_file.write_text(json.dumps(card, indent=2))
        if bar is None or card["heldout_mean"] >= bar:
            return card | {"path": str(path)}
    return None


def load_or_train_expert(env_id: str, user_path: str | None = None, seed: int = 0,
                         log: Callable[[str], None] = print) -> Any:
    """The user's expert if given, else the cached one for ``env_id`` that reaches the task's bar, training one
    once if there is none (:func:`train_expert`; :class:`ExpertError` if no recipe reaches the bar)."""
    if user_path:
        return load_expert(user_path)
    card = expert_card(env_id)
    if card is None:
        log(f"training an expert for {env_id} on the true reward (once; cached under {cache_dir() / 'experts'})")
        train_expert(env_id, seed=seed, log=log)
        card = expert_card(env_id)
        assert card is not None
    log(f"expert for {env_id}: {card['algo'].upper()}, held-out return {card['heldout_mean']:.1f} over "
        f"{card['heldout_episodes']} episodes (bar {card['bar']})")
    return load_expert(card["path"])


def expert_q_function(model: Any) -> QFunction:
    """Per-action values of an SB3 model: Q-values for DQN, action log-probabilities otherwise."""
    import torch

    def q(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t, _ = model.policy.obs_to_tensor(np.asarray(obs))
            if hasattr(model, "q_net"):
                return model.q_net(t).cpu().numpy()[0]
            dist = model.policy.get_distribution(t)
            return dist.distribution.logits.cpu().numpy()[0]

    return q


def expert_policy(model: Any) -> Callable[[np.ndarray], int]:
    return lambda obs: int(model.predict(np.asarray(obs), deterministic=True)[0])


# -- the registered names --------------------------------------------------------------------------------
SIMULATED = ("oracle", "expert", "noisy", "delayed", "random")
_SETTINGS = ("expert", "expert_seed", "margin", "skip", "noise", "delay_min", "delay_max")


def simulated_evaluative_teacher(req: TeacherRequest, judge: Judge | None = None) -> FeedbackSource:
    """A simulated evaluative teacher for ``req.name``.

    Reads ``--set`` options: ``expert=PATH`` (an SB3 zip), ``margin`` (advantage oracle), ``skip`` (rate),
    ``noise`` (rate, any teacher; ``noisy`` uses ``--noise``), ``delay_min``/``delay_max`` (steps, delayed
    teacher). ``judge`` replaces the expert (tests use an analytic one so they never train an expert).
    """
    x, name = req.settings, req.name
    if name == "random":
        judge = RandomJudge(req.rng("judge"))
    elif judge is None:
        from rlhf_gym.envs import require_discrete

        require_discrete(req.env_id, f"the {name!r} evaluative teacher")
        model = load_or_train_expert(req.env_id, x.get("expert"), seed=int(x.get("expert_seed", 0)), log=req.log)
        if name == "expert":
            judge = ExpertActionJudge(expert_policy(model))
        else:
            judge = AdvantageJudge(expert_q_function(model), margin=float(x.get("margin", 0.0)))
    noise = req.noise if name == "noisy" else float(x.get("noise", 0.0))
    delay = (int(x.get("delay_min", 2)), int(x.get("delay_max", 6))) if name == "delayed" else None
    return SimulatedTeacher(judge, str(req.annotator_id), store=req.store, run_id=req.run_id, rng=req.rng(),
                            noise=noise, skip=float(x.get("skip", 0.0)), delay=delay)


_HELP = {
    "oracle": "judges each action by the expert's Q-values (good if no worse than the best)",
    "expert": "good when the action is the expert's own",
    "noisy": "the oracle, wrong at rate --noise",
    "delayed": "the oracle, answering 2-6 steps late without saying which step",
    "random": "the control: a fair coin",
}
for _name in SIMULATED:
    register_teacher("evaluative", _name, settings=_SETTINGS, help=_HELP.get(_name, ""))(simulated_evaluative_teacher)


@register_teacher("evaluative", "human", person=True, help="you, at the terminal")
def terminal_evaluative_teacher(req: TeacherRequest) -> FeedbackSource:
    from rlhf_gym.feedback.terminal import TerminalSource

    return TerminalSource(str(req.annotator_id), store=req.store, run_id=req.run_id, env_id=req.env_id,
                          policy=req.consent)

"""Preference-based RL: learn a reward model from clip comparisons while SB3 optimises a policy on it.

One ``learn()`` call runs the whole job (several calls would restart SB3's learning-rate and clip
schedules); a callback runs the feedback rounds. In each round the loop

1. rolls out the current policy a few episodes (with known seeds, so a person's clips can be
   re-rendered) and cuts random clips, padded with the absorbing state past a termination;
2. picks the clip pairs the reward ensemble disagrees on most and *posts* them to the feedback
   source (a simulated teacher answers at once, a person whenever they like);
3. when answers have arrived, continues training the reward model from its current weights,
   records it in the store with the ids of the labels behind it, anchors its output at the
   absorbing state's reward, and (SAC) relabels the whole replay buffer with it (PEBBLE);
4. evaluates the greedy policy on the true reward (for the metrics only).

Labels are asked during the first ``label_frac`` (0.9) of training, front-loaded. The same defaults serve
every task; only the number of environment steps scales with the task's time limit.
Unsupervised exploration pre-training (PEBBLE's state-entropy phase, ``--set unsup_frac=0.1``) is
available but off by default: on MountainCar it did not reach the goal within the default steps
(see the benchmark), so it has not earned a place in the defaults; SAC starts from uniformly random
actions for ``learning_starts`` steps instead.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rlhf_gym.envs import make_env, spec_of
from rlhf_gym.feedback.selection import (
    candidate_pairs,
    default_rounds,
    query_schedule,
    sample_segments,
    select_pairs,
)
from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback
from rlhf_gym.governance.bias import WeightPolicy
from rlhf_gym.rewards.diagnostics import ensemble_disagreement, pair_accuracy, reward_correlation
from rlhf_gym.rewards.models import RewardModel
from rlhf_gym.rewards.training import (
    FEW_LABELS,
    DemoPair,
    InvertedRewardWarning,
    RewardTrainConfig,
    fit_reward_model,
    inverted_message,
    looks_inverted,
    normalise_output,
    ranked_pairs,
    reinitialise,
)
from rlhf_gym.rewards.wrappers import LearnedRewardVecEnv, relabel_replay_buffer
from rlhf_gym.rollouts import evaluate_policy, rollout_batch
from rlhf_gym.runs import MetricsLogger, RunDir
from rlhf_gym.runtime import quiet_sb3
from rlhf_gym.types import PairQuery, Segment, Trajectory

log = logging.getLogger(__name__)


@dataclass
class PreferenceSettings:
    """Loop settings (``--set key=value``); the same defaults for every task."""

    ensemble: int = 3
    inputs: str = "obs_act"
    selection: str = "disagreement"
    schedule: str = "front"
    rounds: int = 0
    """Feedback rounds; 0 = about one per 2 labels (1 to 10; :func:`default_rounds`)."""
    label_frac: float = 0.9
    """Labels are asked during this fraction of training (0.5 until issue 13: the failing CartPole seeds drifted
    off the track in states no label had compared)."""
    round_power: float = 1.0
    """Round k of n starts at ``(k / n) ** round_power`` of the labelling span: 1 = evenly spaced; above 1
    the rounds come closer together early, while the reward model knows least and the policy changes most."""
    unsup_frac: float = 0.0
    """Fraction of training spent on unsupervised exploration (a state-entropy reward) before the first
    query, as in PEBBLE; 0 = off."""
    candidates: int = 10
    """Candidate pairs considered per label asked."""
    query_episodes: int = 4
    """Episodes of the current policy rolled out per round to cut clips from."""
    pool_rounds: int = 3
    """Clips are cut from the rollouts of this many most recent rounds."""
    eval_points: int = 10
    """Evaluations of the greedy policy (true reward) over training, besides one per round."""
    round_eval_episodes: int = 5
    n_envs: int = 8
    """PPO's parallel environments."""
    renormalise: bool = True
    """Before each reward fit, refit the reward model's input statistics on the states of the labelled clips
    and of the current clip pool, keeping the fitted function (:meth:`RewardModel.renormalise_inputs`); off:
    the statistics of the random-policy states before the first query are kept for the whole run."""
    threshold: float | None = None
    """True return counted as solved (default: the env spec's reward_threshold)."""
    heldout_every: int = 5
    """One label in this many (which one: a rule seeded by the run's seed) is held out: never trained on
    by any round, only used to measure the reward model's accuracy and to judge it inverted; 0 = never.
    Every run also reports ``prequential_accuracy``: each label judged by the model before it was
    trained on it (test-then-train), which costs no label."""
    heldout_min_budget: int = 100
    """Labels are held out only in runs with at least this budget: at 20 labels, 4 held-out pairs measure
    accuracy to about +-0.4 and cost CartPole 2 of 5 solved seeds (measured, see the README)."""
    demo_pairs: int = 100
    """With ``--demos``: synthetic comparisons ranked from the demonstrations (D-REX, see
    :meth:`PreferenceLoop.build_demo_pairs`) that the reward model is pre-trained on before the first query
    and keeps training on with the labels."""
    demo_episodes: int = 4
    """Episodes of the cloned policy per noise level."""
    demo_vs_policy: int = 100
    """With ``--demos``: this many more comparisons, renewed every feedback round, of demonstration clips
    preferred over the current policy's clips; 0 = off (measured on CartPole, seed 0: 122.8 without,
    500.0 with; see the README)."""
    demo_weight: float = 1.0
    """Loss weight of one synthetic comparison relative to one label."""
    demo_bc: bool = False
    """With ``--demos``: also pre-train the policy by behavioural cloning before RL starts."""
    reward_flat: float = 1.0
    """Weight of the reward fit's flatness penalty on the clip pool's states (``RewardTrainConfig.flat``):
    of the rewards that order the labelled clips, prefer the one that varies least over the states the
    policy visits, so states no label compared are not paid by how the network happens to extrapolate (with
    few labels, CartPole's learned reward paid an off-centre cart more than a centred one and the policy drove
    off the track). Flat observations only (image models are fitted without it). 0: off. See the README's
    "Fewer labels (2026-12-08)"."""

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> tuple[PreferenceSettings, dict[str, Any]]:
        """The settings named in ``extra`` (each read as its default's type, or a ValueError naming it), and the rest."""
        from rlhf_gym.config import coerce_setting

        by_name = {f.name: f for f in fields(cls)}
        mine = {k: v if by_name[k].default is None or v is None else coerce_setting(k, by_name[k].default, v)
                for k, v in extra.items() if k in by_name}
        return cls(**mine), {k: v for k, v in extra.items() if k not in by_name}


DEMO_NOISE = (0.25, 0.5, 0.75, 1.0)
"""Shares of random actions of the cloned policy's episodes, best ranked first (D-REX)."""


def default_timesteps(algo: str, max_episode_steps: int | None) -> int:
    """Environment steps scaled from the time limit: 200 episodes' worth for PPO, 100 for SAC."""
    h = max_episode_steps or 500
    return int(min(300_000, max(10_000, (200 if algo == "ppo" else 100) * h)))


def make_algo(algo: str, venv: Any, seed: int, timesteps: int, device: str = "cpu") -> Any:
    """The SB3 algorithm with this project's fixed defaults (not tuned per task); a CNN policy for images.
    ``device``: a resolved device (:func:`rlhf_gym.devices.resolve_device`), handed to SB3."""
    from stable_baselines3 import PPO, SAC

    from rlhf_gym.learners.pixel_policy import sb3_policy

    policy, policy_kwargs = sb3_policy(venv.observation_space)

    if algo == "ppo":
        def lin(start: float) -> Any:
            return lambda frac: frac * start  # SB3 passes the remaining progress, 1 -> 0

        return quiet_sb3(PPO(policy, venv, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
                             learning_rate=lin(1e-3), clip_range=lin(0.2), ent_coef=0.0, seed=seed, device=device,
                             verbose=0, policy_kwargs=policy_kwargs))
    return quiet_sb3(SAC(policy, venv, learning_rate=1e-3, buffer_size=max(timesteps, 1000), learning_starts=1000,
                         seed=seed, device=device, verbose=0, policy_kwargs=policy_kwargs))


class PreferenceLoop:
    """State of one preference-learning run; driven by :class:`_RoundCallback` inside SB3's ``learn``."""

    def __init__(self, *, env_id: str, seed: int, budget: int, segment_length: int, eval_episodes: int,
                 st: PreferenceSettings, algo_name: str, timesteps: int, run: RunDir, store: Any, run_id: str,
                 source: FeedbackSource | None, reward: RewardModel, venv: LearnedRewardVecEnv,
                 threshold: float | None, weighting: WeightPolicy | None = None, learn_reward: bool = True,
                 demos: Sequence[Any] = (), device: str = "cpu") -> None:
        """Parts of the run, given by its job: ``source`` asks for labels (None: optimise ``reward`` as it
        is), ``venv`` carries ``reward`` into SB3, ``weighting`` is the annotator weighting policy,
        ``learn_reward=False`` (a given reward model) skips the exploration pre-training, and ``demos``
        (stored demonstrations: ``feedback_id``, ``annotator_id``, ``traj``) become synthetic comparisons
        (see :meth:`add_demo_pairs`). ``device`` (a resolved one) is where the reward model is fitted and the
        demonstrations' clone is trained; the job builds SB3 on it too."""
        self.device = device
        self.env_id, self.seed, self.segment_length = env_id, seed, segment_length
        self.st, self.algo_name, self.timesteps = st, algo_name, timesteps
        self.run, self.store, self.run_id, self.source = run, store, run_id, source
        self.reward, self.venv, self.threshold = reward, venv, threshold
        self.rng = np.random.default_rng(seed + 1)
        self.algo: Any = None
        # one environment per episode rolled out together (queries, evaluation): the policy then runs
        # one batched forward pass per step
        self.query_envs = [make_env(env_id) for _ in range(st.query_episodes)]
        self.eval_envs = [make_env(env_id) for _ in range(max(st.round_eval_episodes, eval_episodes))]
        self.discrete = spec_of(self.query_envs[0]).discrete
        budget = budget if source is not None else 0
        n_rounds = st.rounds or default_rounds(budget)
        self.schedule = query_schedule(budget, n_rounds, st.schedule) if budget > 0 else []
        if not 0 <= st.unsup_frac < st.label_frac:
            raise ValueError(f"unsup_frac must be in [0, label_frac={st.label_frac}), got {st.unsup_frac}")
        self.unsup_steps = int(st.unsup_frac * timesteps) if learn_reward else 0
        span = st.label_frac * timesteps - self.unsup_steps
        if st.round_power <= 0:
            raise ValueError(f"round_power must be > 0, got {st.round_power}")
        n_sched = max(len(self.schedule), 1)
        self.round_steps = [self.unsup_steps + int(span * k ** st.round_power / n_sched ** st.round_power)
                            for k in range(len(self.schedule))]
        self.eval_steps = [int(timesteps * (i + 1) / st.eval_points) for i in range(st.eval_points)]
        self.round = 0
        self.asked = 0
        self.pairs: list[tuple[Segment, Segment, float]] = []
        self.pair_meta: list[tuple[str, int | None]] = []  # (annotator, feedback id) of each pair
        self.fb_ids: list[int] = []
        # the true held-out set: label i (in order of arrival) is held out iff i % k == offset
        k = st.heldout_every
        if k < 0:
            raise ValueError(f"heldout_every must be >= 0, got {k}")
        self.heldout_k = k if k > 0 and budget >= st.heldout_min_budget else 0
        self.prequential = [0, 0]  # labels the current model ranked right before training on them, labels judged
        self.heldout_offset = int(np.random.default_rng([seed, 7919]).integers(self.heldout_k)) \
            if self.heldout_k else -1
        self.heldout_flags: list[bool] = []  # one per entry of self.pairs
        self.weighting = weighting or WeightPolicy()
        self.query_map: dict[str, PairQuery] = {}
        self.pool: list[list[Trajectory]] = []
        self.episode_seed = 1_000_000 * (seed + 1)
        self.trained_once = False
        self.inverted_rounds: list[int] = []
        self.warnings: list[str] = []
        self.first_solved: dict[str, Any] | None = None
        self.logger = MetricsLogger(run)
        self.t = {"eval": 0.0, "reward_train": 0.0, "queries": 0.0, "callback": 0.0}
        self.last_eval: float | None = None
        self.model_ids: list[str] = []
        self.demos = list(demos)
        self.fit_ids: list[int] = []  # the feedback ids behind the current reward model
        self.demo_pairs: list[DemoPair] = []
        self.demo_basis: frozenset[int] = frozenset()  # the demonstrations behind demo_pairs
        self.demo_annotator = {d.feedback_id: d.annotator_id for d in self.demos}

    # -- policy rollouts for queries -------------------------------------------------------------
    def _policy(self, deterministic: bool) -> Any:
        """The current policy on a batch of observations (random actions before SB3 is set up)."""
        algo = self.algo

        def act(obs: np.ndarray) -> np.ndarray:
            if algo is None:
                return np.stack([self.query_envs[0].action_space.sample() for _ in range(len(obs))])
            return algo.predict(obs, deterministic=deterministic)[0]

        return act

    def collect(self) -> list[Trajectory]:
        """A few episodes of the current (stochastic) policy, with known seeds for re-rendering."""
        n = self.st.query_episodes
        seeds = list(range(self.episode_seed, self.episode_seed + n))
        self.episode_seed += n
        trajs = rollout_batch(self.query_envs, self._policy(deterministic=False), seeds, env_id=self.env_id)
        self.pool = (self.pool + [trajs])[-self.st.pool_rounds:]
        if self.source is not None and hasattr(self.source, "remember"):
            self.source.remember(trajs)  # a person's clips are re-rendered from these episodes
        return trajs

    # -- one feedback round ------------------------------------------------------------------------
    def feedback_round(self, step: int) -> None:
        t0 = time.time()
        fresh = self.collect()
        self.refresh_demo_pairs()
        pool = self.pool_episodes()
        n = self.schedule[self.round]
        cands = candidate_pairs(pool, n * self.st.candidates, self.segment_length, self.rng)
        idx = select_pairs(cands, n, self.st.selection, self.rng, self.reward if self.trained_once else None)
        queries = [PairQuery.make(cands[i][0], cands[i][1], run_id=self.run_id) for i in idx]
        self.query_map.update({q.id: q for q in queries})
        assert self.source is not None
        try:
            self.source.post(queries)
        except StopFeedback:
            self.schedule = self.schedule[: self.round]
        self.asked += len(queries)
        self.t["queries"] += time.time() - t0
        self.round += 1
        self.take_answers(step, force_train=not self.trained_once)
        self.diagnose(step, fresh, cands)

    def take_answers(self, step: int, force_train: bool = False) -> bool:
        """Poll the source; train the reward model on anything new. True if the model changed."""
        if self.source is None:
            return False
        try:
            got = self.source.poll(step)
        except StopFeedback:
            got = []
        new = 0
        fresh: list[tuple[Segment, Segment, float]] = []
        for fb in got:
            q = self.query_map.get(fb.query_id)
            if q is None or fb.value is None:
                continue
            assert q.left is not None and q.right is not None
            self.pairs.append((q.left, q.right, float(fb.value)))
            fresh.append(self.pairs[-1])
            self.pair_meta.append((fb.annotator_id, fb.id))
            self.heldout_flags.append(bool(self.heldout_k) and
                                      (len(self.pairs) - 1) % self.heldout_k == self.heldout_offset)
            if fb.id is not None:
                self.fb_ids.append(int(fb.id))
            new += 1
        if new == 0 and not (force_train and self.pairs):
            return False
        if self.trained_once and fresh:  # test, then train: judged by a model that has not seen them
            c, k = pair_accuracy(self.reward, fresh)
            self.prequential[0] += c
            self.prequential[1] += k
        self.train_reward(step)
        return True

    def weighted_pairs(self) -> tuple[list[tuple[Segment, Segment, float]], list[int], list[float] | None]:
        """The pairs to fit, their feedback ids (lineage) and loss weights under the annotator weighting.

        With ``annotator_weighting`` off every label counts fully; otherwise flagged annotators' labels
        are down-weighted or (weight 0) left out, and left out of the model's lineage too.
        """
        held = self.heldout_flags
        if self.store is None:
            ids = [int(fid) for (_, fid), h in zip(self.pair_meta, held, strict=True) if fid is not None and not h]
            demo = [(dp.left, dp.right, dp.label) for dp in self.demo_pairs]
            ids += sorted(self.demo_basis) if self.demo_pairs else []
            return [p for p, h in zip(self.pairs, held, strict=True) if not h] + demo, ids, None
        live = self._live_ids()
        aw: dict[str, float] = {}
        if self.weighting.mode != "off":
            from rlhf_gym.governance.report import training_weights

            aw = training_weights(self.store, self.weighting, run_id=self.run_id)
        pairs, ids, weights = [], [], []
        for pair, (ann, fid), h in zip(self.pairs, self.pair_meta, held, strict=True):
            if h or (fid is not None and fid not in live):
                continue
            w = float(aw.get(ann, 1.0))
            if w > 0:
                pairs.append(pair)
                weights.append(w)
                if fid is not None:
                    ids.append(int(fid))
        if self.demos:
            # read at every fit like the labels: once a demonstrator has withdrawn, the comparisons are rebuilt
            # from the demonstrations still standing, and the ones used are in the model's lineage
            live_demos = self._live_demo_ids()
            if self.demo_basis - live_demos:
                self.build_demo_pairs([d for d in self.demos if d.feedback_id is None or d.feedback_id in live_demos])
            for dp in self.demo_pairs:
                # a pair derives from all of its demonstrations, so their annotators' weights multiply
                w = float(np.prod([aw.get(self.demo_annotator.get(f, ""), 1.0) for f in dp.sources])) \
                    * self.st.demo_weight
                if w > 0:
                    pairs.append((dp.left, dp.right, dp.label))
                    weights.append(w)
            if self.demo_pairs:
                ids += sorted(self.demo_basis)
        return pairs, ids, (weights if self.weighting.mode != "off" or self.demo_pairs else None)

    def _live_demo_ids(self) -> set[int]:
        return {int(fb.id) for fb in self.store.feedback(kind="demo", include_skipped=False) if fb.id is not None}

    def build_demo_pairs(self, demos: Sequence[Any] | None = None) -> int:
        """Synthetic comparisons from demonstrations, D-REX style (Brown, Goo and Niekum 2019): a policy cloned
        from ``demos`` (default: the run's) plays ``st.demo_episodes`` episodes at each of the noise levels
        ``DEMO_NOISE`` (that share of its actions random); clips of the demonstrations are preferred over
        the noisiest-but-one's, and so on down to uniformly random play. Returns how many pairs.

        Why not simply "demonstration clips beat random clips": measured on CartPole, a reward fitted to that
        alone extrapolated to states neither side visits and paid drifting off the track more than
        balancing; the noisy clones' episodes drift, fall and end early, which is what the ranking must cover.
        """
        from rlhf_gym.learners.bc import train_bc
        from rlhf_gym.rollouts import rollout_batch

        demos = list(self.demos if demos is None else demos)
        self.demo_basis = frozenset(int(d.feedback_id) for d in demos if d.feedback_id is not None)
        if not demos:
            self.demo_pairs = []
            return 0
        rng = np.random.default_rng([self.seed, 104_729])  # its own stream: the labels' rng is untouched
        space = self.query_envs[0].action_space
        obs = np.concatenate([np.asarray(d.traj.obs[:-1], np.float32) for d in demos])
        acts = np.concatenate([np.asarray(d.traj.acts) for d in demos])
        groups = np.concatenate([np.full(len(d.traj), i) for i, d in enumerate(demos)])
        if self.discrete:
            fit = train_bc(obs, acts, discrete=True, n_actions=int(space.n), groups=groups, seed=self.seed,
                           device=self.device)
        else:
            fit = train_bc(obs, acts, discrete=False, act_low=space.low, act_high=space.high, groups=groups,
                           seed=self.seed, device=self.device)
        clone = fit.policy()

        levels: list[list[Trajectory]] = [[d.traj for d in demos]]
        base = 900_000_000 + 100_000 * self.seed
        for k, eps in enumerate(DEMO_NOISE):
            def act(o: np.ndarray, eps: float = eps) -> np.ndarray:
                a = np.stack([clone(x) for x in o])
                rand = rng.integers(space.n, size=len(o)) if self.discrete else \
                    rng.uniform(space.low, space.high, size=(len(o), *space.shape)).astype(np.float32)
                pick = rng.random(len(o)) < eps
                return np.where(pick.reshape(-1, *([1] * (a.ndim - 1))), rand, a)

            trajs: list[Trajectory] = []
            while len(trajs) < self.st.demo_episodes:
                seeds = [base + 1000 * k + len(trajs) + i for i in range(len(self.query_envs))]
                trajs += rollout_batch(self.query_envs, act, seeds, env_id=self.env_id)
            levels.append(trajs[: self.st.demo_episodes])
        self.demo_levels = levels
        self.demo_rng = rng
        self.demo_pairs = ranked_pairs(levels, self.st.demo_pairs, self.segment_length, rng,
                                       sources=tuple(sorted(self.demo_basis)))
        self.n_ranked = len(self.demo_pairs)
        return len(self.demo_pairs)

    def refresh_demo_pairs(self) -> None:
        """``demo_vs_policy``: replace the demonstration-vs-policy comparisons with ones against the current
        clip pool (Ibarz et al. 2018): the states the policy now reaches and nobody ranked (the learned reward
        is free to pay them anything) are shown below the demonstrations."""
        if not self.demo_pairs or self.st.demo_vs_policy <= 0 or not self.pool:
            return
        pool = self.pool_episodes()
        fresh = ranked_pairs([self.demo_levels[0], pool], self.st.demo_vs_policy, self.segment_length,
                             self.demo_rng, sources=tuple(sorted(self.demo_basis)))
        self.demo_pairs = self.demo_pairs[:self.n_ranked] + fresh

    def _live_ids(self) -> set[int]:
        # read through the store at every fit: a person who withdrew during the run is out of the next fit
        return {fb.id for fb in self.store.feedback(run_id=self.run_id, kind="pair", include_skipped=False)}

    def heldout_pairs(self) -> list[tuple[Segment, Segment, float]]:
        """The held-out labels still standing (withdrawn ones leave this set too); no round trains on them."""
        live = self._live_ids() if self.store is not None else None
        return [p for p, (_, fid), h in zip(self.pairs, self.pair_meta, self.heldout_flags, strict=True)
                if h and (live is None or fid is None or fid in live)]

    def judge_heldout(self, m: dict[str, Any], warm: bool) -> None:
        """Measure the fitted model on the held-out labels and judge inversion on them.

        The fit's own validation split (``fit_val_accuracy``) is drawn anew each round while the model
        warm-starts, so after the first round it was trained on; it only decides inversion for a cold
        fit when fewer than 4 held-out labels exist.
        """
        m["fit_val_accuracy"] = m.get("heldout_accuracy")
        c, k = pair_accuracy(self.reward, self.heldout_pairs())
        m["heldout_accuracy"] = c / k if k else None
        m["heldout_pairs"] = k
        c_p, k_p = self.prequential
        m["prequential_accuracy"] = c_p / k_p if k_p else None
        m["prequential_pairs"] = k_p
        fit_said = m.get("inverted", False)
        if k >= 4:
            m["inverted"] = looks_inverted(c, k, min_count=4)
        elif warm:
            m["inverted"] = False
        if m["inverted"] and k >= 4:
            m["warning"] = inverted_message(c, k)
        elif fit_said and not m["inverted"]:
            m["warning"] = None

    def train_reward(self, step: int) -> None:
        t0 = time.time()
        pairs, ids, weights = self.weighted_pairs()
        if not pairs:
            self.warnings.append(f"round {self.round}: every label is from an excluded annotator; reward not retrained")
            return
        warm = self.trained_once
        if warm and set(self.fit_ids) - set(ids):
            # a label or demonstration the model was trained on is gone (withdrawn, or its annotator excluded):
            # start from fresh weights, so nothing of it survives in the next model
            reinitialise(self.reward, int(self.rng.integers(2**31)))
            warm = False
        self.fit_ids = list(ids)
        if self.st.renormalise and not self.reward.pixels:
            self.reward.renormalise_inputs(self.fit_states(pairs))
        tc = RewardTrainConfig(flat=self.st.reward_flat)
        pool = self.pool_episodes() if tc.flat > 0 else []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InvertedRewardWarning)
            m = fit_reward_model(self.reward, pairs, self.rng, tc, warm=warm, weights=weights, device=self.device,
                                 unlabelled=pool)
            self.judge_heldout(m, warm=warm)
            if m["inverted"]:  # one fresh restart before believing it
                reinitialise(self.reward, int(self.rng.integers(2**31)))
                m = fit_reward_model(self.reward, pairs, self.rng, tc, warm=False, weights=weights,
                                     device=self.device, unlabelled=pool)
                self.judge_heldout(m, warm=False)
        self.trained_once = True
        if m["inverted"]:
            self.inverted_rounds.append(self.round)
            msg = f"round {self.round}: {m['warning']}"
            self.warnings.append(msg)
            print(f"WARNING: {msg}", flush=True)
            del caught
        elif m.get("warning") and m["warning"] not in self.warnings and not (
                m["labels"] < FEW_LABELS and self.round < len(self.schedule)):  # "only n labels": more rounds will come
            self.warnings.append(m["warning"])
            log.warning(m["warning"])
        extra = sample_segments(self.pool_episodes(), 32, self.segment_length, self.rng) if self.pool else []
        normalise_output(self.reward, pairs, extra)
        self.venv.model = self.reward
        path = self.reward.save(self.run.file(f"reward_models/round_{self.round:02d}.safetensors"))
        if self.store is not None:
            self.model_ids.append(self.store.record_model(path, ids, kind="reward", run_id=self.run_id))
        self.reward.save(self.run.file("reward_model.safetensors"))
        self.relabel()
        self.last_fit = m
        self.t["reward_train"] += time.time() - t0

    def fit_states(self, pairs: Sequence[tuple[Segment, Segment, float]]) -> np.ndarray:
        """The real (not absorbing) observations of ``pairs`` and of the current clip pool's episodes."""
        obs = [s.obs[~s.absorbing] for a, b, _ in pairs for s in (a, b)]
        obs += [np.asarray(t.obs) for t in self.pool_episodes()]
        return np.concatenate(obs)

    def pool_episodes(self) -> list[Trajectory]:
        """Every episode of the clip pool (the rollouts of the last ``pool_rounds`` rounds), oldest first."""
        return [t for ts in self.pool for t in ts]

    def relabel(self) -> None:
        """PEBBLE: recompute every stored reward in SAC's replay buffer with the current model."""
        relabel_replay_buffer(self.algo, self.reward)

    # -- evaluation and metrics ------------------------------------------------------------------
    def evaluate(self, episodes: int) -> np.ndarray:
        """True returns of the greedy policy on ``episodes`` fixed evaluation seeds."""
        return evaluate_policy(self.eval_envs, self._policy(deterministic=True), episodes, batched=True)

    def labels_used(self) -> int:
        return len(self.pairs)

    def diagnose(self, step: int, fresh: list[Trajectory] | None = None,
                 cands: list[tuple[Segment, Segment]] | None = None) -> None:
        t0 = time.time()
        rets = self.evaluate(self.st.round_eval_episodes)
        row: dict[str, Any] = {"round": self.round, "labels": self.labels_used(), "asked": self.asked,
                               "eval_return": float(rets.mean())}
        fit = getattr(self, "last_fit", None)
        if fit:
            row.update(heldout_accuracy=fit.get("heldout_accuracy"), heldout_pairs=fit.get("heldout_pairs"),
                       prequential_accuracy=fit.get("prequential_accuracy"),
                       train_accuracy=fit.get("train_accuracy"), fit_val_accuracy=fit.get("fit_val_accuracy"),
                       reward_inverted=bool(fit.get("inverted")))
        if cands and self.trained_once:
            row["disagreement"] = ensemble_disagreement(self.reward, cands[:64])
        if fresh and self.source is not None and self.source.simulated:
            row.update(reward_correlation(self.reward, fresh, self.segment_length))
        if self.venv.true_returns:
            row["train_true_return"] = float(np.mean(self.venv.true_returns[-20:]))
        self.logger.log(step, **row)
        self.t["eval"] += time.time() - t0
        if self.threshold is not None and self.first_solved is None and rets.mean() >= self.threshold:
            self.first_solved = {"step": step, "labels": self.labels_used()}

    def on_rollout_start(self, step: int) -> None:
        if self.venv.explore is not None and step >= self.unsup_steps:
            self.venv.explore = None  # exploration over: from now on the learned reward
            self.relabel()
        asked = False
        while self.round < len(self.schedule) and step >= self.round_steps[self.round]:
            self.feedback_round(step)
            asked = True
        if asked:  # the round just evaluated the policy
            self.eval_steps = [s for s in self.eval_steps if s > step]
        if self.source is not None and self.source.pending:
            self.take_answers(step)
        while self.eval_steps and step >= self.eval_steps[0]:
            self.eval_steps.pop(0)
            self.diagnose(step)

    def close(self) -> None:
        self.logger.close()
        for env in self.query_envs + self.eval_envs:
            env.close()


def _callback(loop: PreferenceLoop) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class _RoundCallback(BaseCallback):
        def _on_rollout_start(self) -> None:
            t0 = time.perf_counter()
            loop.on_rollout_start(self.num_timesteps)
            loop.t["callback"] += time.perf_counter() - t0

        def _on_step(self) -> bool:
            return True

    return _RoundCallback()

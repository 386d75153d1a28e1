"""Pieces every evaluative learner shares: an MLP, observation scaling, credit assignment, saving.

A learner answers ``act``/``greedy`` for the loop and learns from :class:`Credit` records: one answer
(+1 good, -1 bad) spread over the steps it may judge. Weights are saved with safetensors together with a
small JSON header, and :func:`load_mlp_policy` (registered in ``runs.POLICY_LOADERS`` as ``torch-mlp``)
rebuilds the greedy policy without unpickling anything.

Devices: a learner's network is built on the CPU (a seed gives the same initial weights everywhere) and moved to
the device it is given; its updates run there, and so does acting: each step's observation goes to the network's
device and the answer comes back. For these 64-unit networks and one observation a step that round trip costs
more than the arithmetic on a GPU, so ``--device cpu`` is usually the faster choice for evaluative runs; the
device is honoured anyway, so one command means the same everywhere. Saved weights are CPU tensors.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass(frozen=True)
class Seen:
    """One step the learner took: global step counter, the state, the action; ``asked``: it posted a question
    about this step."""

    step: int
    obs: np.ndarray
    action: int
    episode: int = 0
    asked: bool = False


@dataclass(frozen=True)
class Credit:
    """One answer and the steps it is credited to.

    ``value`` is +1 (good) or -1 (bad). ``steps`` are the (state, action) pairs it may judge with a weight
    each (weights sum to 1): one step with weight 1 when the learner knows which step was judged, or a
    window of recent steps when the answer arrived late and only its time is known.
    """

    value: float
    steps: tuple[tuple[np.ndarray, int, float], ...]
    answer_step: int
    scale: float = 1.0
    """Weight of this record among the others (e.g. 0.5 for a derived one)."""
    annotator: str | None = None
    """Who gave the answer, so its weight can follow that annotator's flags (see :meth:`FeedbackLearner.reweight`)."""
    annotator_weight: float = 1.0
    """The annotator's weight under ``annotator_weighting`` (1 unless flagged): how much the answer counts
    in every update it takes part in (0: it takes part in none)."""


@dataclass(frozen=True)
class Batch:
    """A minibatch of replayed answers, flattened to steps; ``group[i]`` is the answer step ``i`` belongs to."""

    obs: torch.Tensor
    act: torch.Tensor
    weight: torch.Tensor  # credit weight of each step within its answer
    value: torch.Tensor  # the answer (+1/-1), repeated for each of its steps
    group: torch.Tensor
    group_value: torch.Tensor
    group_scale: torch.Tensor
    group_annotator_weight: torch.Tensor  # each answer's annotator weight (1 unless flagged)

    def to(self, device: torch.device | str) -> Batch:
        """Every tensor on ``device`` (the learner's network's)."""
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @classmethod
    def of(cls, credits: Sequence[Credit]) -> Batch:
        obs, act, w, val, grp = [], [], [], [], []
        for g, c in enumerate(credits):
            for o, a, wt in c.steps:
                obs.append(o)
                act.append(a)
                w.append(wt)
                val.append(c.value)
                grp.append(g)
        f = torch.float32
        return cls(torch.as_tensor(np.stack(obs).astype(np.float32)), torch.as_tensor(act, dtype=torch.long),
                   torch.as_tensor(w, dtype=f), torch.as_tensor(val, dtype=f), torch.as_tensor(grp, dtype=torch.long),
                   torch.as_tensor([c.value for c in credits], dtype=f),
                   torch.as_tensor([c.scale for c in credits], dtype=f),
                   torch.as_tensor([c.annotator_weight for c in credits], dtype=f))

    @property
    def step_scale(self) -> torch.Tensor:
        """Each step's weight: its credit share times its answer's scale."""
        return self.weight * self.group_scale[self.group]

    @property
    def step_annotator_weight(self) -> torch.Tensor:
        """Each step's annotator weight (its answer's), to multiply into that step's part of the loss."""
        return self.group_annotator_weight[self.group]


class History:
    """The last few steps taken, by global step counter, for credit assignment by time."""

    def __init__(self, maxlen: int = 64) -> None:
        self._buf: deque[Seen] = deque(maxlen=maxlen)

    def add(self, step: int, obs: np.ndarray, action: int, episode: int = 0) -> Seen:
        seen = Seen(step, np.asarray(obs, np.float32), int(action), episode)
        self._buf.append(seen)
        return seen

    def mark_asked(self, step: int) -> None:
        """Note that the learner posted a question about ``step`` (used to credit answers that arrive late)."""
        for i in range(len(self._buf) - 1, -1, -1):
            if self._buf[i].step == step:
                self._buf[i] = replace(self._buf[i], asked=True)
                return

    def get(self, step: int) -> Seen | None:
        for s in reversed(self._buf):
            if s.step == step:
                return s
        return None

    def window(self, first: int, last: int) -> list[Seen]:
        """Steps ``first..last`` (inclusive) that are still remembered, oldest first."""
        return [s for s in self._buf if first <= s.step <= last]


def credit_known(value: float, seen: Seen, answer_step: int) -> Credit:
    """The learner knows the step judged: all the credit goes to it."""
    return Credit(value, ((seen.obs, seen.action, 1.0),), answer_step)


def credit_by_time(value: float, history: History, answer_step: int, window: tuple[int, int],
                   prefer_asked: bool = False) -> Credit | None:
    """Spread an answer that arrived at ``answer_step`` uniformly over the steps ``window`` steps before.

    This is TAMER's credit assigner with a uniform delay model: a person presses a key between
    ``window[0]`` and ``window[1]`` steps after the action they judge, so each of those steps gets an
    equal share. With ``prefer_asked``, only the steps in the window the learner asked about share it
    (an answer judges a step that was asked about; the learner knows which it asked, not which one this
    answer is for); if none was asked, the whole window does. Returns None when none of those steps is
    remembered.
    """
    lo, hi = window
    seen = history.window(answer_step - hi, answer_step - lo)
    if not seen:
        return None
    if prefer_asked and any(s.asked for s in seen):
        seen = [s for s in seen if s.asked]
    w = 1.0 / len(seen)
    return Credit(value, tuple((s.obs, s.action, w) for s in seen), answer_step)


def feedback_sign(value: float) -> float:
    """Map a stored answer (1.0 good, 0.0 bad, or anything in between) to [-1, 1]."""
    return float(np.clip(2.0 * float(value) - 1.0, -1.0, 1.0))


class ObsScaler:
    """Running mean and standard deviation of observations, so one set of defaults fits every task.

    CartPole's velocities, MountainCar's tiny velocities and Acrobot's sines live on very different
    scales; standardising them is what lets the same network and step size work everywhere.
    """

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)

    def update(self, obs: np.ndarray) -> None:
        x = np.asarray(obs, np.float64).ravel()
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def std(self) -> np.ndarray:
        if self.n < 2:
            return np.ones_like(self.mean)
        return np.sqrt(self.m2 / (self.n - 1)) + 1e-3

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"obs_mean": torch.tensor(self.mean, dtype=torch.float32),
                "obs_std": torch.tensor(self.std, dtype=torch.float32)}


class MLP(nn.Module):
    """obs -> one output per action, with the observation scaling built in (and saved with the weights)."""

    def __init__(self, obs_dim: int, n_out: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = obs_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Tanh()]
            d = h
        layers.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*layers)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.obs_dim, self.n_out, self.hidden = obs_dim, n_out, tuple(hidden)

    def set_scaler(self, scaler: ObsScaler) -> None:
        for k, v in scaler.tensors().items():
            getattr(self, k).copy_(v)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs - self.obs_mean) / self.obs_std)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The highest-output action of each observation in a batch (the policy evaluation runs)."""
        return np.argmax(self.outputs(obs), axis=1)

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """Outputs for one observation (or a batch) as numpy, without building a graph; computed on the
        network's device (the observation goes there, the outputs come back)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, np.float32)).to(self.obs_mean.device)
            return self(x).cpu().numpy()


def as_batch(steps: Sequence[tuple[np.ndarray, int, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obs = torch.as_tensor(np.stack([s[0] for s in steps]).astype(np.float32))
    act = torch.as_tensor([int(s[1]) for s in steps], dtype=torch.long)
    w = torch.as_tensor([float(s[2]) for s in steps], dtype=torch.float32)
    return obs, act, w


def save_mlp(model: MLP, path: str | Path, meta: dict[str, Any]) -> Path:
    """Weights (safetensors) with the architecture and learner metadata in the file header."""
    path = Path(path)
    header = {"obs_dim": str(model.obs_dim), "n_out": str(model.n_out), "hidden": json.dumps(list(model.hidden)),
              "meta": json.dumps(meta)}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=header)
    return path


def load_mlp(path: str | Path, device: torch.device | str | None = None) -> tuple[MLP, dict[str, Any]]:
    """Rebuild an :class:`MLP` saved by :func:`save_mlp` (safetensors: no code is unpickled), on ``device``
    (default: the CPU)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    try:
        model = MLP(int(header["obs_dim"]), int(header["n_out"]), json.loads(header["hidden"]))
    except KeyError as e:
        raise ValueError(f"{path} is not an rlhf-gym policy file (missing {e} in its header)") from e
    model.load_state_dict(load_file(str(path), device="cpu"))
    if device is not None:
        model.to(device)
    model.eval()
    return model, json.loads(header.get("meta", "{}"))


class GreedyPolicy:
    """obs -> argmax of the network's outputs (H for TAMER, logits for policy learners)."""

    def __init__(self, model: MLP) -> None:
        self.model = model

    def __call__(self, obs: np.ndarray) -> int:
        return int(np.argmax(self.model.outputs(obs)))


def load_mlp_policy(run_dir: str | Path, info: dict[str, Any]) -> GreedyPolicy:
    """Policy loader for ``policy.json`` kind ``torch-mlp`` (see ``runs.POLICY_LOADERS``)."""
    path = Path(run_dir) / info["path"]
    if not path.exists():
        raise FileNotFoundError(f"policy weights {path} not found")
    model, _ = load_mlp(path)
    return GreedyPolicy(model)


@dataclass
class LearnerSettings:
    """Defaults shared by every evaluative learner and every task (override with ``--set key=value``)."""

    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3
    weight_decay: float = 1.0
    """Decoupled weight decay (AdamW): keeps the net from memorising a noisy teacher's wrong answers as replay
    grows (0 before 2026-12-08; with a 20%-wrong teacher it, with ``ask_novelty``, kept TAMER solved over the
    1,000 answers after its solve on 10/10 seeds instead of 6/10: README, "Evaluative benchmark")."""
    updates_per_answer: int = 10
    """Gradient steps on replayed answers after each new answer."""
    anneal_after: int = 50
    """From this many answers on, the step size falls as ``lr * anneal_after / answers`` (0: constant).
    With a constant step the net keeps fitting replayed answers and ends up memorising the wrong ones; a
    1/n step (as a running mean's) averages them out instead. (CartPole, 5 seeds per row, 20%-wrong teacher:
    stays solved TAMER 3/5, REINFORCE 3/5, COACH 4/5 with 50; 1/5, 2/5, 2/5 with 0; no row worse.)"""
    replay: bool = True
    """Update on minibatches of every answer so far; ``false`` updates on the newest answer alone (an
    ablation: without replay the net forgets earlier states, see tests/test_learning_checks.py)."""
    batch_size: int = 64
    warmup_steps: int = 1000
    """Steps of random play (no teacher) to set the observation scaling before the first question."""
    ask_rate: float = 0.2
    """Fraction of steps the learner asks about (spread over varied states, see the README; TAMER: 0.05)."""
    ask_novelty: bool = True
    """Ask more often in states unlike those already asked about: a step's chance is ``ask_rate`` times its
    (scaled) distance to the nearest asked state over the running mean of that distance, so the ask rate
    stays about ``ask_rate`` while rare states (a cart near the track's end) get answers too. ``false``: every
    step has the same chance (the default before 2026-12-08)."""
    epsilon: float = 0.05
    """Random-action rate while training (value-based learners)."""
    credit_window: tuple[int, int] = (2, 6)
    """When only the time of an answer is known: it judges one of the steps this many steps before
    (a model of the teacher's reaction time; the simulated delayed teacher uses 2-6, set it for a person)."""
    credit_asked: bool = True
    """With such a teacher, credit an answer only to the steps in its window the learner asked about."""
    hold_when_delayed: bool = False
    """With such a teacher, keep one action on the steps around a question (tried: it did not help on CartPole)."""
    trace_decay: float = 0.35
    """Eligibility-trace decay (COACH)."""
    trace_length: int = 10
    mirror_bad: bool = False
    """Two actions (TAMER): read "wrong" as "the other action was right" too (TAMER's default: on, see tamer.py)."""
    mirror_good: bool = False
    """Two actions (TAMER): also read "right" as "the other action was wrong" (not only "wrong" as "other right")."""
    clip: float = 0.05
    """Policy learners stop pushing a replayed answer once pi(a|s) is past 1 - clip (good) or below clip (bad)."""
    label_noise: float = 0.0
    """The rate of wrong answers the learner assumes: each answer is read as a noisy observation of whether
    the action was right, so one answer contradicting a confident prediction barely moves it. 0: every
    answer is taken at its word (the older losses)."""

    @classmethod
    def for_learner(cls, learner: type[FeedbackLearner], extra: Mapping[str, Any] | None = None) -> LearnerSettings:
        """The settings a learner runs with: the shared defaults, the learner's own, then ``--set`` values."""
        return cls.from_extra({**learner.defaults, **(extra or {})})

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> LearnerSettings:
        from rlhf_gym.config import coerce_setting

        s = cls()
        known = set(s.__dataclass_fields__)
        for k, v in extra.items():
            if k in known:
                cur = getattr(s, k)
                if isinstance(cur, tuple):
                    try:
                        parts = v if isinstance(v, list | tuple) else str(v).replace(",", " ").split()
                        v = tuple(int(x) for x in parts)
                    except (TypeError, ValueError):
                        raise ValueError(f"{k} must be whole numbers separated by commas, got {v!r}") from None
                else:  # bad text for a bool is an error, not False; 2.5 for a whole number is refused
                    v = coerce_setting(k, cur, v)
                setattr(s, k, v)
        if not 0 < s.ask_rate <= 1:
            raise ValueError(f"ask_rate must be in (0, 1], got {s.ask_rate}")
        if not 0 <= s.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {s.label_noise}")
        if s.anneal_after < 0:
            raise ValueError(f"anneal_after must be >= 0, got {s.anneal_after}")
        if s.updates_per_answer < 1 or s.batch_size < 1:
            raise ValueError("updates_per_answer and batch_size must be >= 1")
        return s


class FeedbackLearner:
    """What the training loop needs of an evaluative learner; subclasses define the net, acting and the loss.

    The learner keeps every answer it was given (with the steps it is credited to) and, after
    each new one, takes a few gradient steps on minibatches drawn from all of them. Replaying old answers
    is what keeps a net from forgetting the varied states of early episodes during one long episode of
    near-identical states.
    """

    name = "base"
    n_outputs_per_action = 1
    #: this learner's own defaults over the shared :class:`LearnerSettings` (the same for every task)
    defaults: Mapping[str, Any] = {}

    def __init__(self, obs_dim: int, n_actions: int, rng: np.random.Generator,
                 settings: LearnerSettings | None = None, device: torch.device | str = "cpu") -> None:
        """``device``: a resolved device (``cpu``, ``cuda``, ``cuda:N``) the network is trained and acts on."""
        from rlhf_gym.devices import cpu_seed

        self.s = settings or LearnerSettings.from_extra(dict(self.defaults))
        self.obs_dim, self.n_actions, self.rng = obs_dim, n_actions, rng
        self.device = torch.device(device)
        with cpu_seed(int(rng.integers(2**31))):  # built on the CPU, then moved
            self.model = MLP(obs_dim, n_actions, self.s.hidden)
        self.model.to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.s.lr, weight_decay=self.s.weight_decay)
        self.scaler = ObsScaler(obs_dim)
        self.scaler_frozen = False
        self.replay: list[Credit] = []  # every answer so far that counts (weight > 0), with its credit
        self.records: list[Credit] = []  # every answer so far, also those of excluded annotators (weight 0)
        self.answers = 0
        self._newest = 0  # replay records the newest answer added
        self._asked = np.zeros((0, obs_dim), np.float32)  # scaled states asked about (ask_novelty)
        self._n_asked, self._seen_steps, self._mean_gap = 0, 0, 0.0

    # -- acting -----------------------------------------------------------------------------------
    def observe(self, obs: np.ndarray) -> None:
        """States seen before the scaling is frozen update it (see :func:`warm_up_scaler`)."""
        if not self.scaler_frozen:
            self.scaler.update(obs)

    def freeze_scaler(self) -> None:
        """Fix the observation scaling: a scaling that kept following the visited states would shift the
        net's inputs as the policy improves (a good CartPole policy visits a narrow band of states) and
        undo what it learned."""
        self.scaler_frozen = True
        self.model.set_scaler(self.scaler)

    def greedy(self, obs: np.ndarray) -> int:
        return int(np.argmax(self.model.outputs(obs)))

    def act(self, obs: np.ndarray) -> int:
        raise NotImplementedError

    def should_ask(self, obs: np.ndarray, action: int) -> bool:
        """Ask about a random ``ask_rate`` of steps: varied states teach more per answer than runs of similar ones
        (with ``ask_novelty``, more often where no question was asked yet)."""
        if not self.s.ask_novelty:
            return bool(self.rng.random() < self.s.ask_rate)
        z = ((np.asarray(obs, np.float64).ravel() - self.scaler.mean) / self.scaler.std).astype(np.float32)
        p = self.s.ask_rate
        if self._n_asked:
            gap = float(np.sqrt(((self._asked[: self._n_asked] - z) ** 2).sum(1).min()))
            self._seen_steps += 1
            self._mean_gap += (gap - self._mean_gap) / min(self._seen_steps, 1000)
            p = min(1.0, p * gap / max(self._mean_gap, 1e-8))
        ask = bool(self.rng.random() < p)
        if ask:
            if self._n_asked == len(self._asked):
                self._asked = np.concatenate([self._asked, np.zeros((max(64, len(self._asked)), len(z)), np.float32)])
            self._asked[self._n_asked] = z
            self._n_asked += 1
        return ask

    # -- learning ----------------------------------------------------------------------------------
    def credit(self, value: float, judged: Seen | None, answer_step: int, history: History) -> Credit | None:
        """How one answer is spread over steps: the judged step if known, else a window back in time."""
        if judged is not None:
            return credit_known(value, judged, answer_step)
        return credit_by_time(value, history, answer_step, self.s.credit_window, prefer_asked=self.s.credit_asked)

    def learn(self, value: float, judged: Seen | None, answer_step: int, history: History,
              annotator: str | None = None, weight: float = 1.0) -> None:
        """Take one answer (1.0 good, 0.0 bad), store it and update on a replay of all answers so far.

        ``weight`` is the annotator's weight under ``annotator_weighting``: it multiplies the answer's
        share of every later minibatch loss. An answer with weight 0 is credited and kept aside (it comes
        back if :meth:`reweight` raises its annotator's weight) but never replayed, and takes no update.
        """
        c = self.credit(feedback_sign(value), judged, answer_step, history)
        if c is None:
            return
        records = self.replay_records(c)
        if annotator is not None or weight != 1.0:
            records = [replace(r, annotator=annotator, annotator_weight=weight) for r in records]
        self.records += records
        if weight <= 0:
            return
        self.answers += 1
        self.replay += records
        self._newest = len(records)
        if not self.scaler_frozen:
            self.model.set_scaler(self.scaler)
        for group in self.opt.param_groups:
            group["lr"] = self.step_size()
        for _ in range(self.s.updates_per_answer):
            batch = Batch.of([self.replay[i] for i in self._batch_indices()]).to(self.device)
            loss = self.loss(batch)
            if loss.requires_grad:
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()

    def step_size(self) -> float:
        """The learning rate for the updates after the newest answer (see ``anneal_after``)."""
        k = self.s.anneal_after
        return self.s.lr if k <= 0 or self.answers <= k else self.s.lr * k / self.answers

    def replay_records(self, c: Credit) -> list[Credit]:
        """What one credited answer adds to the replay (learners may derive more records from it)."""
        return [c]

    def reweight(self, weights: Mapping[str, float]) -> None:
        """Give every stored answer its annotator's current weight (annotator id -> weight; missing: 1.0).

        Flags change as labels arrive, so the loop calls this when the weights change: answers of a newly
        excluded annotator leave the replay (later updates ignore them), those of a re-admitted one return.
        """
        self.records = [r if r.annotator is None or float(weights.get(r.annotator, 1.0)) == r.annotator_weight
                        else replace(r, annotator_weight=float(weights.get(r.annotator, 1.0))) for r in self.records]
        self.replay = [r for r in self.records if r.annotator_weight > 0]

    def _batch_indices(self) -> np.ndarray:
        n = len(self.replay)
        if not self.s.replay:
            return np.arange(max(0, n - self._newest), n)
        if n <= self.s.batch_size:
            return np.arange(n)
        return self.rng.choice(n, size=self.s.batch_size, replace=False)

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    # -- saving -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self.model.set_scaler(self.scaler)
        return save_mlp(self.model, path, {"learner": self.name, "answers": self.answers})

"""Simulated preference teachers (after B-Pref), as :class:`FeedbackSource` objects answering pair queries.

Each answers from the clips' true environment reward (``Segment.rews``; absorbing padding pays 0):

- ``oracle``: the clip with the larger return; 0.5 for an exact tie.
- ``stochastic``: Boltzmann-rational, ``P(left) = sigmoid(beta * (R_l - R_r) / range)`` where ``range``
  is the spread of clip returns seen so far, so ``beta`` means the same on every task.
- ``mistake``: the oracle's answer flipped with probability ``epsilon``.
- ``skip``: no answer (``None``) when both clips' returns are in the bottom ``skip`` fraction of the range.
- ``equal``: a tie when the returns differ by less than ``equal`` times the range.
- ``myopic``: later steps of a clip weigh more (``gamma`` per step back from the end).
- ``random``: a fair coin (a control: it carries no information).
- ``position_bias``: with this probability answers "left" whatever the clips (``always_left`` = 1).

Names combine with ``+`` (``"mistake+skip"``); parameters are keyword arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.registry import TeacherRequest, register_teacher
from rlhf_gym.feedback.sources import FeedbackSource
from rlhf_gym.types import Feedback, PairQuery, Query, Segment

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore


@dataclass(frozen=True)
class TeacherParams:
    """Noise and biases of a simulated preference teacher; the defaults are a perfect oracle."""

    beta: float | None = None
    """Boltzmann rationality on range-normalised returns; None = deterministic."""
    epsilon: float = 0.0
    skip: float = 0.0
    equal: float = 0.0
    gamma: float = 1.0
    position_bias: float = 0.0
    random: bool = False

    def __post_init__(self) -> None:
        for name in ("epsilon", "skip", "equal", "position_bias"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"teacher parameter {name} must be in [0, 1], got {v}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"teacher parameter gamma must be in (0, 1], got {self.gamma}")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"teacher parameter beta must be >= 0, got {self.beta}")


#: name -> the parameters it switches on (B-Pref's defaults, with beta and thresholds range-relative)
PRESETS: dict[str, dict[str, Any]] = {
    "oracle": {},
    "stochastic": {"beta": 10.0},
    "mistake": {"epsilon": 0.1},
    "skip": {"skip": 0.1},
    "equal": {"equal": 0.1},
    "myopic": {"gamma": 0.9},
    "random": {"random": True},
    "left-biased": {"position_bias": 0.3},
    "always-left": {"position_bias": 1.0},
}


class SimulatedPreferenceTeacher(FeedbackSource):
    """Answers :class:`PairQuery` from the true reward with configurable noise; answers arrive at once."""

    simulated = True

    def __init__(self, params: TeacherParams, rng: np.random.Generator, annotator_id: str = "oracle",
                 store: FeedbackStore | None = None, run_id: str | None = None) -> None:
        super().__init__(annotator_id, store=store, run_id=run_id)
        self.params = params
        self.rng = rng
        self._ready: list[Feedback] = []
        self._lo = np.inf
        self._hi = -np.inf

    def _return(self, seg: Segment) -> float:
        g = self.params.gamma
        if g >= 1.0:
            return float(seg.rews.sum())
        w = g ** np.arange(len(seg) - 1, -1, -1)
        return float((w * seg.rews).sum())

    def answer(self, q: PairQuery) -> float | None:
        """The label for one pair (1 left, 0 right, 0.5 tie, None skipped); updates the seen range."""
        p = self.params
        assert q.left is not None and q.right is not None
        rl, rr = self._return(q.left), self._return(q.right)
        self._lo, self._hi = min(self._lo, rl, rr), max(self._hi, rl, rr)
        span = self._hi - self._lo
        if p.random:
            return float(self.rng.integers(2))
        if p.position_bias and self.rng.random() < p.position_bias:
            return 1.0
        if p.skip and span > 0 and max(rl, rr) < self._lo + p.skip * span:
            return None
        if abs(rl - rr) <= max(p.equal * span, 1e-9):
            return 0.5
        if p.beta is not None:
            z = float(np.clip(p.beta * (rl - rr) / (span if span > 0 else 1.0), -50, 50))
            label = float(self.rng.random() < 1.0 / (1.0 + np.exp(-z)))
        else:
            label = 1.0 if rl > rr else 0.0
        if p.epsilon and self.rng.random() < p.epsilon:
            label = 1.0 - label
        return label

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, PairQuery):
                raise TypeError(f"a preference teacher answers pair queries, got a {q.kind!r} query")
            self._ready.append(self._record(q, self.answer(q)))

    def _collect(self, step: int | None) -> list[Feedback]:
        out, self._ready = self._ready, []
        return out


def parse_teacher(name: str, **params: Any) -> TeacherParams:
    """Parameters for ``name`` (presets joined by ``+``) overridden by ``params``."""
    merged: dict[str, Any] = {}
    for part in name.split("+"):
        part = part.strip()
        if part not in PRESETS:
            raise ValueError(f"unknown preference teacher {part!r}; choose from {', '.join(PRESETS)} (combine with +)")
        merged.update(PRESETS[part])
    if "eps" in params:
        params["epsilon"] = params.pop("eps")
    unknown = set(params) - set(TeacherParams.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown teacher parameter(s) {', '.join(sorted(unknown))}")
    merged.update(params)
    return TeacherParams(**merged)


def make_preference_teacher(name: str, annotator_id: str | None = None, rng: np.random.Generator | None = None,
                            store: FeedbackStore | None = None, run_id: str | None = None,
                            **params: Any) -> SimulatedPreferenceTeacher:
    """A simulated preference teacher by name (``"oracle"``, ``"mistake+skip"``, ...).

    Registers the annotator (kind ``simulated``) in ``store`` when one is given.
    """
    tp = parse_teacher(name, **params)
    aid = annotator_id or name
    if store is not None:
        store.add_annotator(aid, kind="simulated", meta={"teacher": name, **{k: v for k, v in vars(tp).items()}})
    return SimulatedPreferenceTeacher(tp, rng if rng is not None else np.random.default_rng(0), aid, store, run_id)


def simulated_population(n: int, rng: np.random.Generator, store: FeedbackStore | None = None,
                         run_id: str | None = None, prefix: str = "sim") -> list[SimulatedPreferenceTeacher]:
    """``n`` simulated annotators with different noise and biases, for agreement tests.

    Cycles through: oracle, mistake (5-25%), stochastic (beta 3-30), left-biased (10-40%), myopic,
    equal, always-left. Each gets its own child RNG so one annotator's draws don't shift another's.
    """
    kinds: Sequence[tuple[str, dict[str, Any]]] = (
        ("oracle", {}),
        ("mistake", {"epsilon": float(rng.uniform(0.05, 0.25))}),
        ("stochastic", {"beta": float(rng.uniform(3, 30))}),
        ("left-biased", {"position_bias": float(rng.uniform(0.1, 0.4))}),
        ("myopic", {"gamma": float(rng.uniform(0.8, 0.95))}),
        ("equal", {"equal": float(rng.uniform(0.05, 0.2))}),
        ("always-left", {}),
    )
    seeds = rng.integers(2**31, size=n)
    out = []
    for i in range(n):
        name, params = kinds[i % len(kinds)]
        out.append(make_preference_teacher(name, f"{prefix}-{i:02d}-{name}", np.random.default_rng(int(seeds[i])),
                                           store=store, run_id=run_id, **params))
    return out


def with_params(teacher: SimulatedPreferenceTeacher, **params: Any) -> TeacherParams:
    """A copy of ``teacher``'s parameters with some changed (convenience for sweeps)."""
    return replace(teacher.params, **params)


def _registered_preference_teacher(req: TeacherRequest) -> FeedbackSource:
    """A simulated preference teacher for ``req.name``; ``--set teacher_beta=...`` etc. override its
    parameters; ``mistake`` takes its rate from ``--noise``."""
    params = {k[len("teacher_"):]: v for k, v in req.settings.items() if k.startswith("teacher_")}
    if "mistake" in req.name.split("+"):
        params.setdefault("epsilon", req.noise)
    return SimulatedPreferenceTeacher(parse_teacher(req.name, **params), req.rng(), str(req.annotator_id),
                                      req.store, req.run_id)


_HELP = {
    "oracle": "prefers the clip with the larger true return",
    "stochastic": "Boltzmann-rational (beta 10 on the normalised return difference)",
    "mistake": "the oracle, flipping labels at rate --noise",
    "skip": "skips pairs where both clips are poor",
    "equal": "says 'equal' when returns are within 10% of the range seen",
    "myopic": "discounts the clip's early steps (gamma 0.9)",
    "random": "the control: a fair coin",
    "left-biased": "picks the left clip 30% of the time regardless",
    "always-left": "always picks the left clip (a broken annotator)",
}
for _name in PRESETS:
    register_teacher("preference", _name, combinable=True, settings=("teacher_*",),
                     help=_HELP.get(_name, ""))(_registered_preference_teacher)


@register_teacher("preference", "human", person=True, help="you compare the clips at the terminal")
def terminal_preference_teacher(req: TeacherRequest) -> FeedbackSource:
    from rlhf_gym.feedback.terminal_pairs import TerminalPairSource

    return TerminalPairSource(store=req.store, run_id=req.run_id, annotator_id=req.annotator_id,
                              out_dir=(req.out_dir or Path(".")) / "clips", policy=req.consent)

"""Teachers for ``--feedback tradeoff``: which of two outcomes (vectors of per-objective returns) is better?

Simulated teachers hold hidden true weights ``w`` (``--set teacher_weights=0.3,0.7``; default: drawn from
a uniform Dirichlet with the teacher's own random stream, and recorded) and answer by the utility
``w @ outcome``:

- ``oracle``: the outcome with the larger utility; 0.5 for an exact tie.
- ``noisy``: Boltzmann-rational, ``P(left) = sigmoid(beta * (u_l - u_r) / spread)`` with ``teacher_beta``
  (default 10) and ``spread`` the largest per-objective range of the outcomes seen so far.
- ``random``: a fair coin (a control: it carries no information about anyone's weights).
- ``population``: several simulated annotators with different weights (``teacher_population=
  0.2,0.8;0.8,0.2``, or ``teacher_annotators=N`` drawn at random), each question going to one of them in
  turn; each is its own annotator in the store, so their weights can be learned and compared.

``teacher_ignore=J`` makes a simulated teacher blind to objective ``J`` (its weight is set to 0 when
answering, a robustness case). ``human`` asks a person at the terminal (consent first), showing each
outcome's per-objective returns as a table (and the clip files when the run wrote them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.registry import TeacherRequest, register_teacher
from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback
from rlhf_gym.feedback.terminal_pairs import TerminalComparisonSource
from rlhf_gym.types import Feedback, OutcomeQuery, Query

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

TEACHER_SETTINGS = ("teacher_weights", "teacher_beta", "teacher_ignore", "teacher_population",
                    "teacher_annotators")


def parse_weights(value: Any, k: int | None = None, what: str = "teacher_weights") -> np.ndarray:
    """``"0.3,0.7"`` (or a sequence) -> weights on the simplex; ValueError naming what is wrong."""
    if isinstance(value, str):
        try:
            w = np.array([float(x) for x in value.replace(" ", "").split(",") if x != ""], float)
        except ValueError as e:
            raise ValueError(f"{what} must be comma-separated numbers such as 0.3,0.7, got {value!r}") from e
    else:
        w = np.atleast_1d(np.asarray(value, float))
    if k is not None and len(w) != k:
        raise ValueError(f"{what} has {len(w)} value(s) but the environment has {k} objectives, got {value!r}")
    if len(w) < 2:
        raise ValueError(f"{what} needs one weight per objective (at least 2), got {value!r}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{what} must be non-negative with a positive sum, got {value!r}")
    return w / w.sum()


class SimulatedTradeoffTeacher(FeedbackSource):
    """Answers :class:`OutcomeQuery` from hidden weights; answers arrive at once.

    Args:
        weights: the hidden true weights (what a learner should recover).
        rng: the teacher's own random stream.
        beta: Boltzmann rationality (None: deterministic, the oracle).
        random: answer by a fair coin (the control).
        ignore: objective index the teacher does not look at.
    """

    simulated = True

    def __init__(self, weights: Any, rng: np.random.Generator, annotator_id: str = "sim-oracle",
                 store: FeedbackStore | None = None, run_id: str | None = None, beta: float | None = None,
                 random: bool = False, ignore: int | None = None) -> None:
        super().__init__(annotator_id, store=store, run_id=run_id)
        self.weights = parse_weights(weights)
        if beta is not None and beta < 0:
            raise ValueError(f"teacher_beta must be >= 0, got {beta}")
        if ignore is not None and not 0 <= int(ignore) < len(self.weights):
            raise ValueError(f"teacher_ignore must be an objective index in 0..{len(self.weights) - 1}, got {ignore}")
        self.beta, self.random, self.ignore = beta, random, ignore
        self.rng = rng
        self._ready: list[Feedback] = []
        self._lo: np.ndarray | None = None
        self._hi: np.ndarray | None = None

    @property
    def answering_weights(self) -> np.ndarray:
        """The weights the answers follow (the hidden ones, with an ignored objective set to 0)."""
        w = self.weights.copy()
        if self.ignore is not None:
            w[int(self.ignore)] = 0.0
        return w

    def answer(self, q: OutcomeQuery) -> float:
        """The label for one query (1 left, 0 right, 0.5 tie)."""
        left, right = np.asarray(q.left, float), np.asarray(q.right, float)
        if len(left) != len(self.weights):
            raise ValueError(f"the teacher has {len(self.weights)} weights but the query has {len(left)} objectives")
        both = np.stack([left, right])
        self._lo = both.min(0) if self._lo is None else np.minimum(self._lo, both.min(0))
        self._hi = both.max(0) if self._hi is None else np.maximum(self._hi, both.max(0))
        if self.random:
            return float(self.rng.integers(2))
        w = self.answering_weights
        du = float(w @ (left - right))
        if abs(du) <= 1e-9:
            return 0.5
        if self.beta is None:
            return 1.0 if du > 0 else 0.0
        spread = float((self._hi - self._lo).max()) or 1.0
        z = float(np.clip(self.beta * du / spread, -50, 50))
        return float(self.rng.random() < 1.0 / (1.0 + np.exp(-z)))

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, OutcomeQuery):
                raise TypeError(f"a trade-off teacher answers outcome queries, got a {q.kind!r} query")
            self._ready.append(self._record(q, self.answer(q)))

    def _collect(self, step: int | None) -> list[Feedback]:
        out, self._ready = self._ready, []
        return out


class PopulationSource(FeedbackSource):
    """Several simulated annotators; each posted query goes to the next one in turn (and is assigned to
    them in the store), so every answer is recorded under the annotator who gave it."""

    simulated = True

    def __init__(self, members: Sequence[SimulatedTradeoffTeacher], annotator_id: str = "sim-population",
                 store: FeedbackStore | None = None, run_id: str | None = None) -> None:
        if not members:
            raise ValueError("a population needs at least one annotator")
        super().__init__(annotator_id, store=store, run_id=run_id)
        self.members = list(members)
        self._turn = 0

    def post(self, queries: Sequence[Query]) -> None:  # each query to one member, assigned to them
        for q in queries:
            active = [m for m in self.members if not self._withdrawn(m.annotator_id)]
            if not active:
                self.stopped = True
                raise StopFeedback("every annotator of the population has withdrawn")
            m = active[self._turn % len(active)]
            self._turn += 1
            m.post([q])
            self._pending[q.id] = q

    def _withdrawn(self, aid: str) -> bool:
        """A member who withdrew is asked nothing more (the store would refuse their answers anyway)."""
        row = self.store.annotator(aid) if self.store is not None else None
        return row is not None and row.withdrawn_at is not None

    def poll(self, step: int | None = None) -> list[Feedback]:
        out = []
        for m in self.members:
            for fb in m.poll(step):
                self._pending.pop(fb.query_id, None)
                out.append(fb)
        return out

    def _submit(self, queries: list[Query]) -> None:  # pragma: no cover - post() is overridden
        raise NotImplementedError

    def _collect(self, step: int | None) -> list[Feedback]:  # pragma: no cover - poll() is overridden
        return []

    @property
    def hidden_weights(self) -> dict[str, list[float]]:
        return {m.annotator_id: m.weights.tolist() for m in self.members}


def _beta(req: TeacherRequest, default: float | None) -> float | None:
    b = req.settings.get("teacher_beta", default)
    return None if b is None else float(b)


def _ignore(req: TeacherRequest) -> int | None:
    v = req.settings.get("teacher_ignore")
    if v is None:
        return None
    if not isinstance(v, int):
        raise ValueError(f"teacher_ignore must be an objective index (an integer), got {v!r}")
    return v


def _hidden(req: TeacherRequest, k: int | None) -> np.ndarray:
    if "teacher_weights" in req.settings:
        return parse_weights(req.settings["teacher_weights"], k)
    if k is None:
        raise ValueError("a simulated trade-off teacher needs teacher_weights (or the number of objectives)")
    return req.rng("weights").dirichlet(np.ones(k))


def _k(req: TeacherRequest) -> int | None:
    k = req.settings.get("n_objectives")
    return int(k) if k is not None else None


def _simulated(req: TeacherRequest, beta: float | None, random: bool = False) -> FeedbackSource:
    w = _hidden(req, _k(req))
    aid = str(req.annotator_id)
    return SimulatedTradeoffTeacher(w, req.rng(), aid, req.store, req.run_id, beta=beta, random=random,
                                    ignore=_ignore(req))


_SIM_HELP = "hidden weights teacher_weights=0.3,0.7 (default: random, recorded)"


@register_teacher("tradeoff", "oracle", settings=TEACHER_SETTINGS, help=f"picks the larger utility; {_SIM_HELP}")
def oracle_teacher(req: TeacherRequest) -> FeedbackSource:
    return _simulated(req, beta=None)


@register_teacher("tradeoff", "noisy", settings=TEACHER_SETTINGS, help=f"Boltzmann-rational (teacher_beta=10); {_SIM_HELP}")
def noisy_teacher(req: TeacherRequest) -> FeedbackSource:
    return _simulated(req, beta=_beta(req, 10.0))


@register_teacher("tradeoff", "random", settings=TEACHER_SETTINGS, help="a fair coin (control)")
def random_teacher(req: TeacherRequest) -> FeedbackSource:
    return _simulated(req, beta=None, random=True)


@register_teacher("tradeoff", "population", settings=TEACHER_SETTINGS,
                  help="several annotators with different weights (teacher_population=0.2,0.8;0.8,0.2 or teacher_annotators=N)")
def population_teacher(req: TeacherRequest) -> FeedbackSource:
    k = _k(req)
    spec = req.settings.get("teacher_population")
    if spec is not None:
        weights = [parse_weights(part, k, "teacher_population") for part in str(spec).split(";") if part.strip()]
    else:
        n = int(req.settings.get("teacher_annotators", 3))
        if n < 1 or k is None:
            raise ValueError(f"teacher_annotators must be >= 1, got {n}")
        weights = [req.rng(f"population-weights-{i}").dirichlet(np.ones(k)) for i in range(n)]
    beta = _beta(req, None)
    members = []
    for i, w in enumerate(weights):
        aid = f"{req.annotator_id}-{i:02d}"
        if req.store is not None:
            req.store.add_annotator(aid, kind="simulated", meta={"teacher": "population", "weights": w.tolist(),
                                                                  "beta": beta})
        members.append(SimulatedTradeoffTeacher(w, req.rng(f"member-{i}"), aid, req.store, req.run_id, beta=beta,
                                                ignore=_ignore(req)))
    return PopulationSource(members, str(req.annotator_id), req.store, req.run_id)


PROMPT = "Which outcome do you prefer? [1] first  [2] second  [=] equally good  [s] can't tell  [q] stop: "


def outcome_table(q: OutcomeQuery) -> str:
    """The two outcomes' per-objective returns as a plain-text table."""
    names = list(q.objectives) or [f"objective {i}" for i in range(len(q.left))]
    width = max(10, *(len(n) for n in names))
    head = "  " + "outcome".ljust(12) + "".join(n.rjust(width + 2) for n in names)
    rows = [head]
    for label, vec in (("[1] first", q.left), ("[2] second", q.right)):
        rows.append("  " + label.ljust(12) + "".join(f"{v:.2f}".rjust(width + 2) for v in vec))
    return "\n".join(rows)


class TerminalOutcomeSource(TerminalComparisonSource):
    """A person comparing two outcomes at the terminal (consent first); ``input_fn``/``out`` injectable.

    Answers: ``1`` first, ``2`` second, ``=`` equally good, ``s`` can't tell (skipped), ``q`` stop
    (answers so far are kept). Anything else asks again.
    """

    query_type = OutcomeQuery
    prompt = PROMPT

    def show(self, q: OutcomeQuery) -> None:
        self.out("\nTwo outcomes (returns per objective; higher is better on each):")
        self.out(outcome_table(q))
        clips = [(n, c) for n, c in (("first", q.left_clip), ("second", q.right_clip)) if c]
        for n, c in clips:
            self.out(f"  clip of the {n}: {c}")


@register_teacher("tradeoff", "human", person=True, help="you compare two outcomes' returns at the terminal")
def terminal_tradeoff_teacher(req: TeacherRequest) -> FeedbackSource:
    return TerminalOutcomeSource(str(req.annotator_id), store=req.store, run_id=req.run_id, policy=req.consent)

"""Core data types shared by every stage of the pipeline.

All are frozen dataclasses validated in ``__post_init__`` so a malformed record fails where it is
made, not three stages later. Arrays are numpy; ``to_dict``/``from_dict`` give a JSON-safe form
used by the store and the label exports.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

QueryKind = Literal["step", "pair", "demo", "action", "outcome"]


def new_id(prefix: str) -> str:
    """A fresh, globally unique id with a readable prefix (``q-3f2a...``)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _arr(x: Any, dtype: Any = None) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    a.setflags(write=False)
    return a


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


@dataclass(frozen=True)
class Transition:
    """One environment step, with Gymnasium's ``terminated`` and ``truncated`` kept apart."""

    obs: np.ndarray
    action: Any
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool


@dataclass(frozen=True)
class Trajectory:
    """One episode (or the unfinished tail of one).

    ``obs`` has one more entry than ``acts``: ``obs[t]`` is the state ``acts[t]`` was taken in and
    ``obs[t + 1]`` the state it led to. ``terminated`` means the MDP ended (pole fell, goal reached);
    ``truncated`` means a time limit or an outside stop cut it, so the last state is not absorbing.
    """

    obs: np.ndarray
    acts: np.ndarray
    rews: np.ndarray
    terminated: bool = False
    truncated: bool = False
    env_id: str | None = None
    seed: int | None = None
    id: str = field(default_factory=lambda: new_id("traj"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _arr(self.obs))
        object.__setattr__(self, "acts", _arr(self.acts))
        object.__setattr__(self, "rews", _arr(self.rews, np.float64))
        if len(self.obs) != len(self.acts) + 1:
            raise ValueError(
                f"Trajectory needs len(obs) == len(acts) + 1, got {len(self.obs)} obs and {len(self.acts)} acts"
            )
        if len(self.rews) != len(self.acts):
            raise ValueError(f"Trajectory needs one reward per action, got {len(self.rews)} for {len(self.acts)}")
        if self.terminated and self.truncated:
            raise ValueError("a trajectory cannot be both terminated and truncated")

    def __len__(self) -> int:
        return len(self.acts)

    @property
    def ret(self) -> float:
        """Undiscounted sum of the environment's reward."""
        return float(self.rews.sum())

    def transitions(self) -> list[Transition]:
        n = len(self)
        return [
            Transition(
                self.obs[t],
                self.acts[t],
                float(self.rews[t]),
                self.obs[t + 1],
                terminated=self.terminated and t == n - 1,
                truncated=self.truncated and t == n - 1,
            )
            for t in range(n)
        ]


@dataclass(frozen=True)
class Segment:
    """A fixed-length clip cut from a trajectory, for preference queries.

    Steps past the end of a terminated episode are padding for the absorbing state: ``absorbing[t]``
    is True there, the environment reward is 0 and ``obs``/``acts`` repeat the last real values
    (a reward model sees the absorbing flag and learns that state's own reward).
    """

    obs: np.ndarray
    acts: np.ndarray
    next_obs: np.ndarray
    rews: np.ndarray
    absorbing: np.ndarray
    traj_id: str | None = None
    start: int = 0
    env_id: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("obs", "acts", "next_obs", "rews", "absorbing"):
            dtype = np.float64 if name == "rews" else (bool if name == "absorbing" else None)
            object.__setattr__(self, name, _arr(getattr(self, name), dtype))
        n = len(self.acts)
        for name in ("obs", "next_obs", "rews", "absorbing"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Segment.{name} has length {len(getattr(self, name))}, expected {n}")
        if n == 0:
            raise ValueError("a segment needs at least one step")

    def __len__(self) -> int:
        return len(self.acts)

    @property
    def ret(self) -> float:
        return float(self.rews.sum())

    def to_dict(self, codec: Any = None) -> dict[str, Any]:
        """JSON-safe form. Image observations become compressed frames (files through the store's
        ``codec``, else inline base64), never lists of pixels (:mod:`rlhf_gym.store.frames`)."""
        from rlhf_gym.store.frames import encode_array

        return {
            "obs": encode_array(self.obs, codec),
            "acts": self.acts.tolist(),
            "next_obs": encode_array(self.next_obs, codec),
            "rews": self.rews.tolist(),
            "absorbing": self.absorbing.tolist(),
            "traj_id": self.traj_id,
            "start": self.start,
            "env_id": self.env_id,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], codec: Any = None) -> Segment:
        from rlhf_gym.store.frames import decode_array

        return cls(**{**d, "obs": decode_array(d["obs"], codec), "next_obs": decode_array(d["next_obs"], codec)})


@dataclass(frozen=True)
class Query:
    """Something a feedback source is asked. Subclasses say what."""

    kind: ClassVar[QueryKind]
    id: str
    run_id: str | None
    created_at: float

    def payload(self, codec: Any = None) -> dict[str, Any]:
        """JSON-safe content; ``codec`` (a store's frames folder) keeps pixel clips out of the JSON."""
        raise NotImplementedError

    def to_dict(self, codec: Any = None) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "run_id": self.run_id, "created_at": self.created_at,
                "payload": self.payload(codec)}

    @staticmethod
    def from_dict(d: dict[str, Any], codec: Any = None) -> Query:
        cls = QUERY_KINDS.get(d.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown query kind {d.get('kind')!r}; expected one of {', '.join(QUERY_KINDS)}")
        if cls is PairQuery:
            return PairQuery._from_payload(d["id"], d.get("run_id"), float(d["created_at"]), d["payload"], codec)
        return cls._from_payload(d["id"], d.get("run_id"), float(d["created_at"]), d["payload"])


@dataclass(frozen=True)
class StepQuery(Query):
    """Was ``action`` right in ``obs``? Asked about step ``step`` of episode ``episode``."""

    kind: ClassVar[QueryKind] = "step"
    obs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    action: Any = 0
    step: int = 0
    episode: int = 0
    frame_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _arr(self.obs))

    @classmethod
    def make(cls, obs: np.ndarray, action: Any, step: int, episode: int, run_id: str | None = None,
             frame_path: str | None = None) -> StepQuery:
        return cls(new_id("q"), run_id, time.time(), obs=obs, action=action, step=step, episode=episode,
                   frame_path=frame_path)

    def payload(self, codec: Any = None) -> dict[str, Any]:
        return {"obs": self.obs.tolist(), "action": _jsonable(self.action), "step": self.step,
                "episode": self.episode, "frame_path": self.frame_path}

    @classmethod
    def _from_payload(cls, id: str, run_id: str | None, created_at: float, p: dict[str, Any]) -> StepQuery:
        return cls(id, run_id, created_at, obs=np.asarray(p["obs"]), action=p["action"], step=int(p["step"]),
                   episode=int(p["episode"]), frame_path=p.get("frame_path"))


@dataclass(frozen=True)
class PairQuery(Query):
    """Which of two clips is better? Label 1.0 = left, 0.0 = right, 0.5 = equally good."""

    kind: ClassVar[QueryKind] = "pair"
    left: Segment | None = None
    right: Segment | None = None

    def __post_init__(self) -> None:
        if self.left is None or self.right is None:
            raise ValueError("a pair query needs both a left and a right segment")

    @classmethod
    def make(cls, left: Segment, right: Segment, run_id: str | None = None) -> PairQuery:
        return cls(new_id("q"), run_id, time.time(), left=left, right=right)

    def payload(self, codec: Any = None) -> dict[str, Any]:
        assert self.left is not None and self.right is not None
        return {"left": self.left.to_dict(codec), "right": self.right.to_dict(codec)}

    @classmethod
    def _from_payload(cls, id: str, run_id: str | None, created_at: float, p: dict[str, Any],
                      codec: Any = None) -> PairQuery:
        return cls(id, run_id, created_at, left=Segment.from_dict(p["left"], codec),
                   right=Segment.from_dict(p["right"], codec))


@dataclass(frozen=True)
class DemoQuery(Query):
    """Please show how it is done: play ``env_id`` from ``seed`` for at most ``max_steps``."""

    kind: ClassVar[QueryKind] = "demo"
    env_id: str = ""
    seed: int = 0
    max_steps: int = 500

    @classmethod
    def make(cls, env_id: str, seed: int, max_steps: int = 500, run_id: str | None = None) -> DemoQuery:
        return cls(new_id("q"), run_id, time.time(), env_id=env_id, seed=seed, max_steps=max_steps)

    def payload(self, codec: Any = None) -> dict[str, Any]:
        return {"env_id": self.env_id, "seed": self.seed, "max_steps": self.max_steps}

    @classmethod
    def _from_payload(cls, id: str, run_id: str | None, created_at: float, p: dict[str, Any]) -> DemoQuery:
        return cls(id, run_id, created_at, env_id=p["env_id"], seed=int(p["seed"]), max_steps=int(p["max_steps"]))


@dataclass(frozen=True)
class ActionQuery(Query):
    """Which action would you take in ``obs``? (DAgger: the learner visited it; the teacher labels it.)

    ``seed`` (the episode's reset seed) and ``actions`` (every action taken in that episode before
    ``obs``) let a viewer replay the episode to this state and draw it (:mod:`rlhf_gym.render`); both are
    None in queries made before they were recorded. ``step`` counts environment steps over the whole run.
    The answer is a :class:`Feedback` with ``value=None`` and ``data={"action": ...}``.
    """

    kind: ClassVar[QueryKind] = "action"
    obs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    env_id: str = ""
    step: int = 0
    episode: int = 0
    frame_path: str | None = None
    seed: int | None = None
    actions: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _arr(self.obs))
        if self.seed is not None:
            if isinstance(self.seed, bool) or not float(self.seed).is_integer():
                raise ValueError(f"ActionQuery.seed must be an integer or None, got {self.seed!r}")
            object.__setattr__(self, "seed", int(self.seed))
        if self.actions is not None:
            object.__setattr__(self, "actions", tuple(_jsonable(np.asarray(a)) for a in self.actions))

    @classmethod
    def make(cls, obs: np.ndarray, env_id: str, step: int = 0, episode: int = 0, run_id: str | None = None,
             frame_path: str | None = None, seed: int | None = None,
             actions: Any = None) -> ActionQuery:
        return cls(new_id("q"), run_id, time.time(), obs=obs, env_id=env_id, step=step, episode=episode,
                   frame_path=frame_path, seed=seed, actions=None if actions is None else tuple(actions))

    def payload(self, codec: Any = None) -> dict[str, Any]:
        return {"obs": self.obs.tolist(), "env_id": self.env_id, "step": self.step, "episode": self.episode,
                "frame_path": self.frame_path, "seed": self.seed,
                "actions": None if self.actions is None else list(self.actions)}

    @classmethod
    def _from_payload(cls, id: str, run_id: str | None, created_at: float, p: dict[str, Any]) -> ActionQuery:
        acts = p.get("actions")
        if acts is not None and not isinstance(acts, list):
            raise ValueError(f"ActionQuery.actions must be a list or null, got {type(acts).__name__}")
        return cls(id, run_id, created_at, obs=np.asarray(p["obs"]), env_id=str(p.get("env_id", "")),
                   step=int(p.get("step", 0)), episode=int(p.get("episode", 0)), frame_path=p.get("frame_path"),
                   seed=p.get("seed"), actions=None if acts is None else tuple(acts))


@dataclass(frozen=True)
class OutcomeQuery(Query):
    """Which of two outcomes is better? Each is a vector of per-objective returns (one episode's, or a
    policy's mean), optionally with a clip of it. Label 1.0 = left, 0.0 = right, 0.5 = equally good."""

    kind: ClassVar[QueryKind] = "outcome"
    left: np.ndarray = field(default_factory=lambda: np.zeros(0))
    right: np.ndarray = field(default_factory=lambda: np.zeros(0))
    objectives: tuple[str, ...] = ()
    left_clip: str | None = None
    right_clip: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the outcomes came from (policy index, episode seed), for the record."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "left", _arr(self.left, np.float64))
        object.__setattr__(self, "right", _arr(self.right, np.float64))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        if self.left.ndim != 1 or self.left.shape != self.right.shape or len(self.left) < 2:
            raise ValueError(f"an outcome query needs two vectors of the same length >= 2, got {self.left.shape} "
                             f"and {self.right.shape}")
        if self.objectives and len(self.objectives) != len(self.left):
            raise ValueError(f"{len(self.objectives)} objective names for {len(self.left)} objectives")
        if not (np.isfinite(self.left).all() and np.isfinite(self.right).all()):
            raise ValueError("outcome vectors must be finite")

    @classmethod
    def make(cls, left: Any, right: Any, objectives: Any = (), run_id: str | None = None,
             left_clip: str | None = None, right_clip: str | None = None,
             meta: dict[str, Any] | None = None) -> OutcomeQuery:
        return cls(new_id("q"), run_id, time.time(), left=left, right=right, objectives=tuple(objectives),
                   left_clip=left_clip, right_clip=right_clip, meta=dict(meta or {}))

    def payload(self, codec: Any = None) -> dict[str, Any]:
        return {"left": self.left.tolist(), "right": self.right.tolist(), "objectives": list(self.objectives),
                "left_clip": self.left_clip, "right_clip": self.right_clip, "meta": self.meta}

    @classmethod
    def _from_payload(cls, id: str, run_id: str | None, created_at: float, p: dict[str, Any]) -> OutcomeQuery:
        return cls(id, run_id, created_at, left=np.asarray(p["left"], float), right=np.asarray(p["right"], float),
                   objectives=tuple(p.get("objectives") or ()), left_clip=p.get("left_clip"),
                   right_clip=p.get("right_clip"), meta=dict(p.get("meta") or {}))


@dataclass(frozen=True)
class Feedback:
    """One answer to one query, as stored.

    ``value`` is ``None`` when the annotator skipped. Evaluative: 1.0 good, 0.0 bad. Preference:
    probability the left clip is better (1.0, 0.0, or 0.5 for a tie). Demonstration: ``None`` with
    the episode in ``data``. ``step`` is the environment step counter when the answer was given,
    which can be later than the step it judges (a person's reaction delay).
    """

    query_id: str
    annotator_id: str
    value: float | None
    asked_at: float
    answered_at: float
    step: int | None = None
    data: dict[str, Any] | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.value is not None:
            v = float(self.value)
            if not np.isfinite(v):
                raise ValueError(f"feedback value must be finite, got {self.value!r}")
            object.__setattr__(self, "value", v)
        if self.answered_at < self.asked_at - 1e-6:
            raise ValueError("feedback answered before it was asked")

    @property
    def skipped(self) -> bool:
        return self.value is None and self.data is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "query_id": self.query_id, "annotator_id": self.annotator_id, "value": self.value,
                "asked_at": self.asked_at, "answered_at": self.answered_at, "step": self.step, "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Feedback:
        return cls(query_id=d["query_id"], annotator_id=d["annotator_id"], value=d.get("value"),
                   asked_at=float(d["asked_at"]), answered_at=float(d["answered_at"]), step=d.get("step"),
                   data=d.get("data"), id=d.get("id"))


#: query kind -> class (the ``kind`` stored with every query); a new kind of question adds itself here
QUERY_KINDS: dict[str, type[Query]] = {"step": StepQuery, "pair": PairQuery, "demo": DemoQuery, "action": ActionQuery,
                                     "outcome": OutcomeQuery}

"""The one place where ``--teacher NAME`` becomes a feedback source, for every feedback type.

A teacher module registers a factory per name with :func:`register_teacher`; :func:`make_teacher` resolves
a :class:`TeacherRequest` to a :class:`~rlhf_gym.feedback.sources.FeedbackSource`. The annotator id, the
annotator's row in the store and the teacher's random stream are settled here, once, so a person and a
simulated teacher really are swapped by one argument. ``web`` is registered for every feedback type: the
annotation server takes any query, and with no ``--annotator`` its queries are open to every consenting
annotator (whoever answers is recorded as the annotator).

A new feedback type adds its teachers by registering them in its own module and naming that module in
:data:`TEACHER_MODULES` (imported the first time that feedback type asks for a teacher).
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rlhf_gym.feedback.sources import FeedbackSource
    from rlhf_gym.governance.consent import FeedbackPolicy
    from rlhf_gym.store import FeedbackStore

#: feedback type -> modules whose import registers its teachers
TEACHER_MODULES: dict[str, list[str]] = {
    "evaluative": ["rlhf_gym.feedback.teachers_evaluative"],
    "preference": ["rlhf_gym.feedback.teachers_preference"],
    "demonstration": ["rlhf_gym.feedback.teachers_demonstration"],
    "tradeoff": ["rlhf_gym.feedback.teachers_tradeoff"],
}

ANY = "*"
"""Feedback type of a teacher that serves every type (the web annotation server)."""


@dataclass(frozen=True)
class TeacherRequest:
    """What a teacher factory is given: the run, where answers go, and the teacher's own settings."""

    feedback: str
    name: str
    """The name as given, e.g. ``mistake+skip``."""
    env_id: str
    seed: int = 0
    store: FeedbackStore | None = None
    run_id: str | None = None
    annotator_id: str | None = None
    """Resolved by :func:`make_teacher` before the factory sees it (``None`` only for an open web source)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The ``--set`` values this teacher declared (see :func:`register_teacher`)."""
    noise: float = 0.2
    server: str | None = None
    token: str | None = None
    out_dir: Path | None = None
    """Where a person's frames and clips are written."""
    log: Callable[[str], None] = print
    consent: FeedbackPolicy | None = None
    """The project's purpose and consent text shown to a person before their first answer (default text if None)."""

    def rng(self, purpose: str = "answers") -> np.random.Generator:
        """The teacher's own random stream, derived from the run seed and the teacher's name.

        Teachers with different names (oracle, mistake, stochastic...) draw from independent streams, so
        a robustness row differs from the oracle's wherever its noise changes a label, and no teacher's
        draws shift another component's.
        """
        key = zlib.crc32(f"{self.feedback}/{self.name}/{purpose}".encode())
        return np.random.default_rng([int(self.seed), key])


Factory = Callable[[TeacherRequest], "FeedbackSource"]


@dataclass(frozen=True)
class TeacherEntry:
    feedback: str
    name: str
    factory: Factory
    person: bool = False
    """A person answers (terminal or browser): annotator ids are pseudonyms, answers arrive at their pace."""
    combinable: bool = False
    """Simulated noise models that combine with ``+`` (``mistake+skip``)."""
    settings: tuple[str, ...] = ()
    """``--set`` keys this teacher reads (prefix matches end with ``*``, e.g. ``teacher_*``)."""
    help: str = ""


_REGISTRY: dict[tuple[str, str], TeacherEntry] = {}


def register_teacher(feedback: str, name: str, *, person: bool = False, combinable: bool = False,
                     settings: tuple[str, ...] = (), help: str = "") -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` as the teacher ``name`` for ``feedback`` (``ANY`` for every type)."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[(feedback, name)] = TeacherEntry(feedback, name, factory, person, combinable, settings, help)
        return factory

    return deco


def _load(feedback: str) -> None:
    for mod in TEACHER_MODULES.get(feedback, []) + ["rlhf_gym.feedback.web_teacher"]:
        importlib.import_module(mod)


def teachers(feedback: str) -> dict[str, TeacherEntry]:
    """Every teacher registered for ``feedback`` (including those serving every type), by name."""
    _load(feedback)
    out = {n: e for (f, n), e in _REGISTRY.items() if f == feedback}
    out.update({n: e for (f, n), e in _REGISTRY.items() if f == ANY and n not in out})
    return out


def resolve(feedback: str, name: str) -> TeacherEntry:
    """The entry for ``name`` (``a+b`` when every part is a combinable teacher); ValueError naming the choices."""
    known = teachers(feedback)
    if name in known:
        return known[name]
    parts = name.split("+")
    if len(parts) > 1 and all(p in known and known[p].combinable for p in parts):
        return known[parts[0]]
    combin = sorted(n for n, e in known.items() if e.combinable)
    hint = f" (combine {', '.join(combin)} with +)" if combin else ""
    raise ValueError(f"--teacher for {feedback} feedback must be one of {', '.join(sorted(known))}{hint}, got {name!r}")


def teacher_settings(feedback: str, name: str) -> tuple[str, ...]:
    """The ``--set`` keys the named teacher reads (all parts of a combined name)."""
    known = teachers(feedback)
    keys: list[str] = []
    for part in name.split("+"):
        if part in known:
            keys += known[part].settings
    return tuple(dict.fromkeys(keys))


def is_person(feedback: str, name: str) -> bool:
    return resolve(feedback, name).person


def make_teacher(req: TeacherRequest) -> FeedbackSource:
    """The feedback source ``req.name`` names, with its annotator registered in ``req.store``.

    Annotator ids: ``--annotator`` if given; else ``sim-NAME`` for simulated teachers, a fresh pseudonym
    for a person at the terminal, and none for the web server (open to every consenting annotator).
    """
    from dataclasses import replace

    from rlhf_gym.types import new_id

    entry = resolve(req.feedback, req.name)
    aid = req.annotator_id
    if aid is None and entry.name != "web":
        aid = new_id("person") if entry.person else f"sim-{req.name}"
    if aid is not None and req.store is not None:
        meta = None if entry.person else {"teacher": req.name}
        req.store.add_annotator(aid, kind="human" if entry.person else "simulated", meta=meta)
    return entry.factory(replace(req, annotator_id=aid))

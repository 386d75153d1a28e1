"""``--teacher human`` for clip comparisons: a person at the terminal compares two rendered clips.

Each clip is re-rendered by replaying its episode (``env_id``, ``seed`` and the actions taken) with
``render_mode="rgb_array"``, written as a GIF/MP4 (paths printed), plus one side-by-side PNG of
key frames. The prompt takes ``1`` (left better), ``2`` (right better), ``=`` (equally good),
``s`` (can't tell: skipped) or ``q`` (stop; answers so far are kept). Anything else asks again.
Consent is asked once, before the first question. A terminal prompt blocks, so answers arrive when
``poll`` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.feedback.sources import FeedbackSource, StopFeedback, echo
from rlhf_gym.types import Feedback, PairQuery, Query, Segment, Trajectory, new_id

if TYPE_CHECKING:
    from rlhf_gym.governance.consent import FeedbackPolicy
    from rlhf_gym.store import FeedbackStore

ANSWERS = {"1": 1.0, "2": 0.0, "=": 0.5, "s": None}
PROMPT = "Which clip is better? [1] left  [2] right  [=] equally good  [s] can't tell  [q] stop: "


def render_segment(seg: Segment, prefix_acts: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames of ``seg``, replayed from its episode's seed and actions (empty if it can't be replayed).

    ``prefix_acts`` are the episode's actions before the clip (needed when ``seg.start > 0``).
    Absorbing padding repeats the final frame, greyed out, so "the episode had ended" is visible.
    """
    if seg.env_id is None or seg.seed is None or (seg.start > 0 and prefix_acts is None):
        return []
    from rlhf_gym.envs import make_env
    from rlhf_gym.render import grey_out, replay_frames

    real = int((~seg.absorbing).sum())
    prefix = list(prefix_acts[: seg.start]) if prefix_acts is not None else []
    env = make_env(seg.env_id, render_mode="rgb_array")
    try:
        frames = replay_frames(env, seg.seed, prefix + list(seg.acts[:real]), start=seg.start)
    finally:
        env.close()
    if frames and real < len(seg):
        frames += grey_out(frames[-1], len(seg) - real)
    return frames


class TerminalComparisonSource(FeedbackSource):
    """A person comparing two things at the terminal, one question at a time, consent first.

    Subclasses say what they compare (:attr:`query_type`) and how it is shown (:meth:`show`); answers
    are ``1`` first, ``2`` second, ``=`` equally good, ``s`` can't tell (skipped), ``q`` stop (answers so
    far are kept). Anything else asks again.
    """

    simulated = False
    query_type: type[Query] = Query
    prompt: str = PROMPT

    def __init__(self, annotator_id: str, store: FeedbackStore | None = None, run_id: str | None = None,
                 input_fn: Callable[[str], str] = input, out: Callable[[str], None] = print,
                 ask_consent: bool = True, policy: FeedbackPolicy | None = None) -> None:
        super().__init__(annotator_id, store=store, run_id=run_id)
        self.policy = policy
        self.input_fn, self.out = input_fn, out
        self.ask_consent = ask_consent
        self._consented = False
        self._queue: list[Query] = []

    def _submit(self, queries: list[Query]) -> None:
        for q in queries:
            if not isinstance(q, self.query_type):
                raise TypeError(f"{type(self).__name__} answers {self.query_type.kind} queries, got a {q.kind!r} query")
            self._queue.append(q)

    def _ensure_consent(self) -> None:
        if self._consented or not self.ask_consent or self.store is None:
            self._consented = True
            return
        from rlhf_gym.governance.consent import person_consents

        if not person_consents(self.store, self.annotator_id, self.policy, self.input_fn, self.out):
            self.stopped = True
            raise StopFeedback("no consent given")
        self._consented = True

    def show(self, q: Any) -> Any:
        raise NotImplementedError

    def ask_one(self, q: Query | None = None) -> float | None:
        """Prompt until a valid answer; ``q`` raises :class:`StopFeedback`."""
        while True:
            ans = self.input_fn(self.prompt).strip().lower()
            if ans == "q":
                self.stopped = True
                raise StopFeedback("stopped at the terminal")
            if ans in ANSWERS:
                return ANSWERS[ans]
            self.out(f"Please type 1, 2, =, s or q (got {echo(ans)}).")

    def _collect(self, step: int | None) -> list[Feedback]:
        out: list[Feedback] = []
        if not self._queue:
            return out
        self._ensure_consent()
        while self._queue:
            q = self._queue[0]
            self.show(q)
            try:
                value = self.ask_one(q)
            except StopFeedback:
                self._queue.clear()
                break
            self._queue.pop(0)
            out.append(self._record(q, value, step))
        return out


class TerminalPairSource(TerminalComparisonSource):
    """A person answering pair queries at the terminal; ``input_fn``/``out`` are injectable for tests.

    ``renderer`` turns a segment into frames (default: replay it); :meth:`remember` is given the
    trajectories clips are cut from, so a clip starting mid-episode can be replayed from its start.
    """

    query_type = PairQuery

    def __init__(self, store: FeedbackStore | None = None, run_id: str | None = None,
                 annotator_id: str | None = None, out_dir: str | Path = "clips",
                 input_fn: Callable[[str], str] = input, out: Callable[[str], None] = print,
                 renderer: Callable[[Segment], list[np.ndarray]] | None = None,
                 ask_consent: bool = True, policy: FeedbackPolicy | None = None) -> None:
        aid = annotator_id or new_id("person")
        if store is not None:
            store.add_annotator(aid, kind="human")
        super().__init__(aid, store=store, run_id=run_id, input_fn=input_fn, out=out, ask_consent=ask_consent,
                         policy=policy)
        self.out_dir = Path(out_dir)
        self.renderer = renderer or render_segment
        self._episodes: dict[str, np.ndarray] = {}

    def remember(self, trajs: Sequence[Trajectory]) -> None:
        """Keep the actions of these episodes so clips cut from them can be re-rendered."""
        for t in trajs:
            self._episodes[t.id] = t.acts

    def _render(self, seg: Segment) -> list[np.ndarray]:
        if self.renderer is not render_segment:
            return self.renderer(seg)
        return render_segment(seg, self._episodes.get(seg.traj_id or ""))

    def show(self, q: PairQuery) -> list[Path]:
        """Write both clips (GIF/MP4) and a side-by-side key-frame PNG; print and return the paths."""
        from rlhf_gym.runs import save_video

        assert q.left is not None and q.right is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        clips = []
        for name, seg in (("1-left", q.left), ("2-right", q.right)):
            frames = self._render(seg)
            clips.append(frames)
            if frames:
                paths.append(save_video(frames, self.out_dir / f"{q.id}-{name}.gif", fps=30))
        if all(clips):
            import imageio.v2 as imageio

            rows = []
            for frames in clips:
                idx = np.linspace(0, len(frames) - 1, 4).astype(int)
                rows.append(np.concatenate([frames[i] for i in idx], axis=1))
            w = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows]
            sep = np.full((8, w, 3), 255, np.uint8)
            png = self.out_dir / f"{q.id}-keyframes.png"
            imageio.imwrite(png, np.concatenate([rows[0], sep, rows[1]], axis=0))
            paths.append(png)
        if paths:
            self.out("Clips to compare:\n" + "\n".join(f"  {p}" for p in paths))
            self.out("  (key-frame image: top row = clip 1, bottom row = clip 2)")
        else:
            self.out("(these clips could not be rendered; comparing by the numbers below)")
        self.out(f"  clip 1: {len(q.left)} steps, episode ended inside: {bool(q.left.absorbing.any())}")
        self.out(f"  clip 2: {len(q.right)} steps, episode ended inside: {bool(q.right.absorbing.any())}")
        return paths

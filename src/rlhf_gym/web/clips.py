"""Server-side rendering of stored queries into pictures a browser can show.

Frames come from the environment's own ``render_mode="rgb_array"`` renderer. How a stored state is
put back into the environment (the choice documented in the README):

1. classic-control environments (CartPole, MountainCar, MountainCarContinuous, Pendulum, Acrobot):
   the physical state is set from each stored observation, so every frame shows exactly the stored
   step, whatever the segment's start, and nothing drifts;
2. any other environment, for a segment that starts at step 0 with a known seed: reset with that
   seed and replay the stored actions (kept only while the replayed observations match the stored
   ones);
3. otherwise: a bar chart of the observation vector, so a person still sees something comparable.

Preference clips are animated WebP (Pillow), both sides of a pair with the same frame count and
frame rate so they loop in step; evaluative frames are PNG. Everything is cached on disk under
``clip_dir/<run>/`` and removed with :meth:`ClipCache.cleanup_run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from rlhf_gym.render import replay_frames

#: frames per second of every preference clip (same for both sides of a pair).
CLIP_FPS = 20
#: width in pixels of served pictures (height keeps the aspect ratio).
CLIP_WIDTH = 300


def _set_cartpole(env: Any, obs: np.ndarray) -> None:
    env.state = np.asarray(obs, dtype=np.float64)[:4].copy()


def _set_mountaincar(env: Any, obs: np.ndarray) -> None:
    env.state = np.asarray(obs, dtype=np.float64)[:2].copy()


def _set_pendulum(env: Any, obs: np.ndarray) -> None:
    c, s, thdot = (float(x) for x in obs[:3])
    env.state = np.array([np.arctan2(s, c), thdot])


def _set_acrobot(env: Any, obs: np.ndarray) -> None:
    c1, s1, c2, s2, d1, d2 = (float(x) for x in obs[:6])
    env.state = np.array([np.arctan2(s1, c1), np.arctan2(s2, c2), d1, d2])


#: unwrapped environment class name -> function putting an observation back as the env's state.
STATE_SETTERS: dict[str, Callable[[Any, np.ndarray], None]] = {
    "CartPoleEnv": _set_cartpole,
    "MountainCarEnv": _set_mountaincar,
    "Continuous_MountainCarEnv": _set_mountaincar,
    "PendulumEnv": _set_pendulum,
    "AcrobotEnv": _set_acrobot,
}


def safe_name(s: str | None) -> str:
    """A file-name-safe form of an id (ids from the API are not trusted as paths)."""
    if s is None:
        return "_norun"
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", s) and ".." not in s:
        return s
    return "h-" + hashlib.sha256(s.encode()).hexdigest()[:24]


def _resize(frame: np.ndarray, width: int = CLIP_WIDTH) -> Image.Image:
    im = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.BILINEAR)
    return im


def chart_frame(obs: np.ndarray, title: str = "", width: int = CLIP_WIDTH, height: int = 200) -> np.ndarray:
    """A bar chart of an observation vector: the fallback picture where an env cannot be rendered."""
    v = np.asarray(obs, dtype=np.float64).ravel()[:32]
    im = Image.new("RGB", (width, height), (250, 250, 250))
    d = ImageDraw.Draw(im)
    d.text((4, 2), (title or "observation")[:48], fill=(40, 40, 40))
    mid = height // 2 + 8
    d.line([(0, mid), (width, mid)], fill=(160, 160, 160))
    if len(v):
        scale = max(1.0, float(np.abs(v).max()))
        bw = max(2, (width - 8) // len(v))
        for i, x in enumerate(v):
            h = int((height // 2 - 20) * float(x) / scale) if np.isfinite(x) else 0
            x0 = 4 + i * bw
            d.rectangle([x0, min(mid, mid - h), x0 + bw - 2, max(mid, mid - h)],
                        fill=(60, 110, 200) if h >= 0 else (200, 90, 60))
    return np.asarray(im)


class Renderer:
    """Makes frames for stored observations; one environment per id, used under one lock.

    Rendering is serialised (pygame-based renderers are not thread-safe, and on a small machine
    one render at a time keeps label posting responsive).
    """

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}
        self._broken: set[str] = set()
        self.lock = threading.Lock()

    def _env(self, env_id: str | None) -> Any:
        if not env_id or env_id in self._broken:
            return None
        if env_id not in self._envs:
            try:
                from rlhf_gym.envs import make_registered_env

                # our own preprocessing (pixel games' frame stacks), so replays match the stored clips
                self._envs[env_id] = make_registered_env(env_id, render_mode="rgb_array")
            except Exception:  # unknown id or missing extra: fall back to charts for this id
                self._broken.add(env_id)
                return None
        return self._envs[env_id]

    def _setter(self, env: Any) -> Callable[[Any, np.ndarray], None] | None:
        return STATE_SETTERS.get(type(env.unwrapped).__name__)

    def _render(self, env: Any) -> np.ndarray | None:
        try:
            fr = env.render()
        except Exception:
            return None
        return fr if isinstance(fr, np.ndarray) else None

    def frames_from_obs(self, env_id: str | None, obs_seq: Sequence[np.ndarray], seed: int | None = None,
                        acts: Sequence[Any] | None = None, start: int = 0) -> tuple[list[np.ndarray], str]:
        """Frames for a sequence of observations, and how they were made (state, replay or chart)."""
        obs_seq = [np.asarray(o) for o in obs_seq]
        with self.lock:
            env = self._env(env_id)
            if env is not None:
                setter = self._setter(env)
                if setter is not None:
                    try:
                        env.reset(seed=seed if seed is not None else 0)
                        frames = []
                        for o in obs_seq:
                            setter(env.unwrapped, o)
                            fr = self._render(env)
                            if fr is None:
                                frames = []
                                break
                            frames.append(fr)
                        if frames:
                            return frames, "state"
                    except Exception:
                        pass
                if acts is not None and start == 0 and seed is not None:
                    frames = self._replay(env, obs_seq, seed, acts)
                    if frames:
                        return frames, "replay"
        return [chart_frame(o, env_id or "") for o in obs_seq], "chart"

    def state_frame(self, env_id: str | None, obs: np.ndarray, seed: int | None = None,
                    actions: Sequence[Any] | None = None) -> tuple[np.ndarray, str]:
        """The frame of one state reached by ``actions`` from a reset with ``seed``, and how it was made.

        Replayed with the one clip renderer (:func:`~rlhf_gym.render.replay_frames`) and kept only when the
        replayed observation matches ``obs``; otherwise (no seed or actions, a drifting replay, an env that
        cannot be made here) the stored observation is drawn as :meth:`frames_from_obs` does.
        """
        if seed is not None and actions is not None:
            acts = list(actions)
            with self.lock:
                env = self._env(env_id)
                if env is not None:
                    frames = replay_frames(env, seed, acts, start=len(acts), expect_obs=[np.asarray(obs)],
                                           render=self._render)
                    if frames:
                        return frames[-1], "replay"
        frames, how = self.frames_from_obs(env_id, [obs])
        return frames[0], how

    def _replay(self, env: Any, obs_seq: list[np.ndarray], seed: int, acts: Sequence[Any]) -> list[np.ndarray]:
        frames = replay_frames(env, seed, list(acts)[: max(len(obs_seq) - 1, 0)], expect_obs=obs_seq,
                               render=self._render)
        if frames and len(frames) < len(obs_seq):  # the episode ended inside the clip: hold its last frame
            frames += [frames[-1]] * (len(obs_seq) - len(frames))
        return frames

    def close(self) -> None:
        with self.lock:
            for env in self._envs.values():
                with contextlib.suppress(Exception):
                    env.close()
            self._envs.clear()


def encode_webp(frames: Sequence[np.ndarray], fps: int = CLIP_FPS, n_frames: int | None = None) -> bytes:
    """An endlessly looping animated WebP; padded with its last frame to ``n_frames`` if given."""
    ims = [_resize(f) for f in frames]
    if n_frames is not None and len(ims) < n_frames:
        ims += [ims[-1]] * (n_frames - len(ims))
    buf = io.BytesIO()
    ims[0].save(buf, format="WEBP", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0,
                quality=70, method=0)
    return buf.getvalue()


def encode_png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    _resize(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ClipCache:
    """Rendered pictures on disk, one folder per run, each made once (concurrent requests wait)."""

    def __init__(self, clip_dir: str | Path, renderer: Renderer | None = None) -> None:
        self.dir = Path(clip_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.renderer = renderer or Renderer()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def path(self, run_id: str | None, query_id: str, name: str) -> Path:
        return self.dir / safe_name(run_id) / f"{safe_name(query_id)}-{name}"

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks.clear()
            return self._locks.setdefault(key, threading.Lock())

    def _get(self, path: Path, make: Callable[[], bytes]) -> Path:
        if path.exists():
            return path
        with self._lock(str(path)):
            if not path.exists():
                _atomic_write(path, make())
        return path

    def pair_clip(self, query: Any, side: str) -> Path:
        """Animated WebP of one side (``left``/``right``) of a :class:`~rlhf_gym.types.PairQuery`."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        n = max(len(query.left), len(query.right))

        def make() -> bytes:
            seg = query.left if side == "left" else query.right
            frames, _how = self.renderer.frames_from_obs(seg.env_id, list(seg.obs), seg.seed, list(seg.acts),
                                                         seg.start)
            return encode_webp(frames, CLIP_FPS, n_frames=n)

        return self._get(self.path(query.run_id, query.id, f"{side}.webp"), make)

    def step_frame(self, query: Any, env_id: str | None) -> Path:
        """PNG of the state a :class:`~rlhf_gym.types.StepQuery` asks about."""

        def make() -> bytes:
            frames, _how = self.renderer.frames_from_obs(env_id, [query.obs])
            return encode_png(frames[0])

        return self._get(self.path(query.run_id, query.id, "step.png"), make)

    def action_frame(self, query: Any, env_id: str | None) -> Path:
        """PNG of the state an :class:`~rlhf_gym.types.ActionQuery` asks about (replayed from its seed and actions)."""

        def make() -> bytes:
            frame, _how = self.renderer.state_frame(env_id, query.obs, query.seed, query.actions)
            return encode_png(frame)

        return self._get(self.path(query.run_id, query.id, "action.png"), make)

    def cleanup_run(self, run_id: str | None) -> int:
        """Delete every cached picture of a run; returns how many files went."""
        d = self.dir / safe_name(run_id)
        if not d.is_dir():
            return 0
        n = sum(1 for p in d.rglob("*") if p.is_file())
        shutil.rmtree(d, ignore_errors=True)
        return n

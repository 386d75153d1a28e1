"""Demonstrations as data: reading them from the store, checking them against a task, and files.

In the store a demonstration is an answer to a :class:`~rlhf_gym.types.DemoQuery` whose ``data`` holds the
episode (``{"trajectory": {...}, "return", "steps"}``, the record the web app's demonstration page and the
demonstration teachers write); a DAgger label is an answer to an
:class:`~rlhf_gym.types.ActionQuery` with ``data["action"]``. Reading goes through
:meth:`FeedbackStore.feedback`, so a withdrawn person's demonstrations are left out.

Files: JSONL and Parquet (one episode per line/row) and Minari datasets (written through Minari's own
storage, Arrow format; Minari is the optional ``minari`` extra, imported only when used).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.types import ActionQuery, DemoQuery, Feedback, Trajectory

if TYPE_CHECKING:
    from rlhf_gym.store import FeedbackStore

FORMATS = ("jsonl", "parquet", "minari")


@dataclass(frozen=True)
class Demo:
    """One stored demonstration: the episode and the feedback row it came from (for lineage)."""

    feedback_id: int | None
    annotator_id: str
    traj: Trajectory
    query_id: str = ""


@dataclass(frozen=True)
class ActionLabel:
    """One stored DAgger label: the state, the teacher's action and the feedback row."""

    feedback_id: int | None
    annotator_id: str
    obs: np.ndarray
    action: Any


def trajectory_from_record(d: dict[str, Any]) -> Trajectory:
    """The episode of a stored demonstration (``Feedback.data``) or of one JSONL/Parquet row."""
    t = d.get("trajectory", d)
    try:
        return Trajectory(np.asarray(t["obs"], dtype=np.float64), np.asarray(t["acts"]),
                          np.asarray(t["rews"], dtype=np.float64), bool(t.get("terminated", False)),
                          bool(t.get("truncated", False)), env_id=t.get("env_id"), seed=t.get("seed"))
    except KeyError as e:
        raise ValueError(f"a demonstration needs obs, acts and rews; {e} is missing") from e


def demos_from_store(store: FeedbackStore, run_id: str | None = None, env_id: str | None = None) -> list[Demo]:
    """Every non-withdrawn demonstration in ``store`` (of run ``run_id`` and task ``env_id`` if given)."""
    out = []
    for fb in store.feedback(run_id=run_id, kind="demo", include_skipped=False):
        if not fb.data or "trajectory" not in fb.data:
            continue
        traj = trajectory_from_record(fb.data)
        if env_id is not None and traj.env_id not in (None, env_id):
            continue
        out.append(Demo(fb.id, fb.annotator_id, traj, fb.query_id))
    return out


def action_labels_from_store(store: FeedbackStore, run_id: str | None = None) -> list[ActionLabel]:
    """Every non-withdrawn, non-skipped DAgger label of ``run_id`` in ``store``."""
    qs = {q.id: q for q in store.queries(run_id=run_id, kind="action")}
    out = []
    for fb in store.feedback(run_id=run_id, kind="action", include_skipped=False):
        q = qs.get(fb.query_id)
        if q is None or not fb.data or "action" not in fb.data:
            continue
        assert isinstance(q, ActionQuery)
        out.append(ActionLabel(fb.id, fb.annotator_id, np.asarray(q.obs), fb.data["action"]))
    return out


def check_demos(trajs: Sequence[Trajectory], env_id: str, source: str = "demonstrations") -> None:
    """Raise ValueError unless ``trajs`` are non-empty episodes of ``env_id`` with its spaces' shapes."""
    import gymnasium as gym

    from rlhf_gym.envs import make_env

    if not trajs:
        raise ValueError(f"{source}: no demonstrations (an empty file or store?)")
    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    for i, t in enumerate(trajs):
        if t.env_id is not None and t.env_id != env_id:
            raise ValueError(f"{source}: episode {i} was recorded on {t.env_id}, not {env_id}")
        if len(t) == 0:
            raise ValueError(f"{source}: episode {i} has no steps")
        if obs_space.shape and tuple(t.obs.shape[1:]) != tuple(obs_space.shape):
            raise ValueError(f"{source}: episode {i} has observations of shape {t.obs.shape[1:]}, but {env_id} "
                             f"gives {obs_space.shape}")
        if isinstance(act_space, gym.spaces.Discrete):
            a = np.asarray(t.acts)
            if a.ndim != 1 or not np.all(np.equal(np.mod(a, 1), 0)) or a.min() < 0 or a.max() >= act_space.n:
                raise ValueError(f"{source}: episode {i} has actions that are not integers in 0..{act_space.n - 1} "
                                 f"(the action space of {env_id}, {act_space})")
        elif isinstance(act_space, gym.spaces.Box) and tuple(t.acts.shape[1:]) != tuple(act_space.shape):
            raise ValueError(f"{source}: episode {i} has actions of shape {t.acts.shape[1:]}, but {env_id} "
                             f"takes {act_space.shape} ({act_space})")


# -- recording and importing ---------------------------------------------------------------------------
def demo_seeds(seed: int, n: int) -> list[int]:
    """Start seeds of ``n`` demonstrations, disjoint from the evaluation seeds (10 000 onwards)."""
    return [100_000 + 1_000 * int(seed) + i for i in range(n)]


def record_demos(source: Any, env_id: str, episodes: int, seed: int = 0, max_steps: int | None = None,
                 run_id: str | None = None) -> list[Feedback]:
    """Ask ``source`` (a demonstration teacher) for ``episodes`` episodes, one at a time; stops early if the
    source is stopped (a person pressed Ctrl-C). Every answer is committed to the source's store."""
    import gymnasium as gym

    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    limit = max_steps or gym.spec(env_id).max_episode_steps or 1000
    got: list[Feedback] = []
    for s in demo_seeds(seed, episodes):
        if source.stopped:
            break
        got += [fb for fb in source.ask([DemoQuery.make(env_id, s, limit, run_id=run_id)]) if not fb.skipped]
    return got


def import_demos(store: FeedbackStore, trajs: Sequence[Trajectory], annotator_id: str, *, source: str,
                 run_id: str | None = None, person: bool = False, attest_consent: bool = False,
                 actor: str = "system") -> list[Feedback]:
    """Store episodes from a file as demonstrations by ``annotator_id``; audited.

    A dataset of unknown origin is recorded as a simulated annotator. ``person=True`` says a person made
    it: their consent must be on record in ``store`` already, or ``attest_consent=True`` records the owner's
    attestation that they hold it (audited); otherwise nothing is imported.
    """
    from rlhf_gym.store.errors import ConsentError

    kind = "human" if person else "simulated"
    row = store.annotator(annotator_id)
    if row is not None and row.kind != kind:
        raise ValueError(f"annotator {annotator_id!r} is {row.kind} in this store, not {kind}")
    store.add_annotator(annotator_id, kind=kind, meta=None if person else {"dataset": source}, actor=actor)
    if person and not store.has_consent(annotator_id):
        if not attest_consent:
            raise ConsentError(f"no recorded consent for person {annotator_id!r}; nothing was imported. Import "
                               "with --attest-consent only if you hold their consent: the attestation is audited")
        store.record_consent(annotator_id, store.consent_version or "attested",
                             f"attested by {actor} on import of {source}", True)
    rid = store.add_run(run_id) if run_id else None
    out = []
    for t in trajs:
        q = DemoQuery.make(str(t.env_id), int(t.seed or 0), max(len(t), 1), run_id=rid)
        store.add_queries([q], run_id=rid)
        now = time.time()
        from rlhf_gym.feedback.teachers_demonstration import trajectory_record

        out.append(store.add_feedback(Feedback(q.id, annotator_id, None, now, now, len(t), trajectory_record(t))))
    store.audit(actor, "import.demos", {"source": source, "episodes": len(out), "annotator": annotator_id,
                                        "run": rid})
    return out


# -- files ----------------------------------------------------------------------------------------------
def _row(t: Trajectory) -> dict[str, Any]:
    return {"env_id": t.env_id, "seed": t.seed, "obs": np.asarray(t.obs).tolist(), "acts": np.asarray(t.acts).tolist(),
            "rews": np.asarray(t.rews).tolist(), "terminated": bool(t.terminated), "truncated": bool(t.truncated)}


def write_jsonl(trajs: Sequence[Trajectory], path: str | Path) -> Path:
    """One episode per line (``env_id, seed, obs, acts, rews, terminated, truncated``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for t in trajs:
            f.write(json.dumps(_row(t)) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[Trajectory]:
    out = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(trajectory_from_record(json.loads(line)))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a demonstration episode ({e})") from e
    return out


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError("Parquet files need the parquet extra: pip install 'rlhf-gym[parquet]'") from e
    return pa, pq


def write_parquet(trajs: Sequence[Trajectory], path: str | Path) -> Path:
    """One episode per row, observations and actions as nested lists (pyarrow)."""
    pa, pq = _pyarrow()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([_row(t) for t in trajs]), path)
    return path


def read_parquet(path: str | Path) -> list[Trajectory]:
    _pa, pq = _pyarrow()

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # not a parquet file: the caller's input is wrong
        raise ValueError(f"{path}: not a Parquet file of demonstrations ({e})") from e
    try:
        return [trajectory_from_record(r) for r in rows]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a Parquet file of demonstrations ({e})") from e


def _minari() -> Any:
    try:
        import minari
    except ImportError as e:
        raise ValueError("Minari datasets need the minari extra: pip install 'rlhf-gym[minari]'") from e
    return minari


def write_minari(trajs: Sequence[Trajectory], dataset_id: str, root: str | Path | None = None,
                 author: str = "rlhf-gym", description: str = "demonstrations recorded with rlhf-gym") -> Path:
    """Write a Minari dataset (Arrow storage) at ``root/dataset_id`` (default: Minari's datasets folder, so
    ``minari.load_dataset(dataset_id)`` finds it). Returns the dataset folder."""
    minari = _minari()
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    from minari.storage.datasets_root_dir import get_dataset_path

    if not trajs:
        raise ValueError("no demonstrations to write")
    env_id = trajs[0].env_id
    if not env_id or any(t.env_id != env_id for t in trajs):
        raise ValueError("a Minari dataset holds episodes of one environment; these name "
                         f"{sorted({str(t.env_id) for t in trajs})}")
    folder = Path(root) / dataset_id if root is not None else Path(get_dataset_path(dataset_id))
    data = folder / "data"
    if data.exists():
        raise ValueError(f"{folder} already holds a dataset; remove it or choose another id")
    folder.mkdir(parents=True, exist_ok=True)
    env = gym.make(env_id)
    storage = MinariStorage.new(data, observation_space=env.observation_space, action_space=env.action_space,
                                env_spec=env.spec, data_format="arrow")
    env.close()
    storage.update_metadata({"dataset_id": dataset_id, "minari_version": minari.__version__,
                             "algorithm_name": "rlhf-gym demonstrations", "author": {author},
                             "description": description})
    act_dtype = env.action_space.dtype
    bufs = []
    for i, t in enumerate(trajs):
        n = len(t)
        term = [False] * n
        trunc = [False] * n
        term[-1], trunc[-1] = bool(t.terminated), bool(t.truncated or not t.terminated)
        bufs.append(EpisodeBuffer(id=i, seed=t.seed, observations=np.asarray(t.obs, env.observation_space.dtype),
                                  actions=np.asarray(t.acts, act_dtype), rewards=list(map(float, t.rews)),
                                  terminations=term, truncations=trunc, infos={}))
    storage.update_episodes(bufs)
    return folder


def read_minari(path_or_id: str | Path) -> list[Trajectory]:
    """Episodes of a Minari dataset: a folder (holding ``data/``) or an id in Minari's datasets folder."""
    minari = _minari()
    from minari.dataset.minari_dataset import MinariDataset

    p = Path(path_or_id)
    try:
        if (p / "data" / "metadata.json").exists():
            ds = MinariDataset(p / "data")
        elif (p / "metadata.json").exists():
            ds = MinariDataset(p)
        else:
            ds = minari.load_dataset(str(path_or_id))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no Minari dataset at {path_or_id} ({e})") from e
    spec = ds.spec.env_spec
    env_id = spec.id if spec is not None else None
    out = []
    for ep in ds.iterate_episodes():
        term = bool(np.asarray(ep.terminations)[-1]) if len(ep.terminations) else False
        seed = getattr(ep, "seed", None)
        out.append(Trajectory(np.asarray(ep.observations, np.float64), np.asarray(ep.actions),
                              np.asarray(ep.rewards, np.float64), term, not term, env_id=env_id,
                              seed=None if seed is None else int(seed)))
    return out


def load_trajectories(path: str | Path, env_id: str | None = None) -> tuple[list[Trajectory], str]:
    """Episodes from a JSONL/Parquet file, a Minari dataset (folder or id) or a store (a folder holding
    ``feedback.db``, a ``.db`` file or a URL). Returns them and the format read."""
    from rlhf_gym.store import FeedbackStore

    s = str(path)
    p = Path(s)
    if "://" in s or p.suffix == ".db" or (p / "feedback.db").exists():
        store = FeedbackStore(p / "feedback.db" if (p / "feedback.db").exists() else s)
        try:
            return [d.traj for d in demos_from_store(store, env_id=env_id)], "store"
        finally:
            store.close()
    if p.suffix == ".jsonl":
        if not p.exists():
            raise FileNotFoundError(f"demonstrations file {p} not found")
        return read_jsonl(p), "jsonl"
    if p.suffix == ".parquet":
        if not p.exists():
            raise FileNotFoundError(f"demonstrations file {p} not found")
        return read_parquet(p), "parquet"
    if p.is_dir() and (p / "demos.jsonl").exists():
        return read_jsonl(p / "demos.jsonl"), "jsonl"
    if p.is_dir() and ((p / "data" / "metadata.json").exists() or (p / "metadata.json").exists()):
        return read_minari(p), "minari"
    if not p.exists():  # perhaps a Minari dataset id (local datasets only: nothing is downloaded)
        try:
            return read_minari(s), "minari"
        except (FileNotFoundError, ValueError):
            pass
    raise FileNotFoundError(f"no demonstrations at {path}: expected a .jsonl or .parquet file, a Minari dataset "
                            "(folder or id), or a store (folder with feedback.db, .db file or URL)")


def write_trajectories(trajs: Sequence[Trajectory], out: str | Path | None, fmt: str,
                       dataset_id: str | None = None) -> Path:
    """Write episodes as ``fmt``: a file for jsonl/parquet; for minari the dataset ``dataset_id`` under the
    root folder ``out`` (default: Minari's own datasets folder)."""
    if fmt in ("jsonl", "parquet") and out is None:
        raise ValueError(f"--out FILE is needed for --format {fmt}")
    if fmt == "jsonl":
        return write_jsonl(trajs, str(out))
    if fmt == "parquet":
        return write_parquet(trajs, str(out))
    if fmt == "minari":
        return write_minari(trajs, dataset_id or "rlhf-gym/demos-v0", root=out)
    raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")

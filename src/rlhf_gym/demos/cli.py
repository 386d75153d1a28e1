"""``rlhf-gym demos record | import | export``: demonstrations into the store, and to or from files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("demos", help="record, import and export demonstrations")
    dsub = d.add_subparsers(dest="demos_command", required=True)

    r = dsub.add_parser("record", help="record demonstrations into a store (and OUT/demos.jsonl)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--env", required=True, help="Gymnasium environment id")
    r.add_argument("--from", dest="teacher", default="expert", help="expert, noisy, random or human")
    r.add_argument("--episodes", type=int, default=10)
    r.add_argument("--out", required=True, help="folder: OUT/feedback.db (unless --db) and OUT/demos.jsonl")
    r.add_argument("--db", default=None, help="store path or URL (default OUT/feedback.db)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--noise", type=float, default=0.2, help="random-action rate of --from noisy")
    r.add_argument("--max-steps", type=int, default=None, help="steps per episode (default: the task's limit)")
    r.add_argument("--annotator", default=None, help="annotator id (default sim-NAME, or a pseudonym for people)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="teacher setting, e.g. expert=PATH")
    r.set_defaults(func=cmd_record)

    i = dsub.add_parser("import", help="store episodes from a JSONL/Parquet file or Minari dataset as demonstrations")
    i.add_argument("source", help=".jsonl, .parquet, a Minari dataset folder or a local Minari dataset id")
    i.add_argument("--env", required=True, help="environment the episodes must belong to")
    i.add_argument("--out", required=True, help="folder whose feedback.db receives them (unless --db)")
    i.add_argument("--db", default=None)
    i.add_argument("--annotator", default=None, help="who made them (default dataset-<name>, simulated)")
    i.add_argument("--person", action="store_true", help="a person made them (needs their consent on record)")
    i.add_argument("--attest-consent", action="store_true", help="record your attestation that you hold their consent")
    i.set_defaults(func=cmd_import)

    e = dsub.add_parser("export", help="write stored demonstrations (or a dataset) as JSONL, Parquet or Minari")
    e.add_argument("source", help="a store (folder with feedback.db, .db, URL) or any file `demos import` reads")
    e.add_argument("--format", default="jsonl", help="jsonl, parquet or minari")
    e.add_argument("--out", default=None, help="output file (jsonl/parquet) or root folder (minari; default "
                                               "Minari's datasets folder)")
    e.add_argument("--dataset-id", default=None, help="Minari dataset id, e.g. cartpole/expert-v0")
    e.add_argument("--env", default=None, help="only episodes of this environment")
    e.set_defaults(func=cmd_export)


def _store(out: str, db: str | None) -> Any:
    from rlhf_gym.store import FeedbackStore

    Path(out).mkdir(parents=True, exist_ok=True)
    return FeedbackStore(db or Path(out) / "feedback.db")


def cmd_record(args: argparse.Namespace) -> int:
    from rlhf_gym.config import check_settings, parse_set
    from rlhf_gym.demos.data import demos_from_store, record_demos, write_jsonl
    from rlhf_gym.envs import make_env
    from rlhf_gym.feedback.registry import TeacherRequest, make_teacher, resolve, teacher_settings

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0.0 <= args.noise <= 1.0:
        raise ValueError(f"--noise must be a rate in [0, 1], got {args.noise}")
    entry = resolve("demonstration", args.teacher)
    if entry.name == "web":
        raise ValueError("--from web: post demonstration queries to the annotation app instead "
                         "(people play them on its /demo page); record takes expert, noisy, random or human")
    extra = parse_set(args.set)
    check_settings(extra, teacher_settings("demonstration", args.teacher), f"demos record --from {args.teacher}")
    make_env(args.env).close()  # a clear error for an unknown id before anything is stored
    store = _store(args.out, args.db)
    run_id = store.add_run(f"demos-{Path(args.out).resolve().name}-{int(time.time())}",
                           {"command": "demos record", "env": args.env, "from": args.teacher, "seed": args.seed,
                            "episodes": args.episodes})
    source = make_teacher(TeacherRequest("demonstration", args.teacher, args.env, seed=args.seed, store=store,
                                         run_id=run_id, annotator_id=args.annotator, settings=extra,
                                         noise=args.noise, out_dir=Path(args.out)))
    try:
        got = record_demos(source, args.env, args.episodes, seed=args.seed, max_steps=args.max_steps, run_id=run_id)
    finally:
        source.close()
    demos = demos_from_store(store, run_id=run_id)
    write_jsonl([d.traj for d in demos], Path(args.out) / "demos.jsonl")
    store.close()
    rets = [d.traj.ret for d in demos]
    mean = f"{sum(rets) / len(rets):.1f}" if rets else "n/a"
    print(f"{len(got)} demonstrations of {args.env} from {args.teacher} stored in {args.db or Path(args.out) / 'feedback.db'} "
          f"(run {run_id}); mean return {mean}; also written to {Path(args.out) / 'demos.jsonl'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from rlhf_gym.demos.data import check_demos, import_demos, load_trajectories

    trajs, fmt = load_trajectories(args.source)
    if fmt == "store":
        raise ValueError(f"{args.source} is a store; copy stores with `rlhf-gym export` / `rlhf-gym import` "
                         "(they keep annotators and consents)")
    trajs = [t if t.env_id else _with_env(t, args.env) for t in trajs]
    check_demos(trajs, args.env, str(args.source))
    aid = args.annotator or f"dataset-{Path(str(args.source)).stem.replace('/', '-')}"[:60]
    store = _store(args.out, args.db)
    try:
        fbs = import_demos(store, trajs, aid, source=str(args.source), person=args.person,
                           attest_consent=args.attest_consent, actor="cli")
    finally:
        store.close()
    print(f"imported {len(fbs)} demonstrations ({fmt}) of {args.env} as annotator {aid}")
    return 0


def _with_env(t: Any, env_id: str) -> Any:
    from dataclasses import replace

    return replace(t, env_id=env_id)


def cmd_export(args: argparse.Namespace) -> int:
    from rlhf_gym.demos.data import FORMATS, load_trajectories, write_trajectories

    if args.format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    trajs, _fmt = load_trajectories(args.source, env_id=args.env)
    if args.env:
        trajs = [t for t in trajs if t.env_id in (None, args.env)]
    if not trajs:
        raise ValueError(f"{args.source}: no demonstrations to export")
    path = write_trajectories(trajs, args.out, args.format, dataset_id=args.dataset_id)
    print(f"wrote {len(trajs)} demonstrations to {path}")
    return 0

"""The ``rlhf-gym`` command: a thin layer that builds typed configs and calls the library.

Each command group lives in its own module with ``register(subparsers)``; handlers import their
heavy dependencies lazily so ``rlhf-gym --help`` stays fast. Bad input exits with status 2 and a
message naming what was wrong.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rlhf_gym.config import TrainConfig, parse_set

#: Modules that add more command groups (serve, annotators, audit, report, reward, ...).
COMMAND_MODULES: list[str] = [
    "rlhf_gym.rewards.cli",  # reward retrain, labels export/convert
    "rlhf_gym.web.cli",  # serve
    "rlhf_gym.governance.cli",  # annotators, audit, report, export
    "rlhf_gym.store.cli",  # db upgrade, db current
    "rlhf_gym.demos.cli",  # demos record/import/export
    "rlhf_gym.sweep.cli",  # sweep
]


class UsageError(Exception):
    """A user error found after parsing; reported with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhf-gym", description="Teach Gymnasium agents from human feedback.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent from feedback", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    t.add_argument("--env", default=d.env, help="Gymnasium environment id")
    from rlhf_gym.jobs import feedback_types

    t.add_argument("--feedback", default=d.feedback, help=f"kind of feedback: {', '.join(feedback_types())}")
    t.add_argument("--learner", default=d.learner, help="evaluative: reinforce, tamer or coach; "
                   "demonstration: bc (picked when left at the default), dagger, gail, airl or maxent-irl")
    t.add_argument("--teacher", default=d.teacher,
                   help="who answers: a simulated teacher, human (terminal) or web; `rlhf-gym teachers` lists them")
    t.add_argument("--budget", type=int, default=d.budget, help="feedback answers the learner may ask for "
                   "(demonstration: episodes recorded from --teacher; dagger: labels)")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--out", default=d.out, help="run folder")
    t.add_argument("--algo", default=d.algo, help="preference: ppo, sac or auto")
    t.add_argument("--reward", default=None, help="trained reward model to optimise instead of learning one")
    t.add_argument("--demos", default=None,
                   help="demonstration: a store (folder with feedback.db), .jsonl/.parquet file or Minari dataset")
    t.add_argument("--db", default=None, help="store path or URL (default OUT/feedback.db)")
    t.add_argument("--server", default=None, help="annotation server URL for --teacher web")
    t.add_argument("--token", default=None, help="admin token for the annotation server")
    t.add_argument("--noise", type=float, default=d.noise, help="wrong-answer rate of noisy teachers")
    t.add_argument("--timesteps", type=int, default=None, help="RL environment steps (preference)")
    t.add_argument("--segment-length", type=int, default=d.segment_length)
    t.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    t.add_argument("--annotator", default=None, help="annotator id to record answers under")
    t.add_argument("--policy", default=None,
                   help="rlhf-gym.toml with the [feedback] consent text shown to people (default ./rlhf-gym.toml if present)")
    t.add_argument("--device", default=d.device, help="auto (GPU when present), cpu or cuda[:N]")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="learner setting, repeatable")
    t.set_defaults(func=cmd_train)

    tl = sub.add_parser("teachers", help="list the teachers of every feedback type (the one registry)")
    tl.add_argument("--feedback", default=None, help="only this feedback type")
    tl.set_defaults(func=cmd_teachers)

    e = sub.add_parser("evaluate", help="true return of a trained agent (deterministic policy)")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=10_000)
    e.add_argument("--json", action="store_true", help="print a JSON object")
    e.set_defaults(func=cmd_evaluate)

    v = sub.add_parser("video", help="write a short MP4 (or GIF) of the trained agent")
    v.add_argument("run_dir")
    v.add_argument("--out", default=None, help="output file (default RUN_DIR/agent.mp4)")
    v.add_argument("--seed", type=int, default=10_000)
    v.add_argument("--max-steps", type=int, default=500)
    v.set_defaults(func=cmd_video)

    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            continue
        m.register(sub)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        env=args.env, feedback=args.feedback, learner=args.learner, teacher=args.teacher, budget=args.budget,
        seed=args.seed, out=args.out, algo=args.algo, reward=args.reward, demos=args.demos, db=args.db, server=args.server,
        token=args.token, noise=args.noise, timesteps=args.timesteps, segment_length=args.segment_length,
        eval_episodes=args.eval_episodes, annotator=args.annotator, progress=not args.no_progress,
        policy=args.policy or ("rlhf-gym.toml" if Path("rlhf-gym.toml").exists() else None),
        device=args.device,
        extra=with_monitoring_policy(parse_set(args.set)),
    ).validate()
    from rlhf_gym.pipeline import train

    result = train(cfg)
    print(f"results in {cfg.out}" + (f" (trained on {result['device']})" if result.get("device") else ""))
    print(f"true return of the trained agent: {result['mean_return']:.1f} +/- {result['std_return']:.1f} "
          f"over {result['episodes']} episodes ({result.get('feedback_used', '?')} answers used)")
    return 0


def with_monitoring_policy(extra: dict) -> dict:
    """The annotator weighting from ``./rlhf-gym.toml`` (``[monitoring]``) unless ``--set`` gave one.

    Only the CLI reads the project file; library calls take the weighting from their config alone.
    """
    if "annotator_weighting" in extra or not Path("rlhf-gym.toml").exists():
        return extra
    from rlhf_gym.governance.bias import load_monitoring

    policy = load_monitoring()[1]
    if policy.mode == "off":
        return extra
    out = {**extra, "annotator_weighting": policy.mode, "flagged_weight": policy.flagged_weight}
    if policy.flags is not None:
        out["weight_flags"] = ",".join(policy.flags)
    return out


def cmd_teachers(args: argparse.Namespace) -> int:
    from rlhf_gym.feedback.registry import teachers
    from rlhf_gym.jobs import feedback_types

    kinds = feedback_types()
    if args.feedback is not None and args.feedback not in kinds:
        raise UsageError(f"--feedback must be one of {', '.join(kinds)}, got {args.feedback!r}")
    for kind in [args.feedback] if args.feedback else kinds:
        print(f"{kind}:")
        for name, e in sorted(teachers(kind).items()):
            tags = ", ".join(t for t, on in (("person", e.person), ("combine with +", e.combinable)) if on)
            sets = f"  [--set {', '.join(e.settings)}]" if e.settings else ""
            print(f"  {name:<12} {e.help}{f' ({tags})' if tags else ''}{sets}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    from rlhf_gym.pipeline import evaluate_run

    res = evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['env']}: mean return {res['mean_return']:.1f} +/- {res['std_return']:.1f} over {res['episodes']} episodes")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from rlhf_gym.pipeline import video_run

    path = video_run(args.run_dir, out=args.out, seed=args.seed, max_steps=args.max_steps)
    print(f"video written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"rlhf-gym {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from rlhf_gym.feedback.web_source import WebSourceError

        if not isinstance(exc, WebSourceError):
            raise
        print(f"rlhf-gym {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

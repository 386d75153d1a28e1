"""``rlhf-gym reward retrain DIR`` and ``rlhf-gym labels export DIR``.

``reward retrain`` rebuilds the reward model of a run folder from its store alone: withdrawn and
skipped answers are left out, the new model is recorded with its lineage (so it is not flagged;
older models trained on withdrawn labels stay flagged), and it becomes ``DIR/reward_model.safetensors``
(the previous one is kept under ``DIR/reward_models/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def _store(run_dir: str, db: str | None):  # noqa: ANN202 - lazy import keeps --help fast
    from rlhf_gym.store import FeedbackStore

    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run folder {d} does not exist")
    if db is None and not (d / "feedback.db").exists():
        raise FileNotFoundError(f"{d} has no feedback.db; pass --db with the store's path or URL")
    return FeedbackStore(db or d / "feedback.db")


def cmd_retrain(args: argparse.Namespace) -> int:
    from rlhf_gym.devices import resolve_device
    from rlhf_gym.rewards.training import retrain_from_store

    device = resolve_device(args.device)  # a bad or absent device is a usage error before anything is read
    store = _store(args.run_dir, args.db)
    try:
        d = Path(args.run_dir)
        env_id = None
        if (d / "config.json").exists():
            env_id = json.loads((d / "config.json").read_text()).get("env")
        out = d / "reward_models" / f"retrained-{time.strftime('%Y%m%d-%H%M%S')}"
        from rlhf_gym.governance.bias import load_monitoring
        from rlhf_gym.governance.report import training_weights

        # flagged annotators count as the owner's [monitoring] annotator_weighting says (default: fully)
        weighting = load_monitoring()[1]
        weights = None if weighting.mode == "off" else training_weights(store, weighting, run_id=args.run_id)
        model_id, m = retrain_from_store(store, out, run_id=args.run_id, seed=args.seed, env_id=env_id,
                                         annotator_weights=weights, device=device)
        current = d / "reward_model.safetensors"
        if current.exists():
            keep = d / "reward_models" / f"before-retrain-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
            shutil.copy(current, keep)
            if current.with_suffix(".json").exists():
                shutil.copy(current.with_suffix(".json"), keep.with_suffix(".json"))
        shutil.copy(out / "reward_model.safetensors", current)
        shutil.copy(out / "reward_model.json", current.with_suffix(".json"))
        flagged = [x.id for x in store.models(flagged_only=True)]
    finally:
        store.close()
    acc = m.get("heldout_accuracy")
    print(f"retrained reward model {model_id} on {m['feedback_ids']} label(s) (withdrawn ones left out); "
          f"held-out accuracy {'-' if acc is None else f'{acc:.2f}'}; fitted on {m['device']}")
    print(f"written to {current} (also {out})")
    if m.get("warning"):
        print(f"WARNING: {m['warning']}")
    if flagged:
        print(f"still flagged (trained on withdrawn labels): {', '.join(flagged)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rlhf_gym.rewards.labels import export_labels

    ext = {"jsonl": ".jsonl", "parquet": ".parquet", "trl": ".trl.jsonl", "imitation": ".imitation.jsonl"}[args.format]
    out = args.out or str(Path(args.run_dir) / f"labels{ext}")
    store = _store(args.run_dir, args.db)
    try:
        info = export_labels(store, out, args.format, run_id=args.run_id)
    finally:
        store.close()
    print(f"wrote {info.get('rows', info['labels'])} row(s) to {info['path']} ({args.format})"
          + (f"; {info['ties_left_out']} tie(s) left out (no chosen side)" if info.get("ties_left_out") else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reward`` and ``labels`` command groups."""
    r = subparsers.add_parser("reward", help="reward models: retrain from the store")
    rs = r.add_subparsers(dest="reward_command", required=True)
    rt = rs.add_parser("retrain", help="rebuild DIR's reward model from its store (withdrawn labels left out)")
    rt.add_argument("run_dir")
    rt.add_argument("--db", default=None, help="store path or URL (default DIR/feedback.db)")
    rt.add_argument("--run-id", default=None, help="only this run's labels (default: every label in the store)")
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--device", default="auto", help="where to fit: auto (GPU when present), cpu or cuda[:N]")
    rt.set_defaults(func=cmd_retrain)

    lab = subparsers.add_parser("labels", help="preference labels: export and convert")
    ls = lab.add_subparsers(dest="labels_command", required=True)
    ex = ls.add_parser("export", help="write DIR's labels as JSONL, Parquet, TRL or imitation rows")
    ex.add_argument("run_dir")
    ex.add_argument("--format", default="jsonl", choices=["jsonl", "parquet", "trl", "imitation"])
    ex.add_argument("--out", default=None, help="output file (default DIR/labels.<format>)")
    ex.add_argument("--db", default=None)
    ex.add_argument("--run-id", default=None)
    ex.set_defaults(func=cmd_export)

"""Command groups for responsible feedback: ``annotators``, ``audit``, ``report``, ``export``, ``import``.

Every command takes ``--db PATH_OR_URL``: a SQLite file, a run folder (its ``feedback.db`` is used, the
same file ``rlhf-gym train --out RUN`` writes), or a ``postgresql://`` URL. The default is
``./feedback.db``. Commands that only read refuse a SQLite file that does not exist instead of
creating an empty one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "feedback.db"


def resolve_db(db: str, must_exist: bool = True) -> str:
    """A store URL or file path from ``--db`` (a folder means its ``feedback.db``)."""
    if "://" in db:
        return db
    p = Path(db)
    if p.is_dir():
        p = p / DEFAULT_DB
    if must_exist and not p.exists():
        raise FileNotFoundError(f"no feedback store at {p} (pass --db with a store file, a run folder or a URL)")
    return str(p)


def _store(args: argparse.Namespace, must_exist: bool = True) -> Any:
    from rlhf_gym.store import FeedbackStore

    return FeedbackStore(resolve_db(args.db, must_exist))


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB,
                   help="store: SQLite file, run folder (uses its feedback.db) or postgresql:// URL")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``annotators``, ``audit``, ``report``, ``export`` and ``import`` command groups."""
    a = subparsers.add_parser("annotators", help="invite, list and withdraw annotators; seed gold queries")
    asub = a.add_subparsers(dest="annotators_command", required=True)
    inv = asub.add_parser("invite", help="create a person with a fresh token and print their invite link")
    _db_arg(inv)
    inv.add_argument("--id", default=None, help="pseudonymous id (default: a random one)")
    inv.add_argument("--role", default="annotator", choices=["annotator", "admin"])
    inv.add_argument("--url", "--server", dest="url", default=os.environ.get("RLHF_GYM_SERVER", "http://127.0.0.1:8000"),
                     help="web app address for the link (default $RLHF_GYM_SERVER or http://127.0.0.1:8000)")
    inv.add_argument("--contact", default=None, help="contact detail, kept only if the policy has keep_contact = true")
    inv.add_argument("--policy", default=None, help="rlhf-gym.toml with the [feedback] section (default ./rlhf-gym.toml)")
    inv.add_argument("--expires-days", type=float, default=30.0,
                     help="the invite link stops working after this many days (0: only when revoked)")
    inv.add_argument("--json", action="store_true")
    inv.set_defaults(func=cmd_invite)

    rv = asub.add_parser("revoke", help="make a person's invite link fail and end every session of theirs")
    _db_arg(rv)
    rv.add_argument("annotator_id")
    rv.add_argument("--reason", default="", help="recorded in the audit log")
    rv.set_defaults(func=cmd_revoke)
    ri = asub.add_parser("reinvite", help="a fresh invite link for an existing person (the old one stops working)")
    _db_arg(ri)
    ri.add_argument("annotator_id")
    ri.add_argument("--url", "--server", dest="url", default=os.environ.get("RLHF_GYM_SERVER", "http://127.0.0.1:8000"))
    ri.add_argument("--expires-days", type=float, default=30.0, help="0: only when revoked")
    ri.set_defaults(func=cmd_reinvite)

    ls = asub.add_parser("list", help="annotators with consent state, label counts and models using them")
    _db_arg(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    w = asub.add_parser("withdraw", help="exclude every label of a person from now on and flag models trained on them")
    _db_arg(w)
    w.add_argument("annotator_id")
    w.add_argument("--reason", default="", help="recorded in the audit log")
    w.add_argument("--actor", default="admin", help="who did it (recorded in the audit log)")
    w.set_defaults(func=cmd_withdraw)

    mu = asub.add_parser("models-using", help="every model trained on at least one label of this annotator")
    _db_arg(mu)
    mu.add_argument("annotator_id")
    mu.add_argument("--json", action="store_true")
    mu.set_defaults(func=cmd_models_using)

    g = asub.add_parser("gold", help="seed (or clear) an attention check: the known answer of a stored query")
    _db_arg(g)
    g.add_argument("query_id")
    g.add_argument("value", help="1 = left/good, 0 = right/bad, 0.5 = equal, 'none' clears it")
    g.set_defaults(func=cmd_gold)

    au = subparsers.add_parser("audit", help="check the hash-chained audit log")
    ausub = au.add_subparsers(dest="audit_command", required=True)
    v = ausub.add_parser("verify", help="check the chain; names the first broken entry (exit status 1 if broken)")
    _db_arg(v)
    v.add_argument("--expect", default=None, metavar="SEQ:HASH",
                   help="a head printed earlier by 'audit head': fail unless that entry is still there unchanged")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)
    h = ausub.add_parser("head", help="print SEQ:HASH of the last entry, to keep somewhere else")
    _db_arg(h)
    h.set_defaults(func=cmd_head)

    r = subparsers.add_parser("report", help="agreement and bias reports")
    rsub = r.add_subparsers(dest="report_command", required=True)
    ra = rsub.add_parser("annotators", help="labels, agreement (Cohen, Fleiss), flags per annotator")
    _db_arg(ra)
    ra.add_argument("--run", default=None, help="only this run's queries")
    ra.add_argument("--json", action="store_true", help="print the report as JSON")
    ra.add_argument("--policy", default=None,
                    help="rlhf-gym.toml whose [monitoring] sets thresholds and weighting (default ./rlhf-gym.toml)")
    ra.set_defaults(func=cmd_report)

    e = subparsers.add_parser("export", help="export all labels (JSONL, Parquet) and the audit log; each is audited")
    _db_arg(e)
    e.add_argument("--out", required=True, help="folder for labels.jsonl, labels.parquet and audit.jsonl")
    e.add_argument("--format", default="jsonl,parquet", help="comma list of jsonl, parquet")
    e.add_argument("--no-audit-log", action="store_true", help="do not write audit.jsonl")
    e.add_argument("--run", default=None, help="only this run's labels")
    e.add_argument("--actor", default="admin")
    e.set_defaults(func=cmd_export)

    i = subparsers.add_parser("import", help="import labels exported by 'rlhf-gym export' (consent rules apply)")
    _db_arg(i)
    i.add_argument("file")
    i.add_argument("--attest-consent", action="store_true",
                   help="you hold the consent of people in the file who have none on record (audited)")
    i.add_argument("--actor", default="admin")
    i.set_defaults(func=cmd_import)


# -- handlers ----------------------------------------------------------------------------------------
def cmd_invite(args: argparse.Namespace) -> int:
    from rlhf_gym.governance.annotators import invite_annotator, invite_link
    from rlhf_gym.governance.consent import load_policy

    if args.expires_days < 0:
        raise ValueError(f"--expires-days must be >= 0, got {args.expires_days}")
    policy = load_policy(args.policy)
    store = _store(args, must_exist=False)
    aid, token = invite_annotator(store, args.id, role=args.role, contact=args.contact, policy=policy,
                                  ttl=args.expires_days * 86400 or None)
    link = invite_link(args.url, token)
    if args.json:
        print(json.dumps({"id": aid, "token": token, "link": link}))
    else:
        print(f"invited {aid} ({args.role}); the token is shown only once:")
        print(link)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    n = _store(args).revoke_invite(args.annotator_id, reason=args.reason)
    print(f"revoked the invite of {args.annotator_id}; {n} session(s) ended")
    return 0


def cmd_reinvite(args: argparse.Namespace) -> int:
    from rlhf_gym.governance.annotators import invite_link

    if args.expires_days < 0:
        raise ValueError(f"--expires-days must be >= 0, got {args.expires_days}")
    token = _store(args).reissue_invite(args.annotator_id, ttl=args.expires_days * 86400 or None)
    print(f"new invite for {args.annotator_id} (the old link no longer works); shown only once:")
    print(invite_link(args.url, token))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rlhf_gym.governance.annotators import annotator_summaries

    rows = annotator_summaries(_store(args))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'annotator':24} {'kind':9} {'role':9} {'labels':>6} {'withdrawn':>9}  consent          models")
    for r in rows:
        c = r["consent"]
        cons = "-" if c is None else (c["version"] if c["agreed"] else "declined " + c["version"])
        state = "WITHDRAWN" if r["withdrawn_at"] else ""
        print(f"{r['id']:24} {r['kind']:9} {r['role']:9} {r['labels']:>6} {r['labels_withdrawn']:>9}  "
              f"{cons:16} {len(r['models_using'])} {state}".rstrip())
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    store = _store(args)
    res = store.withdraw_annotator(args.annotator_id, actor=args.actor, reason=args.reason)
    print(f"withdrew {res['annotator']}: {res['labels_withdrawn']} labels excluded from all future training and "
          f"exports")
    if res["models_flagged"]:
        print("models flagged for retraining (rlhf-gym reward retrain): " + ", ".join(res["models_flagged"]))
    else:
        print("no model was trained on their labels")
    return 0


def cmd_models_using(args: argparse.Namespace) -> int:
    store = _store(args)
    if store.annotator(args.annotator_id) is None:
        raise ValueError(f"unknown annotator {args.annotator_id!r}")
    ids = store.models_using(args.annotator_id)
    models = {m.id: m for m in store.models()}
    rows = [{"id": i, "kind": models[i].kind, "path": models[i].path, "flagged": models[i].flagged} for i in ids]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']}  {r['kind']}  {r['path']}" + (f"  FLAGGED: {r['flagged']}" if r["flagged"] else ""))
        if not rows:
            print(f"no model was trained on labels of {args.annotator_id}")
    return 0


def cmd_gold(args: argparse.Namespace) -> int:
    value: float | None
    if args.value.lower() == "none":
        value = None
    else:
        try:
            value = float(args.value)
        except ValueError as e:
            raise ValueError(f"gold value must be a number in [0, 1] or 'none', got {args.value!r}") from e
    _store(args).set_gold(args.query_id, value)
    print(f"query {args.query_id}: gold answer {'cleared' if value is None else value}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    expect = None
    if args.expect:
        seq, _, h = args.expect.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise ValueError(f"--expect must be SEQ:HASH as printed by 'rlhf-gym audit head', got {args.expect!r}")
        expect = (int(seq), h)
    res = _store(args).verify_audit(expect)
    if args.json:
        print(json.dumps({"ok": res.ok, "entries": res.entries, "first_bad_seq": res.first_bad_seq,
                          "reason": res.reason, "head": None if not res.ok or res.head_seq is None
                          else f"{res.head_seq}:{res.head_hash}"}))
    elif res.ok:
        print(f"audit log intact: {res.entries} entries" + (f", head {res.head_seq}:{res.head_hash}"
                                                             if res.head_seq else ""))
    else:
        print(f"audit log BROKEN at entry {res.first_bad_seq}: {res.reason}", file=sys.stderr)
    return 0 if res.ok else 1


def cmd_head(args: argparse.Namespace) -> int:
    res = _store(args).verify_audit()
    if not res.ok:
        print(f"audit log BROKEN at entry {res.first_bad_seq}: {res.reason}", file=sys.stderr)
        return 1
    print("0:" + "0" * 64 if res.head_seq is None else f"{res.head_seq}:{res.head_hash}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rlhf_gym.governance.bias import load_monitoring
    from rlhf_gym.governance.report import annotator_report, format_report

    settings, weighting = load_monitoring(args.policy)
    rep = annotator_report(_store(args), run_id=args.run, settings=settings, weighting=weighting)
    print(json.dumps(rep, indent=1) if args.json else format_report(rep))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rlhf_gym.governance.export import export_audit_log, export_labels_jsonl, export_labels_parquet

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = set(formats) - {"jsonl", "parquet"}
    if bad or not formats:
        raise ValueError(f"--format takes a comma list of jsonl, parquet; got {args.format!r}")
    store = _store(args)
    out = Path(args.out)
    if "jsonl" in formats:
        n = export_labels_jsonl(store, out / "labels.jsonl", run_id=args.run, actor=args.actor)
        print(f"{n} labels -> {out / 'labels.jsonl'}")
    if "parquet" in formats:
        n = export_labels_parquet(store, out / "labels.parquet", run_id=args.run, actor=args.actor)
        print(f"{n} labels -> {out / 'labels.parquet'}")
    if not args.no_audit_log:
        n = export_audit_log(store, out / "audit.jsonl", actor=args.actor)
        print(f"{n} audit entries -> {out / 'audit.jsonl'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise FileNotFoundError(f"no such file: {args.file}")
    store = _store(args, must_exist=False)
    n = store.import_jsonl(args.file, actor=args.actor, attest_consent=args.attest_consent)
    print(f"imported {n} labels from {args.file}")
    last = store.audit_entries()[-1]["payload"]
    if last.get("skipped_withdrawn"):
        print(f"skipped {last['skipped_withdrawn']} labels of withdrawn annotators: "
              + ", ".join(last["withdrawn_annotators"]))
    return 0

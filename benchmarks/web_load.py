"""Load and crash benchmark of the annotation app, on loopback only.

For each backend (SQLite; PostgreSQL too when RLHF_GYM_TEST_PG_URL is set) a real ``rlhf-gym serve``
process is started on 127.0.0.1, N annotators (default 50) each post M labels (default 100)
concurrently, and the store is then read directly:

* load run: every acknowledged (2xx) label is stored exactly once, nothing else is stored;
  p50/p99 latency and labels/s; then rendered clips are fetched (p50/p99, alone and while labels
  are being posted);
* crash run: the server is killed with SIGKILL once a share of the labels is acknowledged; after a
  restart on the same store every label that got a 2xx is there (once); each client then resends
  its next two unacknowledged labels (the one in flight at the kill among them) with the same client
  keys, after which every stored label is acknowledged exactly once (a resend of a label stored
  without its ack gets 409 naming it).

* pace run: N annotators (default 50) each post one label every 1-3 s while a trivial GET is timed,
  and the GET's p99 is compared with its p99 on the idle server (same run);
* during the load run an owner's ``rlhf-gym export`` runs in another process; it must succeed and be
  audited, and the audit chain must verify after the load and after the crash run.

Client and server share the machine's cores; the client's share of the CPU time is reported.
Bounded in count and time (``--max-seconds``); prints a table and writes
``benchmarks/results/web_load.json``.

    python benchmarks/web_load.py                  # 50 x 100, SQLite (+ PostgreSQL x1, x2 if configured)
    python benchmarks/web_load.py --annotators 5 --labels 10 --backends sqlite   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rlhf_gym.governance.consent import FeedbackPolicy  # noqa: E402
from rlhf_gym.store import FeedbackStore, resolve_url  # noqa: E402
from rlhf_gym.types import PairQuery, Segment, StepQuery  # noqa: E402

ADMIN = "bench-admin-" + secrets.token_hex(8)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


class Server:
    """``rlhf-gym serve`` in a child process on 127.0.0.1."""

    def __init__(self, db: str, clip_dir: Path, port: int, workers: int = 1) -> None:
        self.db, self.clip_dir, self.port, self.workers = db, clip_dir, port, workers
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlhf_gym.cli", "serve", "--db", self.db, "--port", str(self.port),
             "--admin-token", ADMIN, "--clip-dir", str(self.clip_dir), "--workers", str(self.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start within 60 s")

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and its worker processes (Linux /proc)."""
        if self.proc is None:
            return float("nan")
        tick = os.sysconf("SC_CLK_TCK")
        todo, total = [self.proc.pid], 0.0
        while todo:
            pid = todo.pop()
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / tick
                todo += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except (OSError, ValueError, IndexError):
                pass
        return total

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def setup_store(db: str, n_annot: int, prefix: str = "ann") -> dict[str, str]:
    """People with tokens who agreed to the current consent text; returns id -> token."""
    store = FeedbackStore(db)
    pol = FeedbackPolicy()
    tokens: dict[str, str] = {}
    for i in range(n_annot):
        aid = f"{prefix}-{i:04d}"
        tokens[aid] = secrets.token_urlsafe(16)
        store.add_annotator(aid, kind="human", token=tokens[aid])
        store.record_consent(aid, pol.consent_version, pol.purpose + "\n" + pol.consent_text, True)
    store.close()
    return tokens


def post_queries(url: str, run_id: str, n_labels: int, tokens: dict[str, str]) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        for aid in tokens:
            qs = [StepQuery.make(rng.normal(size=4), int(rng.integers(2)), step=t, episode=0, run_id=run_id)
                  for t in range(n_labels)]
            r = c.post("/api/admin/queries", json={"run_id": run_id, "env_id": "CartPole-v1", "assigned_to": aid,
                                                   "queries": [q.to_dict() for q in qs]})
            r.raise_for_status()
            out[aid] = [q.id for q in qs]
    return out


def annotator(url: str, aid: str, token: str, qids: list[str], acked: dict, lat: list[float],
              errors: list[str], stop: threading.Event | None = None, limit: int | None = None) -> None:
    """Post one label per query; record which got a 2xx (the ack) and how long each took.

    A label whose request failed is not retried here; a later call (after a restart) resends it with
    the same client key, and a 409 naming the stored label counts as its acknowledgement.
    """
    tried = 0
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
        for i, qid in enumerate(qids):
            key = f"{aid}:{qid}"
            if key in acked:
                continue
            if (stop is not None and stop.is_set()) or (limit is not None and tried >= limit):
                return
            tried += 1
            t = time.perf_counter()
            try:
                r = c.post("/api/feedback", json={"query_id": qid, "value": float(i % 2), "client_key": key})
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
                continue
            if r.status_code == 201:
                acked[key] = r.json()["feedback_id"]
                lat.append(time.perf_counter() - t)
            elif r.status_code == 409 and isinstance(r.json().get("detail"), dict):
                acked[key] = r.json()["detail"]["feedback_id"]  # a resend of a stored label: stored once
            else:
                errors.append(f"{r.status_code}: {r.text[:120]}")


def paced_annotator(url: str, aid: str, token: str, qids: list[str], until: float, lat: list[float],
                    errors: list[str], seed: int) -> None:
    """A person's pace: one label every 1-3 s (uniform), until the time is up."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
        time.sleep(float(rng.uniform(0, 3)))
        for i, qid in enumerate(qids):
            if time.monotonic() >= until:
                return
            t = time.perf_counter()
            try:
                r = c.post("/api/feedback", json={"query_id": qid, "value": float(i % 2), "client_key": f"p:{aid}:{qid}"})
                if r.status_code == 201:
                    lat.append(time.perf_counter() - t)
                else:
                    errors.append(str(r.status_code))
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
            time.sleep(float(rng.uniform(1, 3)))


def trivial_gets(url: str, until: float, lat: list[float], every: float = 0.05) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while time.monotonic() < until:
            t = time.perf_counter()
            if c.get("/api/health").status_code == 200:
                lat.append(time.perf_counter() - t)
            time.sleep(every)


def owner_export(db: str, out: Path, result: dict) -> None:
    """An owner's CLI command during the load (export is audited)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "rlhf_gym.cli", "export", "--db", db, "--out", str(out),
                        "--format", "jsonl"], env=env, capture_output=True, text=True, timeout=300)
    result.update(rc=r.returncode, stderr=r.stderr[-300:])


def fetch_clips(url: str, token: str, paths: list[str], n: int, lat: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(n):
            t = time.perf_counter()
            r = c.get(paths[i % len(paths)])
            if r.status_code == 200 and r.content:
                lat.append(time.perf_counter() - t)


def in_threads(jobs: list[tuple[Any, ...]], timeout: float) -> None:
    """Run ``fn(*args)`` for each job in its own thread (one per annotator) and wait, bounded in time."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as ex:
        futs = [ex.submit(fn, *args) for fn, *args in jobs]
        for f in futs:
            f.result(timeout=max(1.0, timeout))


def stored(db: str) -> dict[str, list[int]]:
    """client_key -> ids of the stored rows with that key (read from the store, not the server)."""
    from sqlalchemy import select

    from rlhf_gym.store.schema import FeedbackRow

    s = FeedbackStore(db)
    try:
        with s.session() as sess:
            rows = sess.execute(select(FeedbackRow.client_key, FeedbackRow.id)).all()
    finally:
        s.close()
    out: dict[str, list[int]] = {}
    for k, i in rows:
        out.setdefault(k, []).append(i)
    return out


def make_pair_queries(run_id: str, n: int) -> list[PairQuery]:
    import gymnasium as gym

    from rlhf_gym.rollouts import cut_segments, rollout

    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    segs: list[Segment] = []
    seed = 0
    while len(segs) < 2 * n:
        segs += list(cut_segments(rollout(env, lambda _o: env.action_space.sample(), seed=seed), 20))
        seed += 1
    return [PairQuery.make(segs[2 * i], segs[2 * i + 1], run_id=run_id) for i in range(n)]


def fresh_db(backend: str, tmp: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        return str(tmp / "load.db"), None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(resolve_url(os.environ["RLHF_GYM_TEST_PG_URL"]))
    name = f"rlhf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def check_exactly_once(acked: dict[str, int], rows: dict[str, list[int]]) -> dict[str, int]:
    missing = [k for k in acked if k not in rows]
    dup = [k for k, ids in rows.items() if len(ids) > 1]
    wrong = [k for k, fid in acked.items() if k in rows and rows[k] != [fid]]
    return {"acked": len(acked), "stored": sum(len(v) for v in rows.values()), "acked_missing": len(missing),
            "duplicates": len(dup), "ack_id_mismatch": len(wrong)}


def run_backend(spec: str, n_annot: int, n_labels: int, crash_at: float, deadline: float, pace_s: float,
                pace_annot: int) -> dict[str, Any]:
    backend, _, w = spec.partition(":")
    workers = int(w or 1)
    res: dict[str, Any] = {"backend": backend, "workers": workers, "spec": spec}
    with tempfile.TemporaryDirectory(prefix="rlhf-load-") as d:
        tmp = Path(d)
        # ---- load run ---------------------------------------------------------------------------
        db, drop = fresh_db(backend, tmp)
        try:
            tokens = setup_store(db, n_annot)
            srv = Server(db, tmp / "clips", free_port(), workers)
            srv.start()
            try:
                qids = post_queries(srv.url, "load", n_labels, tokens)
                acked: dict[str, int] = {}
                lat: list[float] = []
                errors: list[str] = []
                export: dict[str, Any] = {}
                cpu0, srv0 = time.process_time(), srv.cpu_s()
                t0 = time.perf_counter()
                in_threads([(annotator, srv.url, a, tokens[a], qids[a], acked, lat, errors) for a in tokens]
                           + [(owner_export, db, tmp / "export", export)], deadline - time.monotonic())
                wall = time.perf_counter() - t0
                client_cpu, server_cpu = time.process_time() - cpu0, srv.cpu_s() - srv0
                log(f"{spec}: {len(acked)} labels in {wall:.1f} s")
                vs = FeedbackStore(db)
                audit_ok = vs.verify_audit().ok
                exports_audited = sum(e["action"] == "export.labels" for e in vs.audit_entries())
                vs.close()
                res["load"] = {"annotators": n_annot, "labels_each": n_labels, "wall_s": round(wall, 2),
                               "labels_per_s": round(len(acked) / wall, 1), "p50_ms": round(pct(lat, 50), 1),
                               "p99_ms": round(pct(lat, 99), 1), "errors": len(errors),
                               "error_examples": sorted(set(errors))[:3],
                               "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1),
                               "client_cpu_share": round(client_cpu / max(1e-9, client_cpu + server_cpu), 2),
                               "owner_export_rc": export.get("rc"), "owner_export_audited": exports_audited,
                               "audit_ok": audit_ok, **check_exactly_once(acked, stored(db))}
                # ---- a person's pace: one label every 1-3 s each; a trivial GET alone and under that load ---
                idle: list[float] = []
                trivial_gets(srv.url, time.monotonic() + 5, idle)
                ptokens = setup_store(db, pace_annot, prefix="pace")
                pq = post_queries(srv.url, "pace", int(pace_s) + 5, ptokens)
                plat: list[float] = []
                perr: list[str] = []
                busy_get: list[float] = []
                until = time.monotonic() + pace_s
                in_threads([(paced_annotator, srv.url, a, ptokens[a], pq[a], until, plat, perr, i)
                            for i, a in enumerate(ptokens)] + [(trivial_gets, srv.url, until, busy_get)],
                           deadline - time.monotonic() + pace_s)
                res["pace"] = {"annotators": pace_annot, "seconds": pace_s, "labels": len(plat), "errors": len(perr),
                               "p50_ms": round(pct(plat, 50), 1), "p99_ms": round(pct(plat, 99), 1),
                               "get_idle_p99_ms": round(pct(idle, 99), 1), "get_loaded_p99_ms": round(pct(busy_get, 99), 1),
                               "get_p99_ratio": round(pct(busy_get, 99) / max(1e-9, pct(idle, 99)), 2)}
                log(f"{spec}: pace run {len(plat)} labels, p99 {res['pace']['p99_ms']} ms")
                # ---- clips: render once, then time fetches alone and under label load ----------
                a0 = next(iter(tokens))
                pairs = make_pair_queries("load", 4)
                with httpx.Client(base_url=srv.url, timeout=120, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
                    c.post("/api/admin/queries", json={"run_id": "load", "assigned_to": a0,
                                                       "queries": [q.to_dict() for q in pairs]}).raise_for_status()
                paths = [f"/api/clips/{q.id}/{side}" for q in pairs for side in ("left", "right")]
                with httpx.Client(base_url=srv.url, timeout=120, headers={"Authorization": f"Bearer {tokens[a0]}"}) as c:
                    t = time.perf_counter()
                    for p in paths:
                        c.get(p).raise_for_status()
                    first = (time.perf_counter() - t) / len(paths)
                clip_lat: list[float] = []
                in_threads([(fetch_clips, srv.url, tokens[a0], paths, 100, clip_lat) for _ in range(4)],
                           deadline - time.monotonic())
                busy_lat: list[float] = []
                more = post_queries(srv.url, "load2", 10, tokens)
                acked2: dict[str, int] = {}
                in_threads([(annotator, srv.url, a, tokens[a], more[a], acked2, [], []) for a in tokens]
                           + [(fetch_clips, srv.url, tokens[a0], paths, 50, busy_lat) for _ in range(4)],
                           deadline - time.monotonic())
                res["clips"] = {"first_render_ms": round(first * 1000, 1), "fetches": len(clip_lat),
                                "p50_ms": round(pct(clip_lat, 50), 1), "p99_ms": round(pct(clip_lat, 99), 1),
                                "under_label_load_p50_ms": round(pct(busy_lat, 50), 1),
                                "under_label_load_p99_ms": round(pct(busy_lat, 99), 1)}
            finally:
                srv.stop()
        finally:
            if drop:
                drop()
        # ---- crash run --------------------------------------------------------------------------
        db, drop = fresh_db(backend, tmp / "crash") if backend != "sqlite" else (str(tmp / "crash.db"), None)
        try:
            tokens = setup_store(db, n_annot)
            srv = Server(db, tmp / "clips2", free_port(), workers)
            srv.start()
            qids = post_queries(srv.url, "crash", n_labels, tokens)
            acked = {}
            errors = []
            killed = threading.Event()
            target = int(crash_at * n_annot * n_labels)

            def killer() -> None:
                end = time.monotonic() + 120
                while len(acked) < target and time.monotonic() < end:
                    time.sleep(0.002)
                srv.kill()  # SIGKILL while the other threads are still posting
                killed.set()

            in_threads([(killer,)] + [(annotator, srv.url, a, tokens[a], qids[a], acked, [], errors, killed)
                                      for a in tokens], deadline - time.monotonic())
            acked_before = dict(acked)
            log(f"{spec}: crash run killed after {len(acked_before)} acks")
            rows = stored(db)  # read the store while the server is dead
            before = check_exactly_once(acked_before, rows)
            srv.start()  # restart on the same store; each client resends its next unacknowledged labels
            try:                # (among them the one in flight at the kill), with the same client keys
                in_threads([(annotator, srv.url, a, tokens[a], qids[a], acked, [], [], None, 2) for a in tokens],
                           deadline - time.monotonic())
            finally:
                srv.stop()
            after = check_exactly_once(acked, stored(db))
            vs = FeedbackStore(db)
            after["audit_ok"] = vs.verify_audit().ok
            vs.close()
            res["crash"] = {"killed_after_acks": len(acked_before), "stored_at_kill": before["stored"],
                            "acked_missing_after_restart": before["acked_missing"],
                            "duplicates_at_kill": before["duplicates"],
                            "stored_without_ack": before["stored"] - before["acked"] + before["acked_missing"],
                            "after_resend": after, "client_errors_during_kill": len(errors)}
        finally:
            if drop:
                drop()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--labels", type=int, default=100, help="labels per annotator")
    ap.add_argument("--backends", default="auto",
                    help="comma list of sqlite, postgresql[:WORKERS]; auto = sqlite, postgresql:1, postgresql:2 "
                         "(PostgreSQL rows only when RLHF_GYM_TEST_PG_URL is set)")
    ap.add_argument("--pace-seconds", type=float, default=30, help="length of the person-paced run")
    ap.add_argument("--pace-annotators", type=int, default=50, help="annotators in the person-paced run")
    ap.add_argument("--crash-at", type=float, default=0.4, help="share of labels acknowledged before SIGKILL")
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "web_load.json"))
    args = ap.parse_args(argv)
    if not (1 <= args.annotators <= 200 and 1 <= args.labels <= 1000):
        ap.error("--annotators must be in 1..200 and --labels in 1..1000 (the benchmark is bounded)")
    backends = ["sqlite", "postgresql:1", "postgresql:2"] if args.backends == "auto" else args.backends.split(",")
    if any(b.startswith("postgresql") for b in backends) and not os.environ.get("RLHF_GYM_TEST_PG_URL"):
        if args.backends != "auto":
            ap.error("postgresql needs RLHF_GYM_TEST_PG_URL")
        backends = [b for b in backends if not b.startswith("postgresql")]
    if not 1 <= args.pace_annotators <= 2000:
        ap.error("--pace-annotators must be in 1..2000")
    deadline = time.monotonic() + args.max_seconds
    results = [run_backend(b, args.annotators, args.labels, args.crash_at, deadline, args.pace_seconds,
                           args.pace_annotators) for b in backends]

    print(f"\nweb_load: {args.annotators} annotators x {args.labels} labels on 127.0.0.1 "
          f"({os.cpu_count()} CPUs, {platform.python_version()})")
    hdr = f"{'backend':<14}{'labels/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'acked':>7}{'stored':>7}{'dup':>5}{'lost':>5}" \
          f"{'cli cpu':>8}{'pace p99':>9}{'GET x':>6}{'clip p99':>9}{'crash: acked':>13}{'lost':>5}{'after':>7}" \
          f"{'dup':>5}{'audit':>6}"
    print(hdr)
    print("-" * len(hdr))
    ok = True
    for r in results:
        ld, cl, cr, pc = r["load"], r["clips"], r["crash"], r["pace"]
        audit_ok = ld["audit_ok"] and cr["after_resend"]["audit_ok"] and ld["owner_export_rc"] == 0
        print(f"{r['spec']:<14}{ld['labels_per_s']:>9.1f}{ld['p50_ms']:>8.1f}{ld['p99_ms']:>8.1f}{ld['acked']:>7}"
              f"{ld['stored']:>7}{ld['duplicates']:>5}{ld['acked_missing']:>5}{ld['client_cpu_share']:>8.2f}"
              f"{pc['p99_ms']:>9.1f}{pc['get_p99_ratio']:>6.2f}{cl['p99_ms']:>9.1f}"
              f"{cr['killed_after_acks']:>13}{cr['acked_missing_after_restart']:>5}"
              f"{cr['after_resend']['stored']:>7}{cr['after_resend']['duplicates']:>5}{str(audit_ok):>6}")
        ok &= (ld["acked"] == ld["stored"] == args.annotators * args.labels and ld["duplicates"] == 0
               and ld["acked_missing"] == 0 and cl["p99_ms"] < 100 and cr["acked_missing_after_restart"] == 0
               and cr["after_resend"]["duplicates"] == 0 and cr["after_resend"]["acked_missing"] == 0
               and cr["after_resend"]["stored"] == cr["after_resend"]["acked"] and audit_ok)
    print("all acknowledged labels stored exactly once, clip p99 < 100 ms, nothing lost at SIGKILL, audit chain "
          "intact, owner export during load succeeded:", ok)
    print("targets (reported, not asserted): labels/s >= 500 SQLite, >= 1000 PostgreSQL x2; p99 < 100 ms; pace p99 "
          "< 50 ms; GET x (loaded/idle GET p99) <= 2. 'cli cpu' = the load client's share of the CPU time "
          "(client and server share the same cores).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python benchmarks/web_load.py " + " ".join(argv or sys.argv[1:]),
                               "annotators": args.annotators, "labels_each": args.labels, "cpus": os.cpu_count(),
                               "pace_seconds": args.pace_seconds, "pace_annotators": args.pace_annotators,
                               "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
                               "ok": ok, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

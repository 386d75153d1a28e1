"""Load and crash benchmark of the annotation app, on loopback only.

For each backend (SQLite; PostgreSQL with 1 and 2 workers when RLHF_GYM_TEST_PG_URL is set) a real
``rlhf-gym serve`` process is started on 127.0.0.1 and the store is read directly afterwards:

* load run: N annotators (default 50) each post M labels (default 100) without pause while an owner
  runs ``export``, ``annotators withdraw`` (a bystander) and ``annotators gold`` from the CLI, each in
  its own process; every acknowledged (2xx) label is stored exactly once and nothing else is; labels/s
  and p50/p99; each owner command succeeds and is audited;
* pace run: 50 annotators each post one label every 1-3 s while a trivial GET is timed from its own
  process; its p99 is compared with its p99 on the idle server (same run);
* crowd run (PostgreSQL): 1,000 annotators at that pace, answering one shared set of queries;
* clips: rendered clips fetched alone and while labels are being posted;
* SIGKILL runs: every server process (the whole process group) killed once a share of the labels is
  acknowledged, then restarted on the same store; and, with several workers, one worker killed while
  the others serve. Every label acknowledged before the kill is there once; the clients then resend
  what was not acknowledged with the same client keys, after which every stored label is
  acknowledged exactly once (a resend of a label stored without its ack gets 409 naming it) and the
  audit chain verifies.

The clients are asyncio coroutines, one keep-alive HTTP connection per annotator, because client and
server share the machine's cores; the client's share of the CPU time is reported with the figures.
Prints a table and writes ``benchmarks/results/web_load.json``.

    python benchmarks/web_load.py                  # 50 x 100, SQLite (+ PostgreSQL x1, x2 if configured)
    python benchmarks/web_load.py --annotators 5 --labels 10 --crowd 50 --pace-seconds 5 --backends sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
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
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
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

    def workers_pids(self) -> list[int]:
        """The worker processes of ``--workers N`` (children of the supervisor); empty with one process."""
        if self.proc is None or self.workers == 1:
            return []
        try:
            kids = [int(x) for x in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []
        out = []
        for k in kids:  # uvicorn's workers are spawned python processes; skip multiprocessing's helper
            try:
                cmd = Path(f"/proc/{k}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmd:
                out.append(k)
        return out

    def kill(self) -> None:
        """SIGKILL the server and every worker process (its whole process group) at once."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def connections(self, pid: int) -> int:
        """Client connections (ESTABLISHED on our port) this process holds, from /proc/net/tcp and its fds."""
        port_hex = f":{self.port:04X}"
        inodes = set()
        for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = ln.split()
            if f[1].endswith(port_hex) and f[3] == "01":
                inodes.add(f[9])
        n = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    n += link.startswith("socket:[") and link[8:-1] in inodes
        return n

    def kill_one_worker(self) -> tuple[int, int] | None:
        """SIGKILL the worker holding most client connections; the others keep serving (uvicorn starts a
        new one). Returns (pid, its connections)."""
        pids = self.workers_pids()
        if not pids:
            return None
        conns = {p: self.connections(p) for p in pids}
        pid = max(conns, key=lambda p: conns[p])
        os.kill(pid, signal.SIGKILL)
        return pid, conns[pid]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc:  # no worker outlives its supervisor
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


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


class Http:
    """One keep-alive HTTP/1.1 connection (asyncio streams), as a browser tab keeps one.

    Much lighter than a thread with an httpx client per annotator, so the load client takes a small
    share of the two cores it shares with the server (its share is still measured and reported).
    Any failure closes the connection (the next request opens a new one) and raises ConnectionError.
    """

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.extra = f"Authorization: Bearer {token}\r\n" if token else ""
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._request(method, path, body), timeout)
        except (TimeoutError, OSError, EOFError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            self.close()
            raise ConnectionError(f"{type(e).__name__}: {e}") from e

    async def _request(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.r is not None
        data = b"" if body is None else json.dumps(body).encode()
        self.w.write((f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{self.extra}"
                      f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data)
        lines = (await self.r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in hdrs:
            payload = await self.r.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip(), 16)
                parts.append((await self.r.readexactly(size + 2))[:-2])
                if size == 0:
                    break
            payload = b"".join(parts)
        else:
            payload = await self.r.read()
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


async def annotator(c: Http, aid: str, qids: list[str], acked: dict, lat: list[float], errors: list[str],
                    stop: asyncio.Event | None = None, limit: int | None = None,
                    first_lat: list[float] | None = None) -> None:
    """Post one label per query; record which got a 2xx (the ack) and how long each took (the first
    acknowledged label, which also opens the connection, in ``first_lat`` instead when given).

    A label whose request failed is not retried here; a later call (after a restart) resends it with
    the same client key, and a 409 naming the stored label counts as its acknowledgement.
    """
    tried = 0
    for i, qid in enumerate(qids):
        key = f"{aid}:{qid}"
        if key in acked:
            continue
        if (stop is not None and stop.is_set()) or (limit is not None and tried >= limit):
            return
        tried += 1
        t = time.perf_counter()
        try:
            status, body = await c.request("POST", "/api/feedback",
                                           {"query_id": qid, "value": float(i % 2), "client_key": key})
        except ConnectionError as e:
            errors.append(str(e).split(":")[0])
            continue
        if status == 201:
            acked[key] = json.loads(body)["feedback_id"]
            (first_lat if first_lat is not None and tried == 1 else lat).append(time.perf_counter() - t)
        elif status == 409 and isinstance(json.loads(body).get("detail"), dict):
            acked[key] = json.loads(body)["detail"]["feedback_id"]  # a resend of a stored label: stored once
        else:
            errors.append(f"{status}: {body[:120]!r}")


async def paced_annotator(c: Http, aid: str, qids: list[str], until: float, lat: list[float], errors: list[str],
                          seed: int) -> None:
    """A person's pace: one label every 1-3 s (uniform), until the time is up."""
    rng = np.random.default_rng(seed)
    await asyncio.sleep(float(rng.uniform(0, 3)))
    for i, qid in enumerate(qids):
        if time.monotonic() >= until:
            return
        t = time.perf_counter()
        try:
            status, body = await c.request("POST", "/api/feedback", {"query_id": qid, "value": float(i % 2),
                                                                     "client_key": f"p:{aid}:{qid}"})
            if status == 201:
                lat.append(time.perf_counter() - t)
            else:
                errors.append(f"{status}: {body[:80]!r}")
        except ConnectionError as e:
            errors.append(str(e).split(":")[0])
        await asyncio.sleep(float(rng.uniform(1, 3)))


_PROBE = """
import http.client, json, sys, time
port, seconds, every = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
lat, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t = time.perf_counter()
    c.request("GET", "/api/health")
    r = c.getresponse(); r.read()
    if r.status == 200:
        lat.append(time.perf_counter() - t)
    time.sleep(every)
print(json.dumps({"lat": lat, "cpu_s": time.process_time()}))
"""


def start_probe(port: int, seconds: float, every: float = 0.05) -> subprocess.Popen:
    """A trivial GET every ``every`` s from its own process (so the load client's loop does not delay it)."""
    return subprocess.Popen([sys.executable, "-c", _PROBE, str(port), str(seconds), str(every)],
                            stdout=subprocess.PIPE, text=True)


def probe_result(p: subprocess.Popen) -> tuple[list[float], float]:
    out, _ = p.communicate(timeout=600)
    d = json.loads(out)
    return d["lat"], float(d["cpu_s"])


def owner_commands(db: str, out: Path, bystander: str, gold_query: str, result: dict) -> None:
    """An owner's CLI commands during the load, each in its own process: export, withdraw a person, seed gold."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cli = [sys.executable, "-m", "rlhf_gym.cli"]
    cmds = {"export": ["export", "--db", db, "--out", str(out), "--format", "jsonl"],
            "withdraw": ["annotators", "withdraw", "--db", db, bystander, "--reason", "benchmark"],
            "gold": ["annotators", "gold", "--db", db, gold_query, "1"]}
    for name, args in cmds.items():
        r = subprocess.run(cli + args, env=env, capture_output=True, text=True, timeout=300)
        result[name] = {"rc": r.returncode, "stderr": r.stderr[-300:]}


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


def post_shared_queries(url: str, run_id: str, n: int) -> list[str]:
    """``n`` step queries open to every annotator (several people answer each, one answer per person)."""
    rng = np.random.default_rng(1)
    qs = [StepQuery.make(rng.normal(size=4), int(rng.integers(2)), step=t, episode=0, run_id=run_id) for t in range(n)]
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        c.post("/api/admin/queries", json={"run_id": run_id, "env_id": "CartPole-v1",
                                           "queries": [q.to_dict() for q in qs]}).raise_for_status()
    return [q.id for q in qs]


def verify(db: str, actions: tuple[str, ...] = ()) -> dict[str, Any]:
    """Audit chain verified, and how many entries of each of ``actions`` it holds."""
    vs = FeedbackStore(db)
    try:
        acts = [e["action"] for e in vs.audit_entries()] if actions else []
        return {"audit_ok": vs.verify_audit().ok, **{f"audited_{a}": acts.count(a) for a in actions}}
    finally:
        vs.close()


async def _load(port: int, tokens: dict[str, str], qids: dict[str, list[str]], acked: dict, lat: list[float],
                errors: list[str], owner: Any = None, first_lat: list[float] | None = None) -> float:
    """Every annotator posting at once (and the owner's commands meanwhile); returns the labels' wall time."""
    conns = {a: Http(port, tokens[a]) for a in tokens}
    side = asyncio.ensure_future(asyncio.to_thread(owner)) if owner is not None else None
    t0 = time.perf_counter()
    await asyncio.gather(*[annotator(conns[a], a, qids[a], acked, lat, errors, first_lat=first_lat)
                           for a in tokens])
    wall = time.perf_counter() - t0
    for c in conns.values():
        c.close()
    if side is not None:
        await side
    return wall


def load_run(spec: str, srv: Server, db: str, tmp: Path, n_annot: int, n_labels: int) -> dict[str, Any]:
    """Annotators posting without pause, an owner's commands meanwhile; every ack stored exactly once."""
    tokens = setup_store(db, n_annot)
    setup_store(db, 1, prefix="bystander")
    qids = post_queries(srv.url, "load", n_labels, tokens)
    acked: dict[str, int] = {}
    lat: list[float] = []
    errors: list[str] = []
    owner: dict[str, Any] = {}
    first = qids[next(iter(qids))][0]
    cpu0, srv0 = time.process_time(), srv.cpu_s()
    first_lat: list[float] = []
    wall = asyncio.run(_load(srv.port, tokens, qids, acked, lat, errors,
                             lambda: owner_commands(db, tmp / "export", "bystander-0000", first, owner), first_lat))
    client_cpu, server_cpu = time.process_time() - cpu0, srv.cpu_s() - srv0
    log(f"{spec}: {len(acked)} labels in {wall:.1f} s")
    v = verify(db, ("export.labels", "annotator.withdraw", "gold.set"))
    owner_ok = all(o["rc"] == 0 for o in owner.values()) and len(owner) == 3 and all(
        v[f"audited_{a}"] >= 1 for a in ("export.labels", "annotator.withdraw", "gold.set"))
    return {"annotators": n_annot, "labels_each": n_labels, "wall_s": round(wall, 2),
            "labels_per_s": round(len(acked) / wall, 1), "p50_ms": round(pct(lat + first_lat, 50), 1),
            "p99_ms": round(pct(lat + first_lat, 99), 1),
            # each person's first label (it opens the connection; the server reads who they are) and the rest
            "first_label_p50_ms": round(pct(first_lat, 50), 1), "first_label_p99_ms": round(pct(first_lat, 99), 1),
            "p99_after_first_ms": round(pct(lat, 99), 1),
            "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1),
            "client_cpu_share": round(client_cpu / max(1e-9, client_cpu + server_cpu), 2),
            "owner_commands": owner, "owner_commands_ok": owner_ok, **v, **check_exactly_once(acked, stored(db))}


async def _paced(port: int, tokens: dict[str, str], qids: dict[str, list[str]], until: float, lat: list[float],
                 errors: list[str]) -> None:
    conns = {a: Http(port, tokens[a]) for a in tokens}
    await asyncio.gather(*[paced_annotator(conns[a], a, qids[a], until, lat, errors, i)
                           for i, a in enumerate(tokens)])
    for c in conns.values():
        c.close()


def pace_run(spec: str, srv: Server, db: str, n_annot: int, seconds: float, shared: bool, prefix: str) -> dict[str, Any]:
    """People at a person's pace (one label every 1-3 s each), a trivial GET timed alone and under that load."""
    t0 = time.perf_counter()
    tokens = setup_store(db, n_annot, prefix=prefix)
    if shared:  # many people: one set of queries open to all (each answers each once)
        common = post_shared_queries(srv.url, prefix, int(seconds) + 5)
        qids = {a: common for a in tokens}
    else:
        qids = post_queries(srv.url, prefix, int(seconds) + 5, tokens)
    setup_s = time.perf_counter() - t0
    idle, _ = probe_result(start_probe(srv.port, 5))
    lat: list[float] = []
    errors: list[str] = []
    probe = start_probe(srv.port, seconds)
    cpu0, srv0 = time.process_time(), srv.cpu_s()
    asyncio.run(_paced(srv.port, tokens, qids, time.monotonic() + seconds, lat, errors))
    client_cpu, server_cpu = time.process_time() - cpu0, srv.cpu_s() - srv0
    busy, probe_cpu = probe_result(probe)
    out = {"annotators": n_annot, "seconds": seconds, "setup_s": round(setup_s, 1), "labels": len(lat),
           "labels_per_s": round(len(lat) / seconds, 1), "errors": len(errors),
           "error_examples": sorted(set(errors))[:3], "p50_ms": round(pct(lat, 50), 1),
           "p99_ms": round(pct(lat, 99), 1), "get_idle_p99_ms": round(pct(idle, 99), 1),
           "get_loaded_p99_ms": round(pct(busy, 99), 1),
           "get_p99_ratio": round(pct(busy, 99) / max(1e-9, pct(idle, 99)), 2),
           "client_cpu_share": round((client_cpu + probe_cpu) / max(1e-9, client_cpu + probe_cpu + server_cpu), 2)}
    log(f"{spec}: pace run, {n_annot} annotators: {len(lat)} labels, p99 {out['p99_ms']} ms")
    return out


def clips_run(srv: Server, tokens: dict[str, str]) -> dict[str, Any]:
    """Rendered clips fetched alone and while labels are being posted."""
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
    in_threads([(fetch_clips, srv.url, tokens[a0], paths, 100, clip_lat) for _ in range(4)], 300)
    busy_lat: list[float] = []
    more = post_queries(srv.url, "load2", 10, tokens)

    def labels() -> None:
        asyncio.run(_load(srv.port, tokens, more, {}, [], []))

    in_threads([(labels,)] + [(fetch_clips, srv.url, tokens[a0], paths, 50, busy_lat) for _ in range(4)], 300)
    return {"first_render_ms": round(first * 1000, 1), "fetches": len(clip_lat),
            "p50_ms": round(pct(clip_lat, 50), 1), "p99_ms": round(pct(clip_lat, 99), 1),
            "under_label_load_p50_ms": round(pct(busy_lat, 50), 1),
            "under_label_load_p99_ms": round(pct(busy_lat, 99), 1)}


async def _crash(srv: Server, tokens: dict[str, str], qids: dict[str, list[str]], acked: dict, errors: list[str],
                 target: int, one: bool) -> dict[str, Any]:
    conns = {a: Http(srv.port, tokens[a]) for a in tokens}
    stop = asyncio.Event()
    info: dict[str, Any] = {}

    async def killer() -> None:
        end = time.monotonic() + 120
        while len(acked) < target and time.monotonic() < end:
            await asyncio.sleep(0.002)
        if one:
            killed = srv.kill_one_worker()  # the others go on serving
            info["killed_worker"], info["its_connections"] = killed if killed else (None, 0)
        else:
            srv.kill()  # SIGKILL of every process while the clients are still posting
            stop.set()
        info["killed_after_acks"] = len(acked)

    await asyncio.gather(killer(), *[annotator(conns[a], a, qids[a], acked, [], errors, stop) for a in tokens])
    for c in conns.values():
        c.close()
    return info


def crash_run(spec: str, backend: str, workers: int, tmp: Path, n_annot: int, n_labels: int, crash_at: float,
              one: bool) -> dict[str, Any]:
    """SIGKILL mid-load of every server process (``one=False``) or of one worker of several (``one=True``).

    Every label acknowledged before the kill must be stored once; the clients then resend what was not
    acknowledged with the same client keys (after a restart, or to the surviving workers), and every
    stored label must be acknowledged exactly once, the audit chain intact.
    """
    db, drop = fresh_db(backend, tmp)
    try:
        tokens = setup_store(db, n_annot)
        srv = Server(db, tmp / "clips", free_port(), workers)
        srv.start()
        try:
            qids = post_queries(srv.url, "crash", n_labels, tokens)
            acked: dict[str, int] = {}
            errors: list[str] = []
            info = asyncio.run(_crash(srv, tokens, qids, acked, errors, int(crash_at * n_annot * n_labels), one))
            acked_before = dict(acked)
            log(f"{spec}: {'one worker' if one else 'every process'} killed after {info['killed_after_acks']} acks")
            if one:
                before = check_exactly_once(acked_before, stored(db))
                time.sleep(1.0)  # the supervisor replaces the dead worker; the survivors served meanwhile
            else:
                before = check_exactly_once(acked_before, stored(db))  # read while the server is dead
                srv.start()  # restart on the same store

            async def resend() -> None:  # each client resends what was not acknowledged, same keys
                conns = {a: Http(srv.port, tokens[a]) for a in tokens}
                await asyncio.gather(*[annotator(conns[a], a, qids[a], acked, [], [], None, None if one else 2)
                                       for a in tokens])
                for c in conns.values():
                    c.close()

            asyncio.run(resend())
        finally:
            srv.stop()
        after = check_exactly_once(acked, stored(db))
        after.update(verify(db))
        return {**info, "stored_at_kill": before["stored"], "acked_missing_at_kill": before["acked_missing"],
                "duplicates_at_kill": before["duplicates"], "after_resend": after,
                "client_errors_during_kill": len(errors), "error_examples": sorted(set(errors))[:3]}
    finally:
        if drop:
            drop()


def run_backend(spec: str, n_annot: int, n_labels: int, crash_at: float, pace_s: float, pace_annot: int,
                crowd: int, load_only: bool = False) -> dict[str, Any]:
    backend, _, w = spec.partition(":")
    workers = int(w or 1)
    res: dict[str, Any] = {"backend": backend, "workers": workers, "spec": spec}
    with tempfile.TemporaryDirectory(prefix="rlhf-load-") as d:
        tmp = Path(d)
        db, drop = fresh_db(backend, tmp)
        try:
            srv = Server(db, tmp / "clips", free_port(), workers)
            srv.start()
            try:
                res["load"] = load_run(spec, srv, db, tmp, n_annot, n_labels)
                if load_only:
                    return res
                res["pace"] = pace_run(spec, srv, db, pace_annot, pace_s, shared=False, prefix="pace")
                if crowd and backend == "postgresql":
                    res["crowd"] = pace_run(spec, srv, db, crowd, pace_s, shared=True, prefix="crowd")
                res["clips"] = clips_run(srv, {a: t for a, t in setup_store(db, 1, prefix="clip").items()})
            finally:
                srv.stop()
        finally:
            if drop:
                drop()
        res["crash"] = crash_run(spec, backend, workers, tmp / "crash", n_annot, n_labels, crash_at, one=False)
        if workers > 1:
            res["crash_one_worker"] = crash_run(spec, backend, workers, tmp / "crash1", n_annot, n_labels, crash_at,
                                                one=True)
    return res


def _crash_ok(cr: dict[str, Any]) -> bool:
    a = cr["after_resend"]
    return (cr["acked_missing_at_kill"] == 0 and cr["duplicates_at_kill"] == 0 and a["acked_missing"] == 0
            and a["duplicates"] == 0 and a["stored"] == a["acked"] and a["ack_id_mismatch"] == 0 and a["audit_ok"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--labels", type=int, default=100, help="labels per annotator")
    ap.add_argument("--backends", default="auto",
                    help="comma list of sqlite, postgresql[:WORKERS]; auto = sqlite, postgresql:1, postgresql:2 "
                         "(PostgreSQL rows only when RLHF_GYM_TEST_PG_URL is set)")
    ap.add_argument("--pace-seconds", type=float, default=30, help="length of each person-paced run")
    ap.add_argument("--pace-annotators", type=int, default=50, help="annotators in the person-paced run")
    ap.add_argument("--crowd", type=int, default=1000,
                    help="annotators of the large person-paced run on PostgreSQL (0: none)")
    ap.add_argument("--crash-at", type=float, default=0.4, help="share of labels acknowledged before SIGKILL")
    ap.add_argument("--load-only", action="store_true",
                    help="only the no-pause load run (no pace, crowd, clip or crash runs): for paired timings")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "web_load.json"))
    args = ap.parse_args(argv)
    if not (1 <= args.annotators <= 200 and 1 <= args.labels <= 1000):
        ap.error("--annotators must be in 1..200 and --labels in 1..1000 (the benchmark is bounded)")
    if not (1 <= args.pace_annotators <= 2000 and 0 <= args.crowd <= 5000 and 1 <= args.pace_seconds <= 600):
        ap.error("--pace-annotators must be in 1..2000, --crowd in 0..5000, --pace-seconds in 1..600")
    backends = ["sqlite", "postgresql:1", "postgresql:2"] if args.backends == "auto" else args.backends.split(",")
    if any(b.startswith("postgresql") for b in backends) and not os.environ.get("RLHF_GYM_TEST_PG_URL"):
        if args.backends != "auto":
            ap.error("postgresql needs RLHF_GYM_TEST_PG_URL")
        backends = [b for b in backends if not b.startswith("postgresql")]
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = [run_backend(b, args.annotators, args.labels, args.crash_at, args.pace_seconds, args.pace_annotators,
                           args.crowd, args.load_only) for b in backends]
    if args.load_only:
        for r in results:
            ld = r["load"]
            print(f"{r['spec']}: {ld['labels_per_s']:.1f} labels/s, p50 {ld['p50_ms']:.1f} ms, p99 {ld['p99_ms']:.1f} ms "
                  f"(first labels p50 {ld['first_label_p50_ms']:.0f} p99 {ld['first_label_p99_ms']:.0f} ms, "
                  f"the rest p99 {ld['p99_after_first_ms']:.0f} ms), "
                  f"acked {ld['acked']} stored {ld['stored']} dup {ld['duplicates']} lost {ld['acked_missing']} "
                  f"errors {ld['errors']} audit {ld['audit_ok']} owner {ld['owner_commands_ok']} "
                  f"(load average before {load_before[0]}, at end {os.getloadavg()[0]:.2f})")
        return 0 if all(r["load"]["acked"] == r["load"]["stored"] and r["load"]["audit_ok"] for r in results) else 1

    print(f"\nweb_load: {args.annotators} annotators x {args.labels} labels on 127.0.0.1 "
          f"({os.cpu_count()} CPUs, {platform.python_version()}, load average before {load_before[0]})")
    hdr = (f"{'backend':<14}{'labels/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'acked':>7}{'stored':>7}{'dup':>5}{'lost':>5}"
           f"{'cli cpu':>8}{'pace p99':>9}{'GET x':>6}{'crowd p99':>10}{'clip p99':>9}{'kill all: lost':>15}"
           f"{'dup':>5}{'kill 1: lost':>13}{'dup':>5}{'audit':>6}")
    print(hdr)
    print("-" * len(hdr))
    ok = True
    for r in results:
        ld, cl, cr, pc = r["load"], r["clips"], r["crash"], r["pace"]
        c1 = r.get("crash_one_worker")
        crowd = r.get("crowd")
        audit_ok = ld["audit_ok"] and cr["after_resend"]["audit_ok"] and ld["owner_commands_ok"] and (
            c1 is None or c1["after_resend"]["audit_ok"])
        lost1 = "-" if c1 is None else str(c1["acked_missing_at_kill"] + c1["after_resend"]["acked_missing"])
        dup1 = "-" if c1 is None else str(c1["after_resend"]["duplicates"])
        print(f"{r['spec']:<14}{ld['labels_per_s']:>9.1f}{ld['p50_ms']:>8.1f}{ld['p99_ms']:>8.1f}{ld['acked']:>7}"
              f"{ld['stored']:>7}{ld['duplicates']:>5}{ld['acked_missing']:>5}{ld['client_cpu_share']:>8.2f}"
              f"{pc['p99_ms']:>9.1f}{pc['get_p99_ratio']:>6.2f}"
              f"{'-' if crowd is None else format(crowd['p99_ms'], '.1f'):>10}{cl['p99_ms']:>9.1f}"
              f"{cr['acked_missing_at_kill'] + cr['after_resend']['acked_missing']:>15}"
              f"{cr['after_resend']['duplicates']:>5}{lost1:>13}{dup1:>5}{str(audit_ok):>6}")
        ok &= (ld["acked"] == ld["stored"] == args.annotators * args.labels and ld["duplicates"] == 0
               and ld["acked_missing"] == 0 and _crash_ok(cr) and (c1 is None or _crash_ok(c1)) and audit_ok)
    print("every acknowledged label stored exactly once, nothing lost or duplicated at SIGKILL (all processes, "
          "and one worker of several), audit chain intact, owner commands during the load succeeded and audited:", ok)
    print("targets (reported, not asserted): labels/s >= 500 SQLite, >= 1000 PostgreSQL x2; p99 < 100 ms; pace p99 "
          "< 50 ms; GET x (loaded/idle GET p99) <= 2; crowd (1,000 people at a person's pace, PostgreSQL) p99 < 100 ms. "
          "'cli cpu' = the load client's share of the CPU time (client and server share the same cores).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python benchmarks/web_load.py " + " ".join(argv or sys.argv[1:]),
                               "annotators": args.annotators, "labels_each": args.labels, "cpus": os.cpu_count(),
                               "pace_seconds": args.pace_seconds, "pace_annotators": args.pace_annotators,
                               "crowd": args.crowd, "load_average_before": load_before,
                               "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                               "ok": ok, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

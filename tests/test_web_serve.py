"""`rlhf-gym serve` as a real process: loopback by default, and acknowledged labels survive SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from _web_helpers import ADMIN, TOKENS, add_people, free_port, make_queries
from rlhf_gym.store import FeedbackStore

SRC = str(Path(__file__).resolve().parents[1] / "src")


def start(db: Path, port: int, *extra: str, token: str | None = ADMIN) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RLHF_GYM_ADMIN_TOKEN", None)
    cmd = [sys.executable, "-m", "rlhf_gym.cli", "serve", "--db", str(db), "--port", str(port), *extra]
    if token:
        cmd += ["--admin-token", token]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def test_acknowledged_labels_survive_sigkill_of_the_server(tmp_path):
    db = tmp_path / "serve.db"
    store = FeedbackStore(db)
    add_people(store)
    store.close()
    port = free_port()
    qs = make_queries(n_pairs=1, n_steps=60)["step"]
    proc = start(db, port)
    try:
        _label_then_kill(db, port, proc, qs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    proc = start(db, port)  # and the server comes back on the same store
    try:
        s = FeedbackStore(db)
        n_alice = len(s.feedback(annotator_id="alice"))
        s.close()
        me = httpx.get(f"http://127.0.0.1:{port}/api/me", headers={"Authorization": f"Bearer {TOKENS['alice']}"}).json()
        assert me["progress"]["given"] == n_alice
    finally:
        proc.terminate()
        proc.wait(10)


def _label_then_kill(db: Path, port: int, proc: subprocess.Popen, qs: list) -> None:
    url = f"http://127.0.0.1:{port}"
    r = httpx.post(f"{url}/api/admin/queries", headers={"Authorization": f"Bearer {ADMIN}"},
                   json={"run_id": "run-1", "queries": [q.to_dict() for q in qs]})
    assert r.status_code == 200
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def person(name: str, mine: list) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=10) as c:
            for q in mine:
                try:
                    r = c.post("/api/feedback", json={"query_id": q.id, "value": 1.0, "client_key": f"{name}{q.id}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 201:
                    with lock:
                        acked[f"{name}{q.id}"] = r.json()["feedback_id"]

    threads = [threading.Thread(target=person, args=(n, qs[i::2])) for i, n in enumerate(TOKENS)]
    for t in threads:
        t.start()
    while len(acked) < 15 and any(t.is_alive() for t in threads):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for t in threads:
        t.join(10)
    assert 15 <= len(acked) < 60  # killed in the middle of the load
    s = FeedbackStore(db)
    stored = {f.id for f in s.feedback()}
    assert set(acked.values()) <= stored  # every label that got a 2xx is there
    assert len(stored) <= len(acked) + 2  # at most the requests in flight at the kill
    s.close()


def test_serve_generates_a_token_and_binds_loopback(tmp_path):
    port = free_port()
    proc = start(tmp_path / "g.db", port, token=None)
    printed = ""
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
        out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if Path("/usr/bin/ss").exists() \
            else ""
        if out:
            assert f"127.0.0.1:{port}" in out and f"0.0.0.0:{port}" not in out
    finally:
        proc.terminate()
        try:
            printed = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert "admin token (generated" in printed and "127.0.0.1" in printed


def test_serve_warns_when_binding_beyond_loopback(tmp_path, capsys, monkeypatch):
    import uvicorn

    from rlhf_gym.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    assert main(["serve", "--db", str(tmp_path / "w.db"), "--host", "0.0.0.0", "--admin-token", ADMIN]) == 0
    assert "WARNING: binding to 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path / "w.db"), "--admin-token", "short"]) == 2
    assert main(["serve", "--db", str(tmp_path / "w.db"), "--port", "70000", "--admin-token", ADMIN]) == 2


def test_printed_invite_command_is_ready_to_run(tmp_path, capsys, monkeypatch):
    """The server prints the invite command with its real store; running it gives a working link."""
    import shlex

    import uvicorn

    from rlhf_gym.cli import main
    from rlhf_gym.web.cli import invite_command

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    run_dir = tmp_path / "runs" / "demo"
    run_dir.mkdir(parents=True)
    assert main(["serve", "--db", str(run_dir), "--admin-token", ADMIN, "--port", "8123"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("invite annotators with: "))
    cmd = shlex.split(line.split(": ", 1)[1])
    assert cmd[:3] == ["rlhf-gym", "annotators", "invite"] and "..." not in line
    assert cmd[cmd.index("--db") + 1] == str((run_dir / "feedback.db").resolve())
    assert cmd[cmd.index("--url") + 1] == "http://127.0.0.1:8123"
    assert main(cmd[1:] + ["--id", "erin"]) == 0
    link = capsys.readouterr().out.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:8123/?token=")
    s = FeedbackStore(run_dir / "feedback.db")
    assert s.annotator_by_token(link.split("token=")[1]).id == "erin"
    s.close()
    pg = invite_command("postgresql+psycopg://u:secret@db.example:5432/labels", "http://h:1")
    assert "secret" not in pg and "postgresql://u@db.example:5432/labels" in pg


PG_URL = os.environ.get("RLHF_GYM_TEST_PG_URL")


def test_serve_workers_needs_postgresql(tmp_path):
    from rlhf_gym.cli import main

    assert main(["serve", "--db", str(tmp_path / "x.db"), "--workers", "2", "--admin-token", ADMIN]) == 2


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="RLHF_GYM_TEST_PG_URL not set")
def test_two_workers_on_postgresql_never_store_two_answers_for_one_query(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from _web_helpers import drop_pg, pg_database

    url, eng, name = pg_database(PG_URL)
    try:
        store = FeedbackStore(url)
        add_people(store)
        port = free_port()
        proc = start(url, port, "--workers", "2")
        try:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            if kids.exists():
                end = time.monotonic() + 30
                while len(kids.read_text().split()) < 2 and time.monotonic() < end:
                    time.sleep(0.2)
                assert len(kids.read_text().split()) >= 2  # two worker processes
            base = f"http://127.0.0.1:{port}"
            qs = make_queries(run_id="run-w", n_pairs=0, n_steps=6)["step"]
            r = httpx.post(f"{base}/api/admin/queries", headers={"Authorization": f"Bearer {ADMIN}"},
                           json={"run_id": "run-w", "queries": [q.to_dict() for q in qs]})
            assert r.status_code == 200

            def post(i: int) -> int:
                q = qs[i % len(qs)]
                with httpx.Client(timeout=20) as c:  # a new connection each: requests spread over the workers
                    return c.post(f"{base}/api/feedback", headers={"Authorization": f"Bearer {TOKENS['alice']}"},
                                  json={"query_id": q.id, "value": 1.0, "client_key": f"k{i}"}).status_code

            with ThreadPoolExecutor(16) as ex:
                codes = list(ex.map(post, range(96)))
            assert sorted(set(codes)) == [201, 409] and codes.count(201) == len(qs), codes
            rows = store.feedback(annotator_id="alice")
            assert sorted(f.query_id for f in rows) == sorted(q.id for q in qs)  # one each, never two
            assert store.verify_audit().ok
        finally:
            proc.terminate()
            proc.wait(20)
        store.close()
    finally:
        drop_pg(eng, name)


def test_a_worker_keeps_its_start_up_objects_out_of_full_collections(tmp_path, monkeypatch):
    """Each full garbage collection walked every long-lived object of the server (~90 ms pauses under
    load): the worker's app factory freezes what start-up made (the process is the server's)."""
    import gc

    from rlhf_gym.web import cli as web_cli

    monkeypatch.setenv(web_cli._ENV_DB, str(tmp_path / "w.db"))
    monkeypatch.setenv("RLHF_GYM_ADMIN_TOKEN", "admin-token-123")
    monkeypatch.setenv(web_cli._ENV_CLIPS, str(tmp_path / "clips"))
    monkeypatch.setenv(web_cli._ENV_POLICY, "")
    gc.unfreeze()
    try:
        app = web_cli.app_from_env()
        assert gc.get_freeze_count() > 10_000  # the app, its store and the imported modules
        assert app.state.web.store is not None
        app.state.web.store.close()
    finally:
        gc.unfreeze()

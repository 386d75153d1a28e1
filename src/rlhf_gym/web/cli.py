"""``rlhf-gym serve``: run the annotation web app.

Binds to 127.0.0.1 unless another host is given explicitly (then it warns: the app speaks plain
HTTP, so put it behind TLS before exposing it). The admin token comes from ``--admin-token``, else
``RLHF_GYM_ADMIN_TOKEN``, else a fresh one is generated and printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import socket
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser("serve", help="run the annotation web app (people label in a browser)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--db", default="feedback.db",
                   help="store: SQLite file, run folder (uses its feedback.db) or postgresql://user@host/db URL")
    s.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback must be asked for")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--admin-token", default=None,
                   help="token for the admin API (default: $RLHF_GYM_ADMIN_TOKEN, else generated and printed)")
    s.add_argument("--clip-dir", default=None, help="where rendered clips are cached (default: DB folder/clips)")
    s.add_argument("--policy", default=None, help="rlhf-gym.toml with the [feedback] purpose and consent text")
    s.add_argument("--workers", type=int, default=1,
                   help="server processes (more than 1 needs PostgreSQL: the database enforces uniqueness across them)")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def invite_command(db: str, url: str) -> str:
    """The exact command that invites a person to this server's store.

    A PostgreSQL URL is printed without its password (the command then uses PGPASSWORD or ~/.pgpass).
    """
    if "://" in db:
        from sqlalchemy.engine import URL, make_url

        u = make_url(db)
        db = URL.create(u.drivername.split("+")[0], username=u.username, host=u.host, port=u.port,
                        database=u.database, query=u.query).render_as_string(hide_password=False)
    return f"rlhf-gym annotators invite --db {shlex.quote(db)} --url {shlex.quote(url)}"


def cmd_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if not 1 <= args.workers <= 64:
        raise ValueError(f"--workers must be in 1..64, got {args.workers}")
    token = args.admin_token or os.environ.get("RLHF_GYM_ADMIN_TOKEN")
    generated = token is None
    if generated:
        token = secrets.token_urlsafe(24)
    if len(token) < 8:
        raise ValueError("--admin-token must be at least 8 characters")
    import uvicorn

    from rlhf_gym.governance.cli import resolve_db
    from rlhf_gym.governance.consent import load_policy
    from rlhf_gym.store import FeedbackStore
    from rlhf_gym.web.app import create_app

    args.db = resolve_db(args.db, must_exist=False)
    clip_dir = args.clip_dir
    if clip_dir is None:
        clip_dir = (Path(args.db).parent / "clips") if "://" not in args.db else Path("clips")
    if args.workers > 1 and not args.db.startswith("postgresql"):
        raise ValueError("--workers > 1 needs a PostgreSQL store (--db postgresql://...): SQLite allows one writer "
                         "process, so it stays single-process")
    store = FeedbackStore(args.db)  # creates or checks the schema once, before any worker starts
    policy = load_policy(args.policy)
    app = create_app(store, token, clip_dir, policy=policy) if args.workers == 1 else None
    if not is_loopback(args.host):
        print(f"WARNING: binding to {args.host}: the app is reachable from other machines over plain HTTP. "
              "Put it behind TLS and share invite links only with your annotators.", file=sys.stderr)
    url = f"http://{args.host if ':' not in args.host else '[' + args.host + ']'}:{args.port}"
    print(f"rlhf-gym annotation app on {url}  (store: {store.url.split('@')[-1]})", flush=True)
    if generated:
        print(f"admin token (generated; pass --admin-token or set RLHF_GYM_ADMIN_TOKEN to keep one): {token}",
              flush=True)
    print("invite annotators with: " + invite_command(store.display_url, url), flush=True)
    if app is not None:
        _freeze_startup_objects()
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
        return 0
    store.close()
    # Each worker process builds its own app from these (the admin token never appears on a command line).
    os.environ.update({_ENV_DB: args.db, "RLHF_GYM_ADMIN_TOKEN": token, _ENV_CLIPS: str(clip_dir),
                       _ENV_POLICY: args.policy or ""})
    print(f"{args.workers} worker processes", flush=True)
    return run_workers(args.host, args.port, args.workers, args.log_level)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, log_level: str, parent: int) -> None:  # pragma: no cover - a worker process
    """One worker: its own listening socket on the shared port (SO_REUSEPORT), its own app and store.

    It stops when its supervisor is gone (even killed with SIGKILL), so no orphan keeps the port.
    """
    import signal
    import threading
    import time

    import uvicorn

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()

    sock = _reuseport_socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config("rlhf_gym.web.cli:app_from_env", factory=True, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(host: str, port: int, workers: int, log_level: str) -> int:
    """Run ``workers`` server processes on one port, each with its own ``SO_REUSEPORT`` socket.

    One socket shared by every worker (uvicorn's ``workers=N``) lets whichever worker wakes first
    accept a whole burst of connections, so with keep-alive clients one worker ends up serving
    nearly all of them; with a socket each, the kernel spreads new connections over the workers.
    A worker that dies (even by SIGKILL) is replaced; SIGTERM or Ctrl-C stops them all.
    """
    import multiprocessing as mp
    import signal
    import time

    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not Linux/BSD: one shared socket
        import uvicorn

        uvicorn.run("rlhf_gym.web.cli:app_from_env", factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, access_log=False)
        return 0
    try:
        guard = _reuseport_socket(host, port)  # the port is free (or ours): fail here, not in every worker
    except OSError as e:
        print(f"cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    procs = []
    for _ in range(workers):
        pr = ctx.Process(target=_worker, args=(host, port, log_level, os.getpid()), daemon=True)
        pr.start()
        procs.append(pr)
    started = time.monotonic()
    try:
        while not stop:
            time.sleep(0.2)
            for i, pr in enumerate(procs):
                if pr.is_alive():
                    continue
                if time.monotonic() - started < 5 and pr.exitcode not in (None, -signal.SIGKILL):
                    print(f"worker exited at start (status {pr.exitcode}); stopping", file=sys.stderr)
                    return 1
                print(f"worker {pr.pid} died (status {pr.exitcode}); starting another", file=sys.stderr, flush=True)
                procs[i] = ctx.Process(target=_worker, args=(host, port, log_level, os.getpid()), daemon=True)
                procs[i].start()
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
        for pr in procs:
            pr.join(15)
            if pr.is_alive():
                pr.kill()
        guard.close()
    return 0


_ENV_DB, _ENV_CLIPS, _ENV_POLICY = "RLHF_GYM_SERVE_DB", "RLHF_GYM_SERVE_CLIPS", "RLHF_GYM_SERVE_POLICY"


def app_from_env() -> object:
    """The app of one worker process of ``serve --workers N`` (settings passed by the parent's environment)."""
    from rlhf_gym.governance.consent import load_policy
    from rlhf_gym.store import FeedbackStore
    from rlhf_gym.web.app import create_app

    app = create_app(FeedbackStore(os.environ[_ENV_DB]), os.environ["RLHF_GYM_ADMIN_TOKEN"],
                     os.environ[_ENV_CLIPS], policy=load_policy(os.environ.get(_ENV_POLICY) or None))
    _freeze_startup_objects()
    return app


def _freeze_startup_objects() -> None:
    """Keep the objects made at start-up (modules, the app, SQLAlchemy's and FastAPI's tables) out of the
    garbage collector's full passes.

    A server process holds a few hundred thousand long-lived objects; each full collection walked them all
    and paused every request for about 90 ms (the no-pause load benchmark's p99 on SQLite was those
    pauses). Frozen, a full pass takes under 10 ms. Called only by ``serve`` (the process is the server's),
    never by the library.
    """
    import gc

    gc.collect()
    gc.freeze()

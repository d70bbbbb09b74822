"""The `scfm` command: run everything, or one part of it (serve, worker, db upgrade, tokens)."""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scfm.config import Settings


def _deps():
    from scfm.bootstrap import bootstrap

    return bootstrap()


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM: the loops below finish their turn and stop cleanly."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def cmd_db_upgrade(_args) -> int:
    from scfm.adapters.postgres.db import upgrade

    upgrade(_deps().engine)
    print("database is up to date")
    return 0


def cmd_create_super_admin(_args) -> int:
    from scfm.services import accounts

    account, token = accounts.create_super_admin(_deps().uow(None))
    print(f"super admin account {account.id} created; its access token (shown once):")
    print(token.token)
    return 0


def cmd_create_access_token(args) -> int:
    from scfm.domain.model import Account
    from scfm.services import accounts

    deps = _deps()
    caller = accounts.get_account(deps.uow(None), args.account_id)
    token = accounts.create_access_token(deps.uow(caller.id), Account(id=caller.id), {})
    print(token.token)
    return 0


def cmd_serve(args) -> int:
    """The API under granian: --workers processes of --threads threads each, our access log on stdout (no
    access token in it: scfm.entrypoints.serve.AccessLog). Ctrl-C or SIGTERM stops it."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    settings = Settings.from_env()
    Granian("scfm.entrypoints.wsgi:served", address=args.host or settings.host, port=args.port or settings.port,
            interface=Interfaces.WSGI, workers=args.workers, blocking_threads=args.threads, http=HTTPModes.http1,
            websockets=False, log_access=False).serve()
    return 0


_DETAIL = re.compile(r"^DETAIL:.*$", re.MULTILINE)


class HideRowData(logging.Filter):
    """PostgreSQL's DETAIL quotes the row a statement failed on (auth tokens, remote request parameters):
    a failed job's traceback, as RQ logs it, keeps the error's first line and loses the DETAIL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "DETAIL:" in message:
            record.msg, record.args = _DETAIL.sub("DETAIL:  [FILTERED]", message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and "DETAIL:" in record.exc_text:
            record.exc_text = _DETAIL.sub("DETAIL:  [FILTERED]", record.exc_text)
        return True


def _log_to_stderr(log_format: str) -> None:
    """One handler for every logger of the process (RQ's included), through HideRowData."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format, datefmt="%H:%M:%S"))
    handler.addFilter(HideRowData())
    logging.getLogger().addHandler(handler)


def _log_thread_death(hook) -> None:
    """A thread's uncaught exception goes through the log (and HideRowData), not straight to stderr."""
    if hook.exc_type is SystemExit:
        return
    name = hook.thread.name if hook.thread else "a thread"
    logging.getLogger("scfm.worker").error("%s died", name,
                                           exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))


def cmd_worker(args) -> int:
    from rq import Worker

    _log_to_stderr("%(asctime)s %(message)s")
    threading.excepthook = _log_thread_death
    deps = _deps()
    worker = Worker([deps.queue], connection=deps.redis)
    worker.work(with_scheduler=True, burst=args.burst)
    return 0


def cmd_dialer(args) -> int:
    """Dial for every account with due calls, at once (scale out by running more: they share the accounts)."""
    _log_to_stderr("%(asctime)s dialer %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    threading.excepthook = _log_thread_death
    # a thread woken for its slot waits for the GIL at most this long (5 ms by default), or misses the slot
    sys.setswitchinterval(0.001)
    dispatcher = _deps().dispatcher(max_accounts=args.max_accounts)
    if args.once:
        dispatcher.drain()
    else:
        dispatcher.serve(_stop_on_signals())
    return 0


def cmd_scheduler(args) -> int:
    """Sweep every few seconds: re-deliver what the database says is due (one sweeper at a time)."""
    import uuid

    from scfm.adapters.postgres.db import described
    from scfm.services import sweeper

    _log_to_stderr("%(asctime)s scheduler %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    deps = _deps()
    interval = args.interval or deps.settings.sweep_interval_seconds
    token, lease = uuid.uuid4().hex, f"{deps.settings.queue_name}:sweeper"
    stopping = _stop_on_signals()
    while not stopping.is_set():
        try:
            if deps.locks.acquire(lease, token, interval * 3):
                sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings, deps.settings.max_attempts)
        except Exception as error:  # a database or Redis outage: try again at the next tick
            logging.warning("sweep failed: %s", described(error))
        if args.once or stopping.wait(interval):
            break
    return 0


def _ensure_super_admin(deps, data_dir: Path | None) -> str | None:
    """Create the super admin on first start; in embedded mode keep its token in the data folder."""
    from scfm.services import accounts

    token_file = data_dir / "super_admin_access_token" if data_dir else None
    if accounts.super_admin_exists(deps.uow(None)):
        if token_file and token_file.exists():
            return token_file.read_text().strip()
        return None
    _account, token = accounts.create_super_admin(deps.uow(None))
    if token_file:
        token_file.write_text(f"{token.token}\n")
        token_file.chmod(0o600)
    return token.token


def cmd_run(args) -> int:
    """Everything on one machine: embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set."""
    from scfm.adapters import embedded
    from scfm.adapters.postgres.db import upgrade
    from scfm.bootstrap import Deps

    settings = Settings.from_env()
    data_dir = Path(settings.data_dir).resolve()
    env = dict(os.environ)
    embedded_redis = None  # the embedded Redis server lives as long as this client object
    if not settings.database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
        env["DATABASE_URL"] = embedded.start_postgres(data_dir)
        print(f"embedded PostgreSQL in {data_dir / 'postgres'}")
    if not settings.redis_url:
        embedded_redis, env["REDIS_URL"] = embedded.start_redis(data_dir)
        print(f"embedded Redis in {data_dir / 'redis.db'}")
    settings = Settings.from_env(env)
    deps = Deps(settings)
    upgrade(deps.engine)
    token = _ensure_super_admin(deps, data_dir if not os.environ.get("DATABASE_URL") else None)
    deps.engine.dispose()

    host, port = args.host or settings.host, args.port or settings.port
    children = [
        subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", "serve", "--host", host, "--port", str(port),
                          "--workers", str(args.web_workers)], env=env),
    ]
    children += [
        subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", "worker"], env=env)
        for _ in range(args.workers)
    ]
    children.append(subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", "scheduler"], env=env))
    children.append(subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", "dialer"], env=env))
    print(f"scfm is running at http://{host}:{port}/api (docs: http://{host}:{port}/api/docs)")
    print(f"dashboard: http://{host}:{port}/ (sign in with an access token)")
    if token:
        print(f"super admin access token: {token}")
        print(f"try: curl -u {token}: http://{host}:{port}/api/contacts")
    else:
        print("super admin exists; `scfm create-access-token --account-id ID` prints a new token")
    sys.stdout.flush()

    stopping = _stop_on_signals()
    code = 0
    try:
        while not stopping.wait(0.5):
            exited = [child for child in children if child.poll() is not None]
            if exited:
                print(f"a child process exited with {exited[0].returncode}; stopping", file=sys.stderr)
                code = 1
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        print("scfm stopped")
    return code


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="scfm",
        description="Simple Call Flow Manager. With no command, runs everything (API, workers, dialer, scheduler) on this "
        "machine, "
        "on embedded PostgreSQL and Redis unless DATABASE_URL and REDIS_URL are set.",
    )
    sub = root.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the API, workers, dialer and scheduler (the default)")
    for p in (root, run):
        p.add_argument("--host", help="address to listen on (default HOST or 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to listen on (default PORT or 3000)")
        p.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
        p.add_argument("--web-workers", type=int, default=2, help="API server (granian) worker processes (default 2)")
    serve = sub.add_parser("serve", help="serve the API and the dashboard with granian (production)")
    serve.add_argument("--host", help="address to listen on (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default PORT or 3000)")
    serve.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker process that run requests (default 4)")
    worker = sub.add_parser("worker", help="run an RQ worker (production: as many as you need)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    dialer = sub.add_parser("dialer", help="dial the queued calls of every account (run one or more)")
    dialer.add_argument("--max-accounts", type=int, default=100,
                        help="accounts this dialer dials for at once (default 100); more dialers share the rest")
    dialer.add_argument("--once", action="store_true", help="dial every due call, then exit")
    scheduler = sub.add_parser("scheduler", help="run the sweeper that re-delivers due work (run one or more)")
    scheduler.add_argument("--interval", type=float, help="seconds between sweeps (default SCFM_SWEEP_INTERVAL or 10)")
    scheduler.add_argument("--once", action="store_true", help="sweep once and exit")
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the migrations")
    sub.add_parser("create-super-admin", help="create a super admin account and print its token once")
    token = sub.add_parser("create-access-token", help="print a new access token for an account")
    token.add_argument("--account-id", type=int, required=True)
    from scfm.entrypoints import cli_contacts

    cli_contacts.add_parsers(sub)
    return root


COMMANDS = {
    None: cmd_run, "run": cmd_run, "serve": cmd_serve, "worker": cmd_worker, "dialer": cmd_dialer,
    "scheduler": cmd_scheduler,
    "db": cmd_db_upgrade,
    "create-super-admin": cmd_create_super_admin, "create-access-token": cmd_create_access_token,
    "import": lambda args: _contacts_command("cmd_import_contacts", args),
    "export": lambda args: _contacts_command("cmd_export", args),
}


def _contacts_command(name: str, args) -> int:
    from scfm.entrypoints import cli_contacts

    return getattr(cli_contacts, name)(args, _deps())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())

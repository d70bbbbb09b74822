"""What the benchmarks share: printed figures, a throwaway database and queue, processes of the real cluster
(gunicorn API, `scfm worker`, `scfm scheduler`, the fake provider) that are always stopped, accounts made
through the API, contacts loaded by SQL, and where the CPU went."""
from __future__ import annotations

import base64
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: `tests.support` is importable from here
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PROVINCES = ("phnom_penh", "siem_reap", "battambang", "kampot", "kandal")
PROVIDER_SETTINGS = ("TWILIO_", "SOMLENG_", "PLATFORM_PROVIDER")  # the server's defaults stay out of a benchmark
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_started = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def guarded(body) -> int:
    """Run a benchmark's body: 0 when it ran, 1 when it failed, 130 when interrupted (Ctrl-C, SIGTERM)."""
    try:
        body()
        return 0
    except (KeyboardInterrupt, SystemExit):  # SystemExit: RQ's cold shutdown on a second Ctrl-C
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1


# ---------------------------------------------------------------- figures

@dataclass
class Result:
    """One printed figure, compared to what it should be."""

    name: str
    value: str
    target: str
    meets: bool | None  # None: a figure with nothing to meet
    note: str = ""


def versus(name: str, ours: float, by_hand: float, unit: str = "s", target: str = "-",
           meets: bool | None = None, note: str = "", digits: int = 2) -> Result:
    """A figure beside the same work by hand: `R.RRx (ours X unit, by hand Y unit)`, printed at once."""
    ratio = ours / by_hand if by_hand > 0 else float("inf")
    value = f"{ratio:.2f}x ({ours:.{digits}f} {unit}, by hand {by_hand:.{digits}f} {unit})"
    print(f"{name}: {value}" + (f"; {note}" if note else ""), flush=True)
    return Result(name, value, target, meets, note)


def summary(title: str, results: list[Result]) -> str:
    rows = [("benchmark", "figure", "target", "meets", "notes")]
    rows += [(r.name, r.value, r.target, {True: "yes", False: "NO", None: "-"}[r.meets], r.note) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [title]
    for index, row in enumerate(rows):
        lines.append("  ".join([cell.ljust(width) for cell, width in zip(row[:4], widths)] + [row[4]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(max(1, math.ceil(q / 100 * len(ordered))), len(ordered)) - 1]


def busiest_window(stamps: list[float], seconds: float = 1.0) -> int:
    """The most timestamps in any window [t, t + seconds) (a sliding window that starts at each stamp)."""
    stamps = sorted(stamps)
    best, end = 0, 0
    for start, t in enumerate(stamps):
        while end < len(stamps) and stamps[end] < t + seconds:
            end += 1
        best = max(best, end - start)
    return best


# ---------------------------------------------------------------- a throwaway database and queue

def libpq_url(sqlalchemy_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Env:
    deps: object
    server_url: str
    database_url: str  # SQLAlchemy's form (postgresql+psycopg2://...)
    redis_url: str
    name: str  # of the database and of the queue

    def child_env(self, **extra) -> dict:
        """This process's environment (which throwaway_env points at the database and queue), and `extra`."""
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                **{key: str(value) for key, value in extra.items()}}

    def connect(self):
        import psycopg2

        return psycopg2.connect(libpq_url(self.database_url))


@contextmanager
def throwaway_env(label: str, keep: bool = False, extra_env: dict | None = None):
    """A migrated database scfm_bench_<random> next to DATABASE_URL's, and a queue of the same name; this
    process's environment and bootstrap() point at them until the end, when both are removed (also on
    Ctrl-C, SIGTERM or an error)."""
    from scfm import bootstrap as bootstrap_module
    from scfm.adapters.postgres import db

    server_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    name = f"scfm_bench_{uuid.uuid4().hex[:10]}"
    saved_env = dict(os.environ)
    database_url = deps = None
    try:
        database_url = db.create_database(server_url, name)
        progress(f"{label}: database {name}, queue {name}")
        for key in [key for key in os.environ if key.startswith(PROVIDER_SETTINGS)]:
            del os.environ[key]
        os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SCFM_QUEUE=name, **(extra_env or {}))
        bootstrap_module._deps = None
        deps = bootstrap_module.bootstrap()  # what the jobs run in this process use, too
        db.upgrade(deps.engine)
        deps.redis.ping()
        yield Env(deps, server_url, database_url, redis_url, name)
    finally:
        if deps is not None:
            try:
                clean_redis(deps)
            except Exception as error:  # noqa: BLE001 - report, and go on cleaning
                progress(f"could not clean the queue {name}: {error}")
            deps.engine.dispose()
        if database_url and keep:
            progress(f"kept database {name}: {libpq_url(database_url)}")
        elif database_url:
            try:
                db.drop_database(server_url, name)
                progress(f"dropped database {name}")
            except Exception as error:  # noqa: BLE001
                progress(f"could not drop the database {name}: {error}")
        os.environ.clear()
        os.environ.update(saved_env)
        bootstrap_module._deps = None


def clean_redis(deps) -> None:
    """The queue's keys, its jobs' and its workers'."""
    queue = deps.queue
    job_ids = set(queue.get_job_ids())
    for registry in (queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
                     queue.deferred_job_registry, queue.scheduled_job_registry, queue.canceled_job_registry):
        job_ids.update(registry.get_job_ids())
    keys = [f"rq:{kind}:{job_id}" for job_id in job_ids for kind in ("job", "results")]
    keys += list(deps.redis.scan_iter(f"*{queue.name}*"))
    if keys:
        deps.redis.delete(*keys)


def run_jobs(deps) -> None:
    """Every queued job, by a real RQ worker in this process (burst: it stops when the queue is empty)."""
    from rq import SimpleWorker

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    worker = SimpleWorker([deps.queue], connection=deps.redis)
    try:
        worker.work(burst=True, logging_level="WARNING")
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        deps.redis.delete(worker.key)
    if getattr(worker, "_stop_requested", False):  # Ctrl-C during a job: RQ finished it (a second one would not)
        raise KeyboardInterrupt("stop requested while the worker ran")


def load_contacts(conn, account_id: int, n: int) -> None:
    """n contacts +85596xxxxxxx (valid numbers) with metadata gender f (i odd) or m, province PROVINCES[i % 5]
    and age; one INSERT ... SELECT, then VACUUM ANALYZE."""
    started = time.perf_counter()
    provinces = "ARRAY[" + ", ".join(f"'{p}'" for p in PROVINCES) + "]"
    with conn.cursor() as cur:
        cur.execute(f"""
            INSERT INTO contacts (account_id, msisdn, metadata, created_at, updated_at)
            SELECT %s, '+85596' || lpad(i::text, 7, '0'),
                   jsonb_build_object('gender', CASE WHEN i %% 2 = 1 THEN 'f' ELSE 'm' END,
                                      'province', ({provinces})[1 + i %% {len(PROVINCES)}], 'age', 18 + i %% 63),
                   now(), now()
            FROM generate_series(1, %s) AS i""", (account_id, n))
    conn.commit()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE contacts")
    finally:
        conn.autocommit = False
    progress(f"{n:,} contacts loaded, vacuumed and analyzed in {time.perf_counter() - started:.1f}s")


@contextmanager
def statements(engine):
    """The statements `engine` runs meanwhile, as a list of their SQL."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_session():
    """A `requests` session that ignores proxy settings: every benchmark talks to 127.0.0.1."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def wait_for_http(url: str, process: "Process", seconds: float = 30) -> None:
    import requests

    session = http_session()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise BenchError(f"{process.label} exited with {process.popen.returncode}:\n{process.tail()}")
        try:
            session.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise BenchError(f"{url} did not come up in {seconds}s:\n{process.tail()}")


@dataclass
class Process:
    label: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Child processes, each in its own session (so that its own children go with it); stop() ends them all."""

    env: dict
    started: list[Process] = field(default_factory=list)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="scfm-bench-")))

    def start(self, label: str, *argv: str, env: dict | None = None) -> Process:
        log = self.folder / f"{len(self.started):02d}-{re.sub(r'[^A-Za-z0-9.]+', '_', label)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([sys.executable, *argv], env=env or self.env, cwd=ROOT, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(Process(label, popen, log))
        return self.started[-1]

    def scfm(self, label: str, *args: str, env: dict | None = None) -> Process:
        return self.start(label, "-m", "scfm.entrypoints.cli", *args, env=env)

    def api(self, port: int, workers: int = 2) -> Process:
        process = self.scfm("api", "serve", "--port", str(port), "--workers", str(workers),
                            env={**self.env, "PUBLIC_URL": f"http://127.0.0.1:{port}"})
        wait_for_http(f"http://127.0.0.1:{port}/api/openapi.json", process)
        return process

    @staticmethod
    def _signal(process: Process, signum: int, also) -> None:
        for send, target in [(os.killpg, process.popen.pid)] + [(os.kill, pid) for pid in also]:
            try:
                send(target, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, process: Process, seconds: float = 10) -> None:
        """SIGTERM to the process's group and to every descendant (an RQ work horse has a group of its own),
        then SIGKILL to whatever is left after `seconds`."""
        stats = _processes()
        also = {pid: stats[pid][4] for pid in descendants(process.popen.pid, stats)}
        self._signal(process, signal.SIGTERM, also)
        try:
            process.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            pass
        now = _processes()  # the same processes, not reused pids
        self._signal(process, signal.SIGKILL, [pid for pid, start in also.items() if now.get(pid, [0] * 5)[4] == start])
        try:
            process.popen.wait(5)
        except subprocess.TimeoutExpired:
            progress(f"{process.label} (pid {process.popen.pid}) did not stop")
        if process in self.started:
            self.started.remove(process)

    def check_alive(self) -> None:
        for process in self.started:
            if process.popen.poll() is not None:
                raise BenchError(f"{process.label} exited with {process.popen.returncode}:\n{process.tail()}")


@contextmanager
def processes(env: dict):
    group = Processes(env)
    try:
        yield group
    finally:
        for process in list(group.started):
            group._signal(process, signal.SIGTERM, [])
        for process in list(group.started):
            group.stop(process)
        for log in group.folder.glob("*.log"):
            log.unlink()
        group.folder.rmdir()


# ---------------------------------------------------------------- accounts, through the API

def basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


class Api:
    """The Flask test client with an access token, bodies form-encoded like curl -d."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": basic_auth(token)}

    def _check(self, response, method: str, path: str, status: int):
        if response.status_code != status:
            raise BenchError(f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}")
        return response

    def get(self, path: str, status: int = 200):
        return self._check(self.client.get(path, headers=self.headers), "GET", path, status)

    def post(self, path: str, data: dict | None = None, status: int = 201):
        return self._check(self.client.post(path, data=data or {}, headers=self.headers), "POST", path, status)


def admin_api(deps) -> Api:
    """A super admin (made in the database) on the Flask test client of this process."""
    from scfm.entrypoints.app import create_app
    from scfm.services import accounts

    _account, token = accounts.create_super_admin(deps.uow())
    return Api(create_app(deps).test_client(), token.token)


def new_account(admin: Api, **fields) -> tuple[int, str]:
    """An account made as the reference does (a super admin creates it and its token): (id, token)."""
    account = admin.post("/api/accounts", {"metadata[name]": "bench", **fields}).get_json()
    token = admin.post("/api/access_tokens", {"account_sid": account["id"]}).get_json()["token"]
    return account["id"], token


# ---------------------------------------------------------------- CPU: where the cores went

def _processes() -> dict[int, tuple[str, int, int, int, int]]:
    """pid -> (comm, ppid, own CPU ticks, reaped children's CPU ticks, start time) of every live process."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        found[int(pid)] = (text[text.index("(") + 1:text.rindex(")")], int(rest[1]), int(rest[11]) + int(rest[12]),
                           int(rest[13]) + int(rest[14]), int(rest[19]))
    return found


def descendants(root: int, stats: dict | None = None) -> list[int]:
    """Every live process under `root` (children, their children, ...)."""
    stats = stats if stats is not None else _processes()
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, stat in stats.items() if stat[1] in frontier}
        found.extend(sorted(frontier))
    return found


def _machine() -> tuple[int, int]:
    """(busy, total) CPU ticks of the machine since boot."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


class CpuMeter:
    """CPU seconds by group over a window: the processes we started with their descendants, by label;
    PostgreSQL; Redis; this process (its own children, load generators, measure themselves); the rest.

    A process's CPU counts its reaped children's, so a child that ends within its group (an RQ work horse, a
    PostgreSQL backend) moves its CPU to its parent: the group's sum at the end less at the start is right."""

    def __init__(self, groups: dict[int, str]):
        self.groups = groups  # pid of a process we started -> label of it and all its descendants

    def _ticks(self) -> dict[str, int]:
        me, stats, ticks = os.getpid(), _processes(), {}
        for pid, (comm, _ppid, own, children, _start) in stats.items():
            label, ancestor = None, pid
            while ancestor > 1 and label is None:
                if ancestor in self.groups:
                    label = self.groups[ancestor]
                elif ancestor == me:
                    label = "bench process" if pid == me else ""
                ancestor = stats[ancestor][1] if ancestor in stats else 0
            if label is None:
                label = ("postgres" if comm.startswith("postgres") or comm == "postmaster"
                         else "redis" if comm.startswith("redis") else "other")
            ticks[label] = ticks.get(label, 0) + own + (0 if pid == me else children)
        return ticks

    def __enter__(self):
        self.started, self.before, self.machine_before = time.monotonic(), self._ticks(), _machine()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        busy, total = _machine()
        self.machine_busy = (busy - self.machine_before[0]) / max(1, total - self.machine_before[1])
        self.used = {label: max(0, ticks - self.before.get(label, 0)) / CLOCK_TICKS
                     for label, ticks in self._ticks().items() if label}
        return False

    def line(self) -> str:
        parts = sorted(((seconds / self.seconds, label) for label, seconds in self.used.items()), reverse=True)
        shares = ", ".join(f"{label} {share:.2f}" for share, label in parts if share >= 0.01)
        return (f"CPU over {self.seconds:.1f}s: machine {self.machine_busy * 100:.0f}% busy of {os.cpu_count()} "
                f"cores; cores used by {shares}")

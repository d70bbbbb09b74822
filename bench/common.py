"""What the cluster benchmarks (dialing, webhook, lists) share: a throwaway database and queue, processes of
the real cluster (gunicorn API, `scfm worker`, `scfm scheduler`, the fake provider) that are always stopped,
accounts made through the API, CPU accounting, and small statistics.

The database helpers of bench/batch.py are reused from there (progress, libpq_url, clean_redis, ...).
"""
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

from bench.batch import (  # noqa: F401 - re-exported for the cluster benchmarks
    DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, PROVINCES, Api, BenchError,
    _interrupted, clean_redis, libpq_url, progress,
)

ROOT = Path(__file__).resolve().parents[1]  # the repository: `tests.support` is importable from here
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- figures

@dataclass
class Result:
    """One printed figure, compared to what it should be."""

    name: str
    value: str
    target: str
    meets: bool | None  # None: a figure with nothing to meet
    note: str = ""


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
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


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

@dataclass
class Env:
    deps: object
    server_url: str
    database_url: str  # SQLAlchemy's form (postgresql+psycopg2://...)
    redis_url: str
    name: str  # of the database and of the queue

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.database_url)

    def child_env(self, **extra) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TWILIO_", "SOMLENG_", "PLATFORM_PROVIDER"))}
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, SCFM_QUEUE=self.name,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def connect(self):
        import psycopg2

        return psycopg2.connect(self.libpq_url)


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
    previous_term = signal.signal(signal.SIGTERM, _interrupted)
    created = False
    deps = None
    try:
        database_url = db.create_database(server_url, name)
        created = True
        progress(f"{label}: database {name}, queue {name}")
        for key in list(os.environ):  # the server's provider defaults must not leak into the benchmark
            if key.startswith(("TWILIO_", "SOMLENG_", "PLATFORM_PROVIDER")):
                del os.environ[key]
        os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SCFM_QUEUE=name, **(extra_env or {}))
        bootstrap_module._deps = None
        deps = bootstrap_module.bootstrap()
        db.upgrade(deps.engine)
        deps.redis.ping()
        yield Env(deps, server_url, database_url, redis_url, name)
    finally:
        if deps is not None:
            try:
                clean_redis(deps)
                deps.redis.delete(*(list(deps.redis.scan_iter(f"{name}:*")) or ["-"]))
            except Exception as error:  # noqa: BLE001 - report, and go on cleaning
                progress(f"could not clean the queue {name}: {error}")
            deps.engine.dispose()
        if created:
            if keep:
                progress(f"kept database {name}: {libpq_url(database_url)}")
            else:
                try:
                    db.drop_database(server_url, name)
                    progress(f"dropped database {name}")
                except Exception as error:  # noqa: BLE001
                    progress(f"could not drop the database {name}: {error}")
        os.environ.clear()
        os.environ.update(saved_env)
        bootstrap_module._deps = None
        signal.signal(signal.SIGTERM, previous_term)


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: "Process", seconds: float = 30) -> None:
    import requests

    session = requests.Session()
    session.trust_env = False
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
        process = Process(label, popen, log)
        self.started.append(process)
        return process

    def scfm(self, label: str, *args: str, env: dict | None = None) -> Process:
        return self.start(label, "-m", "scfm.entrypoints.cli", *args, env=env)

    def api(self, port: int, workers: int = 2) -> Process:
        process = self.scfm("api", "serve", "--port", str(port), "--workers", str(workers),
                            env={**self.env, "PUBLIC_URL": f"http://127.0.0.1:{port}"})
        wait_for_http(f"http://127.0.0.1:{port}/api/openapi.json", process)
        return process

    def _signal(self, process: Process, signum: int, also: list[int]) -> None:
        for send, target in [(os.killpg, process.popen.pid)] + [(os.kill, pid) for pid in also]:
            try:
                send(target, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, process: Process, seconds: float = 10) -> None:
        """SIGTERM to the process's group and to every descendant (an RQ work horse has a group of its own),
        then SIGKILL to whatever is left after `seconds`."""
        also = [pid for pid in descendants(process.popen.pid) if _starttime(pid) is not None]
        stamps = {pid: _starttime(pid) for pid in also}
        self._signal(process, signal.SIGTERM, also)
        try:
            process.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            pass
        left = [pid for pid in also if _starttime(pid) == stamps[pid]]  # the same processes, not reused pids
        self._signal(process, signal.SIGKILL, left)
        try:
            process.popen.wait(5)
        except subprocess.TimeoutExpired:
            progress(f"{process.label} (pid {process.popen.pid}) did not stop")
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        for process in list(self.started):
            self._signal(process, signal.SIGTERM, [])
        for process in list(self.started):
            self.stop(process)

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
        group.stop_all()
        for log in group.folder.glob("*.log"):
            log.unlink()
        group.folder.rmdir()


# ---------------------------------------------------------------- accounts, through the API

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


def basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


# ---------------------------------------------------------------- CPU: where the two cores went

def _stat(pid: str) -> tuple[str, int, int, int, int] | None:
    """(comm, pgid, ppid, own CPU ticks, reaped children's CPU ticks) of a process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    ppid, pgid = int(rest[1]), int(rest[2])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return comm, pgid, ppid, utime + stime, cutime + cstime


def _parents() -> dict[int, int]:
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (stat := _stat(pid)) is not None:
            parents[int(pid)] = stat[2]
    return parents


def descendants(root: int) -> list[int]:
    """Every live process under `root` (children, their children, ...)."""
    parents = _parents()
    found, frontier = [], {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(sorted(children))
        frontier = children
    return found


def _starttime(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def _machine() -> tuple[int, int]:
    """(busy, total) CPU ticks of the machine since boot."""
    fields_ = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields_[3] + fields_[4]
    total = sum(fields_[:8])
    return total - idle, total


class CpuMeter:
    """CPU seconds by group over a window: the processes we started and their descendants, by label;
    PostgreSQL; Redis; this process (without its children: a load generator measures itself); and the rest
    (the kernel's threads among them).

    Per process: its CPU and its reaped children's (cutime/cstime) at the end less at the start. A child that
    ended during the window (an RQ work horse, a PostgreSQL backend) shows up in its parent's cutime with all
    of its CPU, so what it had used before the window is taken off its parent's share; whole trees that ended
    (another PostgreSQL server stopped meanwhile) count for nothing rather than less than nothing."""

    def __init__(self, groups: dict[int, str]):
        self.groups = groups  # pid of a process we started -> label of it and all its descendants

    def _snapshot(self) -> dict[tuple[int, int], tuple[str, int, int, int | None]]:
        """(pid, start time) -> (label, CPU ticks with reaped children's, own CPU ticks, parent's key)."""
        me = os.getpid()
        stats = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit() and (stat := _stat(pid)) is not None and (started := _starttime(int(pid))) is not None:
                stats[int(pid)] = (*stat, started)
        snapshot = {}
        for pid, (comm, _pgid, ppid, own, children, started) in stats.items():
            label, ticks = None, own + children
            ancestor = pid
            while ancestor > 1 and label is None:
                if ancestor in self.groups:
                    label = self.groups[ancestor]
                elif ancestor == me:
                    label = "bench process" if pid == me else ""  # children of ours: they measure themselves
                ancestor = stats[ancestor][2] if ancestor in stats else 0
            if pid == me:
                ticks = own  # its reaped children (load generators) are counted by themselves
            if label is None:
                label = ("postgres" if comm.startswith("postgres") or comm == "postmaster"
                         else "redis" if comm.startswith("redis") else "other")
            parent = (ppid, stats[ppid][5]) if ppid in stats else None
            snapshot[(pid, started)] = (label, ticks, own, parent)
        return snapshot

    def __enter__(self):
        self.started = time.monotonic()
        self.before = self._snapshot()
        self.machine_before = _machine()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        after = self._snapshot()
        busy, total = _machine()
        self.machine_busy = (busy - self.machine_before[0]) / max(1, total - self.machine_before[1])
        gone_by_parent: dict = {}  # children that ended meanwhile: their earlier CPU is not new in their parent's
        for key, (_label, ticks, _own, parent) in self.before.items():
            if key not in after:
                gone_by_parent[parent] = gone_by_parent.get(parent, 0) + ticks
        used: dict[str, float] = {}
        others = []
        for key, (label, ticks, own, _parent) in after.items():
            earlier = self.before.get(key)
            delta = ticks - (earlier[1] if earlier else 0) - gone_by_parent.get(key, 0)
            if label:
                used[label] = used.get(label, 0.0) + max(0, delta) / CLOCK_TICKS
            if label == "other":  # by process (a kernel worker's name changes with its work), its own CPU only
                own_delta = (own - (earlier[2] if earlier else 0)) / CLOCK_TICKS
                if own_delta / self.seconds >= 0.02:
                    others.append((own_delta, key[0]))
        self.used = used
        self.others = []
        for value, pid in sorted(others, reverse=True)[:3]:
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()[:70]
                name = name or Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = f"pid {pid}"
            self.others.append((value, name))
        return False

    def line(self) -> str:
        cores = os.cpu_count() or 1
        parts = sorted(((seconds / self.seconds, label) for label, seconds in self.used.items() if seconds > 0),
                       reverse=True)
        shares = ", ".join(f"{label} {share:.2f}" for share, label in parts if share >= 0.01)
        text = (f"CPU over {self.seconds:.1f}s: machine {self.machine_busy * 100:.0f}% busy of {cores} cores; "
                f"cores used by {shares}")
        if self.used.get("other", 0) / self.seconds >= 0.05:
            text += " (other: " + (", ".join(f"{comm} {value / self.seconds:.2f}" for value, comm in self.others)
                                   or "processes that ended during the window") + ")"
        return text

"""What the benchmarks share: printed figures, a throwaway database and queue, processes of the real cluster
that are always stopped, accounts made through the API, contacts loaded by SQL, and where the CPU went."""
from __future__ import annotations

import base64
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
import requests
from sqlalchemy.engine import make_url

from scfm.adapters.postgres import db
from scfm.bootstrap import bootstrap
from scfm.config import Settings
from scfm.domain.state_machines import BatchOperationStatus, CalloutStatus, PhoneCallStatus
from scfm.entrypoints.app import create_app
from scfm.services import accounts

ROOT = Path(__file__).resolve().parents[1]  # the repository: children run there, `tests.support` importable
PROVINCES = ("phnom_penh", "siem_reap", "battambang", "kampot", "kandal")
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
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1


# ---------------------------------------------------------------- figures

@dataclass
class Result:
    """One figure of a summary, and whether it meets its target (None: it has none)."""
    name: str
    value: str
    target: str = "-"
    meets: bool | None = None
    note: str = ""


def versus(name: str, ours: float, by_hand: float, unit: str = "s", target: str = "-",
           meets: bool | None = None, note: str = "", digits: int = 2) -> Result:
    """A figure beside the same work by hand: `R.RRx (ours X unit, by hand Y unit)`, printed at once."""
    value = f"{ours / by_hand if by_hand > 0 else float('inf'):.2f}x ({ours:.{digits}f} {unit}, by hand " \
            f"{by_hand:.{digits}f} {unit})"
    print(f"{name}: {value}" + (f"; {note}" if note else ""), flush=True)
    return Result(name, value, target, meets, note)


def load_average() -> str:
    return "load average " + ", ".join(f"{load:.2f}" for load in os.getloadavg())


def summary(title: str, results: list[Result]) -> str:
    """The results as a table, with the machine's load at the end (it is shared: figures are noisy)."""
    rows = [("benchmark", "figure", "target", "meets", "notes")]
    rows += [(r.name, r.value, r.target, {True: "yes", False: "NO", None: "-"}[r.meets], r.note) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    rows.insert(1, ["-" * width for width in widths] + ["-----"])
    lines = ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[4]]).rstrip() for row in rows]
    return "\n".join([title, *lines, f"({load_average()} at the end)"])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(q / 100 * len(ordered))), len(ordered)) - 1] if ordered else float("nan")


def busiest_window(stamps: list[float], seconds: float = 1.0) -> int:
    """The most timestamps in any window [t, t + seconds) (a sliding window that starts at each stamp)."""
    stamps, best, end = sorted(stamps), 0, 0
    for start, t in enumerate(stamps):
        while end < len(stamps) and stamps[end] < t + seconds:
            end += 1
        best = max(best, end - start)
    return best


# ---------------------------------------------------------------- a throwaway database and queue

@dataclass
class Env:
    deps: object
    database_url: str  # SQLAlchemy's form (postgresql+psycopg2://...)

    @staticmethod
    def child_env(**extra) -> dict:
        """This process's environment (which throwaway_env points at the database and queue), and `extra`."""
        return {**os.environ, **{key: str(value) for key, value in extra.items()}}

    def connect(self):
        return psycopg2.connect(make_url(self.database_url).set(drivername="postgresql")
                                .render_as_string(hide_password=False))


@contextmanager
def throwaway_env(label: str, keep: bool = False, extra_env: dict | None = None):
    """A migrated database scfm_bench_<random> next to DATABASE_URL's, and a queue of the same name; this
    process's environment points at them (without the server's provider settings) until the end, when both
    are removed (also on Ctrl-C, SIGTERM or an error)."""
    server_url = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    name, saved_env, database_url, deps = f"scfm_bench_{uuid.uuid4().hex[:10]}", dict(os.environ), None, None
    try:
        database_url = db.create_database(server_url, name)
        progress(f"{label}: database and queue {name}")
        for key in [key for key in os.environ if key.startswith(("TWILIO_", "SOMLENG_", "PLATFORM_PROVIDER"))]:
            del os.environ[key]
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        os.environ.update({"DATABASE_URL": database_url, "SCFM_QUEUE": name,
                           "SCFM_SECRET_KEY": secrets.token_hex(32), **(extra_env or {})})
        deps = bootstrap(Settings.from_env())
        db.upgrade(deps.engine)
        yield Env(deps, database_url)
    finally:
        if deps is not None:
            with suppress(Exception):  # the queue, its jobs and registries (finished jobs expire by themselves)
                deps.queue.delete(delete_jobs=True)
                deps.redis.delete(*deps.redis.scan_iter(f"*{name}*"))
            deps.engine.dispose()
        if database_url and not keep:
            db.drop_database(server_url, name)
        progress(f"{'kept' if keep else 'dropped'} database {name}")
        os.environ.clear()
        os.environ.update(saved_env)


def load_contacts(conn, account_id: int, n: int) -> None:
    """n contacts +85596xxxxxxx (valid numbers) with metadata gender f (i odd) or m, province PROVINCES[i % 5]
    and age; one INSERT ... SELECT, then VACUUM ANALYZE."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("""
            INSERT INTO contacts (account_id, msisdn, metadata, created_at, updated_at)
            SELECT %s, '+85596' || lpad(i::text, 7, '0'),
                   jsonb_build_object('gender', CASE WHEN i %% 2 = 1 THEN 'f' ELSE 'm' END,
                                      'province', (%s::text[])[1 + i %% 5], 'age', 18 + i %% 63), now(), now()
            FROM generate_series(1, %s) AS i""", (account_id, list(PROVINCES), n))
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE contacts")
    conn.autocommit = False
    progress(f"{n:,} contacts loaded, vacuumed and analyzed in {time.perf_counter() - started:.1f}s")


def remotely_queued_calls(conn, account_id: int, n: int, ago: str = "0 s") -> list[tuple]:
    """n calls of a running callout remotely queued `ago`, as the dialer leaves them: [(id, remote sid, msisdn)]."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+85512' || lpad(n::text, 6, '0') "
                    "FROM generate_series(1, %s) AS n", (account_id, n))
        cur.execute("INSERT INTO callouts (account_id, status) VALUES (%s, %s) RETURNING id",
                    (account_id, CalloutStatus.RUNNING.value))
        cur.execute("INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn) "
                    "SELECT account_id, %s, id, msisdn FROM contacts WHERE account_id = %s",
                    (cur.fetchone()[0], account_id))
        cur.execute(
            "INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, status, msisdn, remote_call_id, "
            "remote_status, remote_direction, remotely_queued_at, queued_at, dial_attempts, created_at, updated_at) "
            "SELECT account_id, id, contact_id, %(status)s, msisdn, 'CA' || md5(id::text), 'queued', 'outbound-api', "
            "now() - %(ago)s::interval, now() - %(ago)s::interval, 1, now() - %(ago)s::interval, "
            "now() - %(ago)s::interval FROM callout_participations WHERE account_id = %(account)s "
            "RETURNING id, remote_call_id, msisdn",
            {"status": PhoneCallStatus.REMOTELY_QUEUED.value, "ago": ago, "account": account_id})
        calls = sorted(tuple(row) for row in cur.fetchall())
        cur.execute("ANALYZE contacts; ANALYZE callout_participations; ANALYZE phone_calls")
    conn.commit()
    return calls


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_session() -> requests.Session:
    """A `requests` session that ignores proxy settings: every benchmark talks to 127.0.0.1."""
    session = requests.Session()
    session.trust_env = False
    return session


def tree(pid: int) -> list[psutil.Process]:
    """The process and every live process under it (an RQ work horse has a process group of its own)."""
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def descendants(root: int) -> list[int]:
    return [each.pid for each in tree(root)[1:]]


@dataclass
class Process:
    label: str
    popen: subprocess.Popen
    log: Path

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            lines = self.log.read_text(errors="replace").splitlines()[-30:]
            raise BenchError(f"{self.label} exited with {self.popen.returncode}:\n" + "\n".join(lines))


class Processes:
    """Child processes in sessions of their own (Ctrl-C reaches only the benchmark), logging to `folder`."""

    def __init__(self, env: dict, folder: Path):
        self.env, self.started, self.folder = env, [], folder

    def start(self, label: str, *argv: str, env: dict | None = None) -> Process:
        log = self.folder / f"{len(self.started):02d}-{label.replace(' ', '_').replace('/', '_')}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([sys.executable, *argv], env=env or self.env, cwd=ROOT, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(Process(label, popen, log))
        return self.started[-1]

    def scfm(self, label: str, *args: str) -> Process:
        return self.start(label, "-m", "scfm.entrypoints.cli", *args)

    def api(self, port: int, workers: int = 2) -> Process:
        process = self.start("api", "-m", "scfm.entrypoints.cli", "serve", "--port", str(port), "--workers",
                             str(workers), env={**self.env, "PUBLIC_URL": f"http://127.0.0.1:{port}"})
        wait_for_http(f"http://127.0.0.1:{port}/api/openapi.json", process)
        return process

    def stop(self, *processes: Process, seconds: float = 10) -> None:
        """SIGTERM to the processes and all their descendants, SIGKILL to what is left after `seconds`."""
        every = [each for process in processes for each in tree(process.popen.pid)]
        for each in every:
            with suppress(psutil.Error):
                each.terminate()
        for each in psutil.wait_procs(every, timeout=seconds)[1]:
            with suppress(psutil.Error):
                each.kill()
        for process in processes:
            process.popen.wait(5)
            self.started.remove(process)

    def check_alive(self) -> None:
        for process in self.started:
            process.check_alive()


@contextmanager
def processes(env: dict | None = None):
    """Processes started with `env` (default: this process's environment then), all stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="scfm-bench-") as folder:
        group = Processes(env or dict(os.environ), Path(folder))
        try:
            yield group
        finally:
            group.stop(*group.started)


def wait_for_http(url: str, process: Process, seconds: float = 30) -> None:
    session, deadline = http_session(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.check_alive()
        with suppress(requests.RequestException):
            session.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise BenchError(f"{url} did not come up in {seconds}s")


# ---------------------------------------------------------------- accounts, through the API

def basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


class Api:
    """The Flask test client of this process with an access token, bodies form-encoded like curl -d."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"Authorization": basic_auth(token)}

    def request(self, method: str, path: str, data: dict | None, status: int):
        response = self.client.open(path, method=method, data=data, headers=self.headers)
        if response.status_code != status:
            raise BenchError(f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}")
        return response

    def get(self, path: str, status: int = 200):
        return self.request("GET", path, None, status)

    def post(self, path: str, data: dict | None = None, status: int = 201):
        return self.request("POST", path, data or {}, status)


def admin_api(deps) -> Api:
    """A super admin (made in the database) on the Flask test client of this process."""
    return Api(create_app(deps).test_client(), accounts.create_super_admin(deps.uow())[1].token)


def new_account(admin: Api, **fields) -> tuple[int, str]:
    """An account made as the reference does (a super admin creates it and its token): (id, token)."""
    account = admin.post("/api/accounts", {"metadata[name]": "bench", **fields}).json
    return account["id"], admin.post("/api/access_tokens", {"account_sid": account["id"]}).json["token"]


def wait_finished(api: Api, operation_id: int, procs: Processes, seconds: float = 1800) -> None:
    """Until the batch operation is finished (its jobs run by `scfm worker` processes of `procs`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        procs.check_alive()
        operation = api.get(f"/api/batch_operations/{operation_id}").json
        if operation["status"] == BatchOperationStatus.FINISHED.value:
            return
        if operation.get("error_message"):
            raise BenchError(f"batch operation {operation_id}: {operation['error_message']}")
        time.sleep(0.02)
    raise BenchError(f"batch operation {operation_id} did not finish in {seconds:g}s")


# ---------------------------------------------------------------- CPU: where the cores went

def _cpu_seconds(process: psutil.Process, reaped: bool = True) -> float:
    with suppress(psutil.Error):
        times = process.cpu_times()
        return times.user + times.system + (times.children_user + times.children_system if reaped else 0)
    return 0.0


class CpuMeter:
    """Cores used over a window: by each process we started with its descendants (`groups`: pid -> label),
    PostgreSQL's backends of this database, Redis, this process, and the rest of the machine (`other`: on a
    shared machine, other work too). A process's CPU counts its reaped children's, so a child that ends within
    its group (an RQ work horse) moves its CPU to its parent: the group's sum at the end less at the start is
    right; a backend that ends within the window takes its CPU to `other`."""

    def __init__(self, groups: dict[int, str]):
        self.groups, self.database = groups, os.environ.get("DATABASE_URL", "").rsplit("/", 1)[-1]

    def _seconds(self) -> Counter:
        seconds, grouped = Counter({"this process": _cpu_seconds(psutil.Process(), reaped=False)}), set()
        for pid, label in self.groups.items():
            processes = tree(pid)
            seconds[label] += sum(map(_cpu_seconds, processes))
            grouped.update(each.pid for each in processes)
        for each in psutil.process_iter(["name", "cmdline"]):  # a backend's title names its database
            if each.info["name"] == "postgres" and f" {self.database} " in " ".join(each.info["cmdline"] or ()):
                seconds[f"postgres {each.pid}"] += _cpu_seconds(each)  # one by one: pools end and start some
            elif (each.info["name"] or "").startswith("redis") and each.pid not in grouped:
                seconds["redis"] += _cpu_seconds(each)
        return seconds

    def __enter__(self):
        self.started, self.before, self.machine_before = time.monotonic(), self._seconds(), psutil.cpu_times()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        after, busy = self._seconds(), [sum(t) - t.idle - t.iowait for t in (self.machine_before, psutil.cpu_times())]
        self.cores = {label: max(0.0, after[label] - self.before[label]) / self.seconds for label in after}
        backends = [label for label in self.cores if label.startswith("postgres ")]
        self.cores["postgres (its backends)"] = sum(self.cores.pop(label) for label in backends)
        self.machine = (busy[1] - busy[0]) / self.seconds
        self.cores["other"] = max(0.0, self.machine - sum(self.cores.values()))

    def shares(self) -> str:
        return ", ".join(f"{label} {cores:.2f}" for label, cores in sorted(self.cores.items(), key=lambda kv: -kv[1])
                         if cores >= 0.01)

    def line(self) -> str:
        return (f"CPU over {self.seconds:.1f}s: the machine {self.machine:.2f} of {os.cpu_count()} cores busy "
                f"({load_average()}); cores used by {self.shares()}")

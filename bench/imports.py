"""Contact imports: a CSV file of --rows contacts imported through the API and a worker, against hand-written SQL
that loads the same normalised rows.

In a throwaway database, with the API under gunicorn (`scfm serve`) and one `scfm worker`:

  1. --small rows (100,000) through the API and the worker, for the worker's peak memory at that size;
  2. by hand: the same --rows contacts already normalised (E.164 number, metadata as JSON), in one
     transaction: COPY into a temporary staging table, then one INSERT ... ON CONFLICT (account_id, msisdn)
     DO UPDATE (merge) into contacts;
  3. --rows rows (1,000,000) through the API and the worker: POST /api/contact_imports with the file as a
     text/csv body, then GET /api/contact_imports/:id until it is finished. Timed from the first byte sent to
     the status `finished`.

Contacts are emptied before each step, so each writes into the same empty table and indexes. The file has a
msisdn column (+855 12 xxx xxx, in random order), province, district, gender and language. Printed: both
times and their ratio (target at most 1.5x), the upload's and the worker's shares, the peak resident
memory of the worker's work horse (VmHWM) at --small and at --rows rows (flat: the worker holds a few
chunks), and then the time of GET /api/contacts.csv of the --rows contacts with the API worker's peak.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench.common import (
    BenchError, CpuMeter, Result, admin_api, descendants, free_port, new_account, processes, progress, summary,
    throwaway_env,
)

TARGET_RATIO = 1.5
PROVINCES = ("Phnom Penh", "Siem Reap", "Battambang", "Kampot", "Kandal")
LANGUAGES = ("km", "en", "fr")


def numbers(count: int, seed: int = 13) -> list[str]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return [f"+85512{n:06d}" if n < 1_000_000 else f"+85517{n - 1_000_000:06d}" for n in order]


def rows(count: int):
    for i, msisdn in enumerate(numbers(count)):
        yield msisdn, {"province": PROVINCES[i % 5], "district": f"District {i % 97}",
                       "gender": "f" if i % 2 else "m", "language": LANGUAGES[i % 3]}


def write_csv(path: Path, count: int) -> int:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("msisdn,province,district,gender,language\r\n")
        for msisdn, m in rows(count):
            out.write(f"{msisdn},{m['province']},{m['district']},{m['gender']},{m['language']}\r\n")
    return path.stat().st_size


def write_normalised(path: Path, count: int) -> None:
    """What the hand-written SQL loads: the rows as the import normalises them, in COPY's text format."""
    with path.open("w", encoding="utf-8") as out:
        for msisdn, metadata in rows(count):
            out.write(f"{msisdn}\t{json.dumps(metadata, ensure_ascii=False)}\n")


def empty_contacts(env) -> None:
    conn = env.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("TRUNCATE contacts RESTART IDENTITY CASCADE")
            cursor.execute("VACUUM ANALYZE contacts")
    finally:
        conn.close()


def by_hand(env, account_id: int, normalised: Path) -> float:
    with env.connect() as conn, conn.cursor() as cursor, normalised.open("rb") as source:
        started = time.perf_counter()
        cursor.execute("CREATE TEMPORARY TABLE staging (msisdn text, metadata jsonb) ON COMMIT DROP")
        cursor.copy_expert("COPY staging (msisdn, metadata) FROM STDIN", source, size=1 << 16)
        cursor.execute(
            "INSERT INTO contacts (account_id, msisdn, metadata, created_at, updated_at) "
            "SELECT %s, msisdn, metadata, now(), now() FROM staging "
            "ON CONFLICT (account_id, msisdn) DO UPDATE SET metadata = contacts.metadata || EXCLUDED.metadata, "
            "updated_at = now()", (account_id,))
        conn.commit()
        return time.perf_counter() - started


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def api_peak_mib(api_pid: int) -> float:
    return max((_hwm_kib(pid) or 0 for pid in descendants(api_pid)), default=0) / 1024


def through_the_api(session, base: str, token: str, path: Path, worker_pid: int) -> dict:
    """Upload, then poll until finished; the work horse's peak memory is sampled all along."""
    peaks: dict[int, int] = {}

    def sample():
        for pid in descendants(worker_pid):
            if (hwm := _hwm_kib(pid)) is not None:
                peaks[pid] = max(peaks.get(pid, 0), hwm)

    started = time.perf_counter()
    with path.open("rb") as body:
        response = session.post(f"{base}/api/contact_imports", data=body, auth=(token, ""),
                                headers={"Content-Type": "text/csv"}, timeout=3600)
    uploaded = time.perf_counter()
    if response.status_code != 201:
        raise BenchError(f"upload: {response.status_code} {response.text[:500]}")
    import_id = response.json()["id"]
    while True:
        sample()
        state = session.get(f"{base}/api/contact_imports/{import_id}", auth=(token, ""), timeout=30).json()
        if state["status"] in ("finished", "failed"):
            break
        time.sleep(0.1)
    finished = time.perf_counter()
    if state["status"] != "finished":
        raise BenchError(f"import {import_id} failed: {state.get('error_message')}")
    return {"seconds": finished - started, "upload": uploaded - started, "worker": finished - uploaded,
            "state": state, "peak_mib": max(peaks.values(), default=0) / 1024}


def export(session, base: str, token: str, api_pid: int) -> dict:
    """GET /api/contacts.csv, read as it streams; the API worker's peak memory sampled meanwhile."""
    peaks: dict[int, int] = {}
    started = time.perf_counter()
    lines = 0
    with session.get(f"{base}/api/contacts.csv", auth=(token, ""), stream=True, timeout=600) as response:
        if response.status_code != 200:
            raise BenchError(f"export: {response.status_code} {response.text[:500]}")
        for index, piece in enumerate(response.iter_content(1 << 16)):
            lines += piece.count(b"\n")
            if index % 64 == 0:
                for pid in descendants(api_pid):
                    if (hwm := _hwm_kib(pid)) is not None:
                        peaks[pid] = max(peaks.get(pid, 0), hwm)
    return {"seconds": time.perf_counter() - started, "rows": lines - 1,
            "peak_mib": max(peaks.values(), default=0) / 1024}


def main(args: argparse.Namespace) -> int:
    import requests

    folder = Path(tempfile.mkdtemp(prefix="scfm-bench-imports-"))
    try:
        big, small, normalised = folder / "contacts.csv", folder / "small.csv", folder / "normalised.tsv"
        progress(f"writing {args.rows:,} rows to {big}")
        size = write_csv(big, args.rows)
        write_csv(small, args.small)
        write_normalised(normalised, args.rows)
        progress(f"{size / 2**20:.0f} MiB")
        with throwaway_env("imports", keep=args.keep, extra_env={"SCFM_MAX_IMPORT_BYTES": str(4 * size)}) as env:
            admin = admin_api(env.deps)
            port = free_port()
            with processes(env.child_env(SCFM_MAX_IMPORT_BYTES=4 * size)) as group:
                group.api(port, workers=1)
                worker = group.scfm("worker", "worker")
                session = requests.Session()
                session.trust_env = False
                base = f"http://127.0.0.1:{port}"
                _small_account, small_token = new_account(admin)
                progress(f"{args.small:,} rows through the API and the worker")
                first = through_the_api(session, base, small_token, small, worker.popen.pid)
                first["api_mib"] = api_peak_mib(group.started[0].popen.pid)
                progress(f"  {first['seconds']:.1f} s, worker peak {first['peak_mib']:.0f} MiB, "
                         f"API worker peak {first['api_mib']:.0f} MiB")
                empty_contacts(env)
                hand_account, _ = new_account(admin)
                progress(f"{args.rows:,} rows by hand-written SQL")
                with CpuMeter({}) as hand_cpu:
                    hand = by_hand(env, hand_account, normalised)
                progress(f"  {hand:.1f} s")
                empty_contacts(env)
                _account, token = new_account(admin)
                progress(f"{args.rows:,} rows through the API and the worker")
                with CpuMeter({group.started[0].popen.pid: "api", worker.popen.pid: "worker"}) as ours_cpu:
                    ours = through_the_api(session, base, token, big, worker.popen.pid)
                ours["api_mib"] = api_peak_mib(group.started[0].popen.pid)
                progress(f"  {ours['seconds']:.1f} s (upload {ours['upload']:.1f} s, worker {ours['worker']:.1f} s), "
                         f"worker peak {ours['peak_mib']:.0f} MiB, API worker peak {ours['api_mib']:.0f} MiB")
                progress(f"GET /api/contacts.csv of {args.rows:,} contacts")
                exported = export(session, base, token, group.started[0].popen.pid)
                progress(f"  {exported['seconds']:.1f} s, {exported['rows']:,} rows, "
                         f"API worker peak {exported['peak_mib']:.0f} MiB")
                group.check_alive()
        state = ours["state"]
        if state["rows_created"] != args.rows:
            raise BenchError(f"expected {args.rows} contacts created, the import says {state}")
        ratio = ours["seconds"] / hand
        load = Path("/proc/loadavg").read_text().split()[:3]
        results = [
            Result(f"import {args.rows:,} rows (API + worker)", f"{ours['seconds']:.1f} s",
                   f"<= {TARGET_RATIO}x by hand", ratio <= TARGET_RATIO,
                   f"{ratio:.2f}x of {hand:.1f} s by hand; upload {ours['upload']:.1f} s, worker {ours['worker']:.1f} s"),
            Result("worker peak memory", f"{first['peak_mib']:.0f} MiB at {args.small:,}, "
                   f"{ours['peak_mib']:.0f} MiB at {args.rows:,}", "flat",
                   ours["peak_mib"] <= first["peak_mib"] * 1.2 + 5),
            Result("API worker peak memory (the upload)", f"{first['api_mib']:.0f} MiB after {args.small:,}, "
                   f"{ours['api_mib']:.0f} MiB after {args.rows:,}", "flat",
                   ours["api_mib"] <= first["api_mib"] * 1.2 + 5),
            Result(f"GET /api/contacts.csv, {args.rows:,} contacts", f"{exported['seconds']:.1f} s",
                   "every row, flat memory", exported["rows"] == args.rows,
                   f"API worker peak {exported['peak_mib']:.0f} MiB (after the imports)"),
        ]
        print(summary("contact imports", results))
        print(f"by hand: {hand_cpu.line()}")
        print(f"ours:    {ours_cpu.line()}")
        print(f"load average (1, 5, 15 min) at the end: {' '.join(load)}")
        return 0 if all(r.meets is not False for r in results) else 1
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    finally:
        for path in folder.glob("*"):
            path.unlink()
        folder.rmdir()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the timed file (default 1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="rows of the first file (default 100,000)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")


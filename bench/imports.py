"""Contact imports: a CSV file of --rows contacts imported through the API and a worker, against hand-written SQL
that loads the same normalised rows.

In a throwaway database, with the API under `scfm serve` and one `scfm worker`:

  1. --small rows (100,000) through the API and the worker, for the worker's peak memory at that size;
  2. by hand: the same --rows contacts already normalised (E.164 number, metadata as JSON), in one
     transaction: COPY into a temporary staging table, then one INSERT ... ON CONFLICT (account_id, msisdn)
     DO UPDATE (merge) into contacts;
  3. --rows rows (1,000,000) through the API and the worker: POST /api/contact_imports with the file as a
     text/csv body, then GET /api/contact_imports/:id until it is finished. Timed from the first byte sent to
     the status `finished`.

Steps 2 and 3 are repeated --rounds times (default 2), alternately, and the ratio is that of the fastest of
each: on a shared machine a round can be slowed by others' work, and alternating gives both the same
chances. Contacts are emptied before each step, so each writes into the same empty table and indexes. The
file has a msisdn column (+855 12 xxx xxx, in random order), province, district, gender and language.
Printed: every round's times, the ratio (target at most 1.5x), the upload's and the worker's shares, the
peak resident memory of the worker's work horse (VmHWM) at --small and at --rows rows (flat: the worker
runs SQL, chunk by chunk), and then the time of GET /api/contacts.csv of the --rows contacts with the API
worker's peak.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from contextlib import closing
from pathlib import Path

from bench.common import (
    BenchError, CpuMeter, Result, admin_api, descendants, free_port, guarded, http_session, new_account, processes,
    progress, summary, throwaway_env, versus,
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
    with closing(env.connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("TRUNCATE contacts RESTART IDENTITY CASCADE")
            cursor.execute("VACUUM ANALYZE contacts")


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


def peak_mib(root: int, peaks: dict[int, int]) -> float:
    """The largest peak resident memory (VmHWM) of the processes under `root` seen so far, sampling them now."""
    for pid in descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "VmHWM:" in status:
            peaks[pid] = max(peaks.get(pid, 0), int(status.split("VmHWM:")[1].split()[0]))
    return max(peaks.values(), default=0) / 1024


def through_the_api(session, base: str, token: str, path: Path, worker_pid: int) -> dict:
    """Upload, then poll until finished; the work horse's peak memory is sampled all along."""
    peaks: dict[int, int] = {}
    started = time.perf_counter()
    with path.open("rb") as body:
        response = session.post(f"{base}/api/contact_imports", data=body, auth=(token, ""),
                                headers={"Content-Type": "text/csv"}, timeout=3600)
    uploaded = time.perf_counter()
    if response.status_code != 201:
        raise BenchError(f"upload: {response.status_code} {response.text[:500]}")
    import_id = response.json()["id"]
    while True:
        peak_mib(worker_pid, peaks)
        state = session.get(f"{base}/api/contact_imports/{import_id}", auth=(token, ""), timeout=30).json()
        if state["status"] in ("finished", "failed"):
            break
        time.sleep(0.1)
    finished = time.perf_counter()
    if state["status"] != "finished":
        raise BenchError(f"import {import_id} failed: {state.get('error_message')}")
    return {"seconds": finished - started, "upload": uploaded - started, "worker": finished - uploaded, "token": token,
            "state": state, "peak_mib": peak_mib(worker_pid, peaks)}


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
                peak_mib(api_pid, peaks)
    return {"seconds": time.perf_counter() - started, "rows": lines - 1, "peak_mib": peak_mib(api_pid, peaks)}


def main(args: argparse.Namespace) -> int:
    def body():
        with tempfile.TemporaryDirectory(prefix="scfm-bench-imports-") as folder:
            run(args, Path(folder))

    return guarded(body)


def run(args: argparse.Namespace, folder: Path) -> None:
    big, small, normalised = folder / "contacts.csv", folder / "small.csv", folder / "normalised.tsv"
    progress(f"writing {args.rows:,} rows to {big}")
    size = write_csv(big, args.rows)
    write_csv(small, args.small)
    write_normalised(normalised, args.rows)
    progress(f"{size / 2**20:.0f} MiB")
    with throwaway_env("imports", keep=args.keep, extra_env={"SCFM_MAX_IMPORT_BYTES": str(4 * size)}) as env:
        admin, port, session = admin_api(env.deps), free_port(), http_session()
        base = f"http://127.0.0.1:{port}"
        with processes(env.child_env(SCFM_MAX_IMPORT_BYTES=4 * size)) as group:
            api_pid = group.api(port, workers=1).popen.pid
            worker_pid = group.scfm("worker", "worker").popen.pid

            def import_file(path: Path, rows: int) -> dict:
                progress(f"{rows:,} rows through the API and the worker")
                outcome = through_the_api(session, base, new_account(admin)[1], path, worker_pid)
                outcome["api_mib"] = peak_mib(api_pid, {})
                progress(f"  {outcome['seconds']:.1f} s (upload {outcome['upload']:.1f} s, worker "
                         f"{outcome['worker']:.1f} s), worker peak {outcome['peak_mib']:.0f} MiB, "
                         f"API worker peak {outcome['api_mib']:.0f} MiB")
                return outcome

            first = import_file(small, args.small)
            hands, ourses = [], []
            for round_number in range(1, args.rounds + 1):
                empty_contacts(env)
                hand_account, _ = new_account(admin)
                progress(f"round {round_number}: {args.rows:,} rows by hand-written SQL")
                with CpuMeter({}) as hand_cpu:
                    hand = by_hand(env, hand_account, normalised)
                progress(f"  {hand:.1f} s; {hand_cpu.line()}")
                hands.append((hand, hand_cpu))
                empty_contacts(env)
                with CpuMeter({api_pid: "api", worker_pid: "worker"}) as ours_cpu:
                    ours = import_file(big, args.rows)
                progress(f"  {ours_cpu.line()}")
                ourses.append((ours, ours_cpu))
                if ours["state"]["rows_created"] != args.rows:
                    raise BenchError(f"expected {args.rows} contacts created, the import says {ours['state']}")
            progress(f"GET /api/contacts.csv of {args.rows:,} contacts")
            exported = export(session, base, ours["token"], api_pid)
            progress(f"  {exported['seconds']:.1f} s, {exported['rows']:,} rows, "
                     f"API worker peak {exported['peak_mib']:.0f} MiB")
            group.check_alive()
    hand, hand_cpu = min(hands, key=lambda pair: pair[0])
    ours, ours_cpu = min(ourses, key=lambda pair: pair[0]["seconds"])
    worker_mib = max(outcome["peak_mib"] for outcome, _cpu in ourses)
    api_mib = max(outcome["api_mib"] for outcome, _cpu in ourses)
    load = Path("/proc/loadavg").read_text().split()[:3]
    rounds = "; ".join(f"round {n}: ours {o['seconds']:.1f} s (upload {o['upload']:.1f} s), by hand {h:.1f} s"
                       for n, ((o, _oc), (h, _hc)) in enumerate(zip(ourses, hands), 1))
    print(rounds, flush=True)
    results = [
        versus(f"import {args.rows:,} rows (API + worker)", ours["seconds"], hand, target=f"<= {TARGET_RATIO}x",
               meets=ours["seconds"] <= TARGET_RATIO * hand,
               note=f"the fastest of {args.rounds} rounds each; upload {ours['upload']:.1f} s, "
                    f"worker {ours['worker']:.1f} s"),
        Result("worker peak memory", f"{first['peak_mib']:.0f} MiB at {args.small:,}, "
               f"{worker_mib:.0f} MiB at {args.rows:,}", "flat", worker_mib <= first["peak_mib"] * 1.2 + 5),
        Result("API worker peak memory (the upload)", f"{first['api_mib']:.0f} MiB after {args.small:,}, "
               f"{api_mib:.0f} MiB after {args.rows:,}", "flat", api_mib <= first["api_mib"] * 1.2 + 5),
        Result(f"GET /api/contacts.csv, {args.rows:,} contacts", f"{exported['seconds']:.1f} s",
               "every row, flat memory", exported["rows"] == args.rows,
               f"API worker peak {exported['peak_mib']:.0f} MiB (after the imports)"),
    ]
    print(summary("contact imports", results))
    print(f"by hand (fastest round): {hand_cpu.line()}")
    print(f"ours (fastest round):    {ours_cpu.line()}")
    print(f"load average (1, 5, 15 min) at the end: {' '.join(load)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the timed file (default 1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="rows of the first file (default 100,000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of by hand then ours; the ratio is of the fastest of each (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")


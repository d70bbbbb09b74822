"""`scfm import contacts` and `scfm export ...`: the API's imports and exports from a shell, with a progress
bar on a terminal (rich) and a summary at the end. The import runs in this process, chunk by chunk as a
worker runs it; if it is stopped, the sweeper hands the rest to a worker."""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scfm.domain.errors import NotFound, ValidationFailed
from scfm.domain.model import stored


class _NoJobs:
    """The import runs here: nothing to enqueue."""

    def run_contact_import(self, contact_import_id: int) -> None:
        pass


class _CountingReader(io.RawIOBase):
    def __init__(self, raw, advance):
        self.raw, self.advance = raw, advance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = self.raw.readinto(buffer)
        self.advance(size or 0)
        return size


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                    TimeElapsedColumn(), console=console, disable=not console.is_terminal, transient=False)


def _failed(console: Console, error: Exception) -> int:
    if isinstance(error, ValidationFailed):
        for name, messages in error.errors.items():
            console.print(f"[red]{name}[/red] {', '.join(messages)}")
    else:
        console.print(f"[red]{error}[/red]")
    return 2


def cmd_import_contacts(args, deps) -> int:
    from scfm.services import accounts, contact_imports

    console = Console(stderr=True, soft_wrap=True)
    path = Path(args.file)
    params = {"msisdn_column": args.msisdn_column, "default_country": args.default_country,
              "metadata_merge_mode": args.metadata_merge_mode, "update_existing": not args.leave_existing,
              "callout_id": args.callout_id}
    try:
        account_id = stored(accounts.get_account(deps.uow(None), args.account_id).id)
        with _progress(console) as progress, path.open("rb", buffering=0) as raw:
            reading = progress.add_task(f"reading {path.name}", total=path.stat().st_size, unit="bytes")
            source = _CountingReader(raw, lambda size: progress.advance(reading, size))
            contact_import = contact_imports.create_import(deps.uow(account_id), _NoJobs(), account_id, params,
                                                           source, path.name)
            importing = progress.add_task("importing", total=contact_import.rows_total, unit="rows")

            def advance(done):
                progress.update(importing, completed=done.rows_read)

            summary = contact_imports.run_import(deps.uow, stored(contact_import.id), after_chunk=advance)
            progress.update(importing, completed=contact_import.rows_total)
    except (NotFound, ValidationFailed) as error:
        return _failed(console, error)
    except KeyboardInterrupt:
        console.print("stopped: the import carries on in a worker (the scheduler hands it over)")
        return 130
    console.print(f"contact import {contact_import.id}: {summary['status']}; {summary['rows_read']} rows read, "
                  f"{summary['rows_created']} created, {summary['rows_updated']} updated, "
                  f"{summary['rows_unchanged']} unchanged, {summary['rows_refused']} refused")
    if summary["rows_refused"]:
        if args.errors:
            rows = contact_imports.import_errors(deps.uow, account_id, contact_import.id)
            written = _write_csv(rows, args.errors)
            console.print(f"refused rows, with their reasons: {args.errors} ({written} rows)")
        else:
            console.print(f"refused rows: GET /api/contact_imports/{contact_import.id}/errors.csv, or --errors FILE")
    return 0


def _write_csv(rows, target: str | None, on_row=None) -> int:
    from scfm.entrypoints.api.exports import csv_lines

    count = -1  # the header is not a row

    def counted():
        nonlocal count
        for row in rows:
            count += 1
            if on_row is not None and count:
                on_row()
            yield row

    out: BinaryIO = sys.stdout.buffer if target is None or target == "-" else open(target, "wb")
    try:
        for piece in csv_lines(counted()):
            out.write(piece)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return max(count, 0)


def cmd_export(args, deps) -> int:
    from scfm.entrypoints.api.http import BadRequest, nest
    from scfm.services import accounts, exports

    console = Console(stderr=True, soft_wrap=True)
    try:
        account_id = stored(accounts.get_account(deps.uow(None), args.account_id).id)
        q = nest([tuple(item.split("=", 1)) if "=" in item else (item, "") for item in args.filter or []])
        with _progress(console) as progress:
            task = progress.add_task(f"exporting {args.kind}", total=None, unit="rows")
            rows = exports.export(deps.uow, account_id, args.kind, q, args.callout_id,
                                  on_count=lambda total: progress.update(task, total=total))
            written = _write_csv(rows, args.output, on_row=lambda: progress.advance(task))
    except (NotFound, ValidationFailed, BadRequest) as error:
        return _failed(console, error)
    console.print(f"{written} {args.kind} written to {args.output or 'standard output'}")
    return 0


def add_parsers(sub) -> None:
    imports = sub.add_parser("import", help="import records from a file")
    imports_sub = imports.add_subparsers(dest="import_kind", required=True)
    contacts = imports_sub.add_parser("contacts", help="import contacts from a CSV file (as POST /api/contact_imports)")
    contacts.add_argument("file", help="a CSV file: a header line, a msisdn (or phone, phone_number) column")
    contacts.add_argument("--account-id", type=int, required=True)
    contacts.add_argument("--msisdn-column", help="the column of the numbers (default msisdn, phone or phone_number)")
    contacts.add_argument("--default-country", help="ISO 3166 code for numbers without a country code (e.g. KH)")
    contacts.add_argument("--metadata-merge-mode", choices=["merge", "deep_merge", "replace"],
                          help="for contacts that exist (default merge)")
    contacts.add_argument("--leave-existing", action="store_true", help="leave contacts that exist as they are")
    contacts.add_argument("--callout-id", type=int, help="add every imported contact to this callout")
    contacts.add_argument("--errors", metavar="FILE", help="write the refused rows (errors.csv) to FILE")
    export = sub.add_parser("export", help="export a filtered list as CSV (as GET /api/contacts.csv)")
    export.add_argument("kind", choices=["contacts", "callout_participations", "phone_calls"])
    export.add_argument("--account-id", type=int, required=True)
    export.add_argument("--callout-id", type=int, help="only the callout's records")
    export.add_argument("--filter", action="append", metavar="KEY=VALUE",
                        help="a filter as in q[...], e.g. --filter 'metadata[gender]=f' (repeatable)")
    export.add_argument("-o", "--output", help="the file to write (default standard output)")

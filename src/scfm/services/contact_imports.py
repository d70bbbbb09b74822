"""Use cases of contact imports: upload a CSV file, run it in a worker chunk by chunk, and read what it refused.

The upload reads and normalises the file's rows as they arrive and stores them in PostgreSQL (never whole in
memory), then enqueues the job after the commit; the worker's chunks are set-based SQL over the stored rows,
each committing its contacts together with the import's progress, so a killed worker's successor carries on
after the last committed chunk and writes nothing twice.
"""
from __future__ import annotations

import io
import logging
from typing import Any, Callable, Iterator

from scfm.domain import contact_import as ci
from scfm.domain.contact_import import ContactImport, ImportOptions
from scfm.domain.model import stored
from scfm.domain.ports import ContactImportJobs, UnitOfWork, UnitsOfWork
from scfm.domain.state_machines import ContactImportStatus
from scfm.services.common import Page, PageRequest, list_page

log = logging.getLogger(__name__)

CHUNK_LINES = 50_000
MAX_ATTEMPTS = 5  # deliveries of an import's job (retries, redeliveries) before it is marked failed
LOST = ("the uploaded rows were lost when PostgreSQL restarted after a crash: upload the file again (rows "
        "imported already are not imported twice)")


def text_lines(binary: io.RawIOBase | io.BufferedReader) -> Iterator[str]:
    """The lines of an uploaded file: UTF-8 with or without a BOM; bytes that are not UTF-8 are kept (as
    surrogates) so that their rows are refused, not the file."""
    buffered = binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(binary, 1 << 16)
    return iter(io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="surrogateescape", newline=""))


def create_import(uow: UnitOfWork, jobs: ContactImportJobs, account_id: int, params: dict[str, Any],
                  binary: io.RawIOBase | io.BufferedReader, filename: str | None = None) -> ContactImport:
    """Store the file's rows and queue the import. 422 for bad options or a header without a number column,
    404 for a callout that is not the account's; the body's size limit is the caller's (a 413 mid-way
    rolls everything back)."""
    options = ImportOptions.parse(params)
    with uow:
        callout_id = uow.callouts.get(options.callout_id).id if options.callout_id is not None else None
        header_cells, delimiter, rows = ci.read_csv(text_lines(binary))
        header = ci.Header.parse(header_cells, options)
        contact_import = uow.contact_imports.add(ContactImport(
            account_id=account_id, callout_id=callout_id, filename=(filename or "").replace("\x00", "")[:255] or None,
            options=options.as_dict(), header=list(header.names), delimiter=delimiter))
        import_id = stored(contact_import.id)
        uow.imports.create_tables(import_id)
        contact_import.rows_total = uow.imports.copy_rows(import_id, ci.normalise_rows(rows, header, options))
        contact_import = uow.contact_imports.save(contact_import)
        uow.commit()
    jobs.run_contact_import(import_id)
    return contact_import


def get_import(uow: UnitOfWork, import_id: Any) -> ContactImport:
    with uow:
        return uow.contact_imports.get(import_id)


def list_imports(uow: UnitOfWork, q: Any, paging: PageRequest) -> Page:
    with uow:
        return list_page(uow.contact_imports, ci.CONTACT_IMPORT_FILTERS, q, paging)


def import_errors(uow_for: UnitsOfWork, account_id: int, import_id: Any) -> Iterator[list[str]]:
    """errors.csv as rows of cells: line, the file's columns, reason. 404 at once for another account's."""
    with uow_for(account_id) as uow:
        contact_import = uow.contact_imports.get(import_id)
        header, found = contact_import.header, stored(contact_import.id)

    def rows() -> Iterator[list[str]]:
        yield ["line", *header, "reason"]
        with uow_for(account_id) as uow:
            for line, cells, reason in uow.imports.errors(found):
                yield [str(line), *cells, reason]

    return rows()


def run_import(uow_for: UnitsOfWork, import_id: int, chunk_lines: int = CHUNK_LINES,
               after_chunk: Callable[[ContactImport], None] | None = None) -> dict[str, Any]:
    """The worker's part: chunk after chunk until the file is done. Safe to run twice, also at once."""
    with uow_for(None) as uow:
        contact_import = uow.imports.lock(import_id)
        if contact_import is None or not contact_import.is_open:
            return {"status": contact_import.status if contact_import else "gone"}
        if contact_import.status == ContactImportStatus.QUEUED.value:
            contact_import.fire("start")
            uow.imports.save_status(contact_import)
        attempts = uow.contact_imports.count_attempt(import_id)
        uow.commit()
    try:
        while True:
            with uow_for(None) as uow:
                contact_import = uow.imports.lock(import_id)
                if contact_import is None or not contact_import.is_open:
                    return {"status": contact_import.status if contact_import else "gone"}
                written = uow.imports.write_chunk(contact_import, chunk_lines)
                if written is None:
                    return _finish(uow, contact_import)
                contact_import.last_line, counts = written
                uow.imports.record_chunk(import_id, contact_import.last_line, counts)
                uow.commit()
            for name in ("read", "created", "updated", "unchanged", "refused"):
                setattr(contact_import, f"rows_{name}", getattr(contact_import, f"rows_{name}") + getattr(counts, name))
            if after_chunk is not None:
                after_chunk(contact_import)
    except Exception as error:
        if attempts >= MAX_ATTEMPTS:
            fail_import(uow_for, import_id, f"stopped after {attempts} attempts ({type(error).__name__})")
        raise


def _finish(uow: UnitOfWork, contact_import: ContactImport) -> dict[str, Any]:
    """Every stored row is done: finished, or failed if PostgreSQL lost rows (a restart after a crash)."""
    if contact_import.rows_read < contact_import.rows_total:
        contact_import.error_message = LOST
        contact_import.fire("fail")
    else:
        contact_import.fire("finish")
    uow.imports.save_status(contact_import)
    uow.imports.drop_tables(stored(contact_import.id))
    uow.commit()
    uow.imports.analyze()
    uow.commit()
    return _summary(contact_import)


def fail_import(uow_for: UnitsOfWork, import_id: int, message: str) -> None:
    with uow_for(None) as uow:
        contact_import = uow.imports.lock(import_id)
        if contact_import is None or not contact_import.is_open:
            return
        contact_import.fire("fail")
        contact_import.error_message = message
        uow.imports.save_status(contact_import)
        uow.imports.drop_tables(import_id)
        uow.commit()
    log.warning("contact import %s failed: %s", import_id, message)


def _summary(contact_import: ContactImport) -> dict[str, Any]:
    return {name: getattr(contact_import, name) for name in (
        "status", "rows_read", "rows_created", "rows_updated", "rows_unchanged", "rows_refused")}


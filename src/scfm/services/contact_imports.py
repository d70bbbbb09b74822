"""Use cases of contact imports: upload a CSV file, run it in a worker chunk by chunk, and read what it refused.

The upload stores the file's rows in PostgreSQL (never whole in memory) and enqueues the job after the
commit; each chunk commits its contacts together with the import's progress, so a killed worker's successor
carries on after the last committed chunk and writes nothing twice.
"""
from __future__ import annotations

import io
import logging
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Union

from scfm.domain import contact_import as ci
from scfm.domain.contact_import import ContactImport, Header, ImportOptions, PreparedChunk, Refusal, Row
from scfm.domain.model import stored
from scfm.domain.ports import ContactImportJobs, UnitOfWork, UnitsOfWork
from scfm.domain.state_machines import ContactImportStatus
from scfm.services.common import Page, PageRequest, list_page

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000
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
        contact_import.rows_total = uow.imports.copy_rows(import_id, rows)
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


def run_import(uow_for: UnitsOfWork, import_id: int, chunk_rows: int = CHUNK_ROWS,
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
        header, options = contact_import.parsed_header(), contact_import.import_options()
        after = contact_import.last_line
        while True:
            outcome = _write_chunks(uow_for, import_id, after, header, options, chunk_rows, after_chunk)
            if isinstance(outcome, dict):
                return outcome
            after = outcome
    except Exception as error:
        if attempts >= MAX_ATTEMPTS:
            fail_import(uow_for, import_id, f"stopped after {attempts} attempts ({type(error).__name__})")
        raise


def _write_chunks(uow_for: UnitsOfWork, import_id: int, after: int, header: Header, options: ImportOptions,
                  chunk_rows: int, after_chunk: Callable[[ContactImport], None] | None
                  ) -> dict[str, Any] | int:
    """Write the chunks after line `after` (each read and normalised in a thread while the one before is being
    written); then finish. The summary when the import is done or no longer open; the line another delivery
    of the job has moved it on to meanwhile."""
    with _ChunkReader(uow_for, import_id, after, header, options, chunk_rows) as chunks:
        for chunk in chunks:
            with uow_for(None) as uow:
                contact_import = uow.imports.lock(import_id)
                if contact_import is None or not contact_import.is_open:
                    return {"status": contact_import.status if contact_import else "gone"}
                if contact_import.last_line != after:
                    return contact_import.last_line
                counts = uow.imports.write_chunk(contact_import, chunk)
                uow.imports.record_chunk(import_id, chunk.last_line, counts)
                uow.commit()
            after = contact_import.last_line = chunk.last_line
            for name in ("read", "created", "updated", "unchanged", "refused"):
                setattr(contact_import, f"rows_{name}", getattr(contact_import, f"rows_{name}") + getattr(counts, name))
            if after_chunk is not None:
                after_chunk(contact_import)
    with uow_for(None) as uow:
        contact_import = uow.imports.lock(import_id)
        if contact_import is None or not contact_import.is_open:
            return {"status": contact_import.status if contact_import else "gone"}
        if contact_import.last_line != after or uow.imports.next_rows(import_id, after, 1):
            return contact_import.last_line
        if contact_import.rows_read < contact_import.rows_total:
            contact_import.error_message = LOST
            contact_import.fire("fail")
        else:
            contact_import.fire("finish")
        uow.imports.save_status(contact_import)
        uow.imports.drop_tables(import_id)
        uow.commit()
        uow.imports.analyze()
        uow.commit()
    return _summary(contact_import)


def normalise_chunk(rows: Iterable[tuple[int, list[str], str | None]], header: Header, options: ImportOptions
                    ) -> tuple[list[Row], list[Refusal], dict[int, list[str]]]:
    good: list[Row] = []
    refused: list[Refusal] = []
    cells_by_line: dict[int, list[str]] = {}
    for line, cells, problem in rows:
        result = Refusal(line, problem) if problem else ci.normalize_row(line, cells, header, options, readable=True)
        if isinstance(result, Refusal):
            refused.append(result)
            cells_by_line[line] = cells
        else:
            good.append(result)
    return good, refused, cells_by_line


class _End:
    """What the reader puts after the last chunk."""


_END = _End()
_Item = Union[PreparedChunk, _End, BaseException]


class _ChunkReader:
    """Reads and normalises the chunks after a line in a thread, one ahead of the writer: the Python work of
    the next chunk overlaps PostgreSQL's work on this one. At most three chunks are held at a time."""

    def __init__(self, uow_for: UnitsOfWork, import_id: int, after: int, header: Header, options: ImportOptions,
                 chunk_rows: int):
        self.args = (uow_for, import_id, after, header, options, chunk_rows)
        self.queue: queue.Queue[_Item] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"contact-import-{import_id}-reader", daemon=True)

    def __enter__(self) -> Iterator[PreparedChunk]:
        self.thread.start()
        return self._chunks()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _put(self, item: _Item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        uow_for, import_id, after, header, options, chunk_rows = self.args
        try:
            with uow_for(None) as uow:
                while not self.stop.is_set():
                    rows = uow.imports.next_rows(import_id, after, chunk_rows)
                    uow.commit()  # no snapshot held between chunks
                    if not rows:
                        break
                    after = rows[-1][0]
                    good, refused, cells_by_line = normalise_chunk(rows, header, options)
                    self._put(uow.imports.prepare_chunk(import_id, good, refused, cells_by_line, after))
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - raised again in the writer's thread
            self._put(error)

    def _chunks(self) -> Iterator[PreparedChunk]:
        while True:
            item = self.queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item


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


"""Contact imports in PostgreSQL: the uploaded rows COPYed into a table of the import's own, each chunk written
with set-based SQL (one upsert of its contacts, one insert of its participations) in the transaction that
records the chunk's progress, and the refused rows read back for errors.csv.

Each import has two tables, dropped when it ends: contact_import_rows_<id> (line, cells as JSON text, problem)
holds the file as uploaded, contact_import_numbers_<id> (number, line) the first line of each number seen, so
that a number repeated anywhere later in the file is refused without keeping a million numbers in a worker.
Both are UNLOGGED (a million rows without their WAL): PostgreSQL empties them if it restarts after a crash,
and the import then fails saying so (the service compares the rows read with the rows uploaded).
"""
from __future__ import annotations

import io
import json
from typing import Iterable, Iterator

import psycopg2
from sqlalchemy import exc, func, select, update

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.repositories import Repository
from scfm.domain import model
from scfm.domain import state_machines as sm
from scfm.domain.contact_import import (DUPLICATE_NUMBER, ChunkCounts, ContactImport, PreparedChunk, Refusal, Row,
                                        merged_too_large_reason)
from scfm.domain.values import MAX_DOCUMENT_BYTES, MergeMode

COPY_BATCH_ROWS = 5000
OPEN = [s.value for s in sm.OPEN_CONTACT_IMPORT_STATUSES]


def rows_table(import_id: int) -> str:
    return f"contact_import_rows_{int(import_id)}"


def numbers_table(import_id: int) -> str:
    return f"contact_import_numbers_{int(import_id)}"


class ContactImportRepository(Repository):
    table = t.contact_imports
    entity = ContactImport
    resource = "contact import"

    def stalled(self, older_than_seconds: float) -> list[int]:
        """Queued or running imports that have not moved for a while: their job was lost."""
        ci = self.table
        cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
        return list(self.conn.execute(select(ci.c.id).where(ci.c.status.in_(OPEN), ci.c.updated_at < cutoff)
                                      .order_by(ci.c.id)).scalars())

    def count_attempt(self, import_id: int) -> int:
        ci = self.table
        return self.conn.execute(update(ci).where(ci.c.id == import_id).values(attempts=ci.c.attempts + 1)
                                 .returning(ci.c.attempts)).scalar_one()


def _copy_text(value: str) -> str:
    """A value in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_json(value) -> str:
    """A value as JSON in COPY's text format: JSON escapes tabs and line breaks itself, so only its
    backslashes need doubling."""
    return json.dumps(value, ensure_ascii=False).replace("\\", "\\\\")


class _Lines(io.RawIOBase):
    """An iterator of text lines as the file COPY FROM STDIN reads."""

    def __init__(self, lines: Iterable[str]):
        self.lines = iter(lines)
        self.pending = b""
        self.error: BaseException | None = None  # what reading raised (psycopg2 turns it into a failed COPY)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            try:
                chunk = "".join(line for _, line in zip(range(1000), self.lines))
            except BaseException as error:
                self.error = error
                raise
            if not chunk:
                break
            self.pending += chunk.encode("utf-8")
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


class ContactImportStore:
    """The bulk work of imports, within a unit of work's transaction."""

    def __init__(self, conn):
        self.conn = conn

    def _copy(self, statement: str, lines: Iterable[str] | bytes) -> None:
        """COPY FROM STDIN on this transaction's connection; an error of the lines' source (a body over its
        limit) is raised as itself, PostgreSQL's as SQLAlchemy's, like every other statement's."""
        source: _Lines | None = None
        data: io.BufferedIOBase
        if isinstance(lines, bytes):
            data = io.BytesIO(lines)
        else:
            source = _Lines(lines)
            data = io.BufferedReader(source, 1 << 16)
        cursor = self.conn.connection.cursor()
        try:
            cursor.copy_expert(statement, data, size=1 << 16)
        except psycopg2.Error as error:
            if source is not None and source.error is not None:
                raise source.error from None
            raise exc.DBAPIError.instance(statement, None, error, psycopg2.Error) from error
        finally:
            cursor.close()

    # ------------------------------------------------------------ upload
    def create_tables(self, import_id: int) -> None:
        self.drop_tables(import_id)  # ids are never reused, but a test's TRUNCATE ... RESTART IDENTITY reuses them
        self.conn.exec_driver_sql(
            f"CREATE UNLOGGED TABLE {rows_table(import_id)} (line integer PRIMARY KEY, cells text NOT NULL, problem text)")
        self.conn.exec_driver_sql(
            f"CREATE UNLOGGED TABLE {numbers_table(import_id)} (number bigint PRIMARY KEY, line integer NOT NULL)")

    def copy_rows(self, import_id: int, rows: Iterable[tuple[int, list[str], str | None]]) -> int:
        """COPY (line, cells, problem) rows into the import's table as they come; how many."""
        count = 0

        def lines() -> Iterator[str]:
            nonlocal count
            for line, cells, problem in rows:
                count += 1
                yield (f"{line}\t{_copy_json(cells)}\t{_copy_text(problem) if problem else chr(92) + 'N'}\n")

        self._copy(f"COPY {rows_table(import_id)} (line, cells, problem) FROM STDIN", lines())
        return count

    def drop_tables(self, import_id: int) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {rows_table(import_id)}, {numbers_table(import_id)}")

    # ------------------------------------------------------------ the worker
    def lock(self, import_id: int) -> ContactImport | None:
        """The import, locked for this transaction: two deliveries of its job take turns, chunk by chunk."""
        row = self.conn.execute(select(t.contact_imports).where(t.contact_imports.c.id == import_id)
                                .with_for_update()).first()
        if row is None:
            return None
        contact_import = ContactImport(**row._mapping)
        contact_import.mark_clean()
        return contact_import

    def next_rows(self, import_id: int, after_line: int, limit: int) -> list[tuple[int, list, str | None]]:
        cursor = self.conn.connection.cursor()  # the driver's tuples: a million rows pass through here
        try:
            cursor.execute(f"SELECT line, cells, problem FROM {rows_table(import_id)} WHERE line > %s ORDER BY line "
                           "LIMIT %s", (after_line, limit))
            loads = json.loads
            return [(line, loads(cells), problem) for line, cells, problem in cursor.fetchall()]
        except psycopg2.Error as error:
            raise exc.DBAPIError.instance("SELECT ... FROM contact_import_rows", None, error, psycopg2.Error) from error
        finally:
            cursor.close()

    @staticmethod
    def prepare_chunk(import_id: int, good: list[Row], refused: list[Refusal], cells_by_line: dict[int, list],
                      last_line: int) -> "PreparedChunk":
        """A chunk's rows as COPY reads them (made while the previous chunk is being written)."""
        return PreparedChunk(
            last_line=last_line, good=len(good), refused=len(refused),
            rows="".join(f"{row.line}\t{row.msisdn}\t{_copy_json(row.metadata)}\n" for row in good).encode(),
            errors="".join(f"{import_id}\t{r.line}\t{_copy_json(cells_by_line[r.line])}"
                           f"\t{_copy_text(r.reason)}\n" for r in refused).encode())

    def write_chunk(self, contact_import: ContactImport, chunk: "PreparedChunk") -> ChunkCounts:
        """Write one chunk's contacts, participations and refusals; the counts. Set-based: a temporary table
        of the chunk's rows, then one statement per step."""
        import_id, account_id = model.stored(contact_import.id), contact_import.account_id
        options = contact_import.import_options()
        counts = ChunkCounts(read=chunk.good + chunk.refused, refused=chunk.refused)
        if chunk.errors:
            self._copy("COPY contact_import_errors (contact_import_id, line, cells, reason) FROM STDIN", chunk.errors)
        if not chunk.good:
            return counts
        sql = self.conn.exec_driver_sql
        sql("CREATE TEMPORARY TABLE IF NOT EXISTS contact_import_chunk "
            "(line integer, msisdn text, metadata jsonb, number bigint GENERATED ALWAYS AS "
            "(substr(msisdn, 2)::bigint) STORED)")
        sql("TRUNCATE contact_import_chunk")
        self._copy("COPY contact_import_chunk (line, msisdn, metadata) FROM STDIN", chunk.rows)
        numbers, rows = numbers_table(import_id), rows_table(import_id)
        # the first line of each number is imported; a number on an earlier line refuses this one
        firsts = sql(f"INSERT INTO {numbers} (number, line) SELECT DISTINCT ON (number) number, line "
                     "FROM contact_import_chunk ORDER BY number, line ON CONFLICT (number) DO NOTHING").rowcount
        refused_more = 0
        if firsts < chunk.good:
            refused_more = sql(
                f"""WITH duplicates AS (
                    DELETE FROM contact_import_chunk c USING {numbers} n
                    WHERE n.number = c.number AND n.line <> c.line
                    RETURNING c.line, n.line AS first_line)
                INSERT INTO contact_import_errors (contact_import_id, line, cells, reason)
                SELECT %(id)s, d.line, r.cells::jsonb, %(reason)s || ' (first on line ' || d.first_line || ')'
                FROM duplicates d JOIN {rows} r ON r.line = d.line""",
                {"id": import_id, "reason": DUPLICATE_NUMBER}).rowcount
        merge = {
            MergeMode.MERGE: "contacts.metadata || EXCLUDED.metadata",
            MergeMode.DEEP_MERGE: "scfm_jsonb_deep_merge(contacts.metadata, EXCLUDED.metadata)",
            MergeMode.REPLACE: "EXCLUDED.metadata",
        }[options.metadata_merge_mode]
        bounded = options.update_existing and options.metadata_merge_mode is not MergeMode.REPLACE
        if options.update_existing:  # a merge that would outgrow the bound is not written (and refused below)
            conflict = (f"DO UPDATE SET metadata = {merge}, updated_at = now() "
                        f"WHERE contacts.metadata IS DISTINCT FROM {merge}"
                        + (f" AND octet_length(({merge})::text) <= {MAX_DOCUMENT_BYTES}" if bounded else ""))
        else:
            conflict = "DO NOTHING"
        created, updated = sql(
            f"""WITH written AS (
                INSERT INTO contacts (account_id, msisdn, metadata, created_at, updated_at)
                SELECT %(account)s, msisdn, metadata, now(), now() FROM contact_import_chunk ORDER BY number
                ON CONFLICT ON CONSTRAINT index_contacts_on_account_id_and_msisdn {conflict}
                RETURNING (xmax = 0) AS created)
            SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM written""",
            {"account": account_id}).one()
        if bounded and chunk.good - refused_more - created - updated > 0:
            merged = merge.replace("contacts.", "k.").replace("EXCLUDED.", "c.")
            refused_more += sql(
                f"""WITH too_large AS (
                    DELETE FROM contact_import_chunk c USING contacts k
                    WHERE k.account_id = %(account)s AND k.msisdn = c.msisdn
                      AND octet_length(({merged})::text) > %(limit)s
                    RETURNING c.line)
                INSERT INTO contact_import_errors (contact_import_id, line, cells, reason)
                SELECT %(id)s, d.line, r.cells::jsonb, %(reason)s FROM too_large d JOIN {rows} r ON r.line = d.line""",
                {"account": account_id, "limit": MAX_DOCUMENT_BYTES, "id": import_id,
                 "reason": merged_too_large_reason()}).rowcount
        if contact_import.callout_id is not None:
            sql("""INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn, created_at, updated_at)
                SELECT %(account)s, %(callout)s, k.id, k.msisdn, now(), now()
                FROM contact_import_chunk c JOIN contacts k ON k.account_id = %(account)s AND k.msisdn = c.msisdn
                ORDER BY k.id ON CONFLICT DO NOTHING""", {"account": account_id, "callout": contact_import.callout_id})
        counts.refused += refused_more
        counts.created, counts.updated = created, updated
        counts.unchanged = chunk.good - refused_more - created - updated
        return counts

    def record_chunk(self, import_id: int, last_line: int, counts: ChunkCounts) -> None:
        ci = t.contact_imports
        self.conn.execute(update(ci).where(ci.c.id == import_id).values(
            last_line=last_line, rows_read=ci.c.rows_read + counts.read,
            rows_created=ci.c.rows_created + counts.created, rows_updated=ci.c.rows_updated + counts.updated,
            rows_unchanged=ci.c.rows_unchanged + counts.unchanged, rows_refused=ci.c.rows_refused + counts.refused,
            updated_at=func.now()))

    def save_status(self, contact_import: ContactImport) -> None:
        ci = t.contact_imports
        self.conn.execute(update(ci).where(ci.c.id == contact_import.id).values(
            status=contact_import.status, started_at=contact_import.started_at,
            finished_at=contact_import.finished_at, error_message=contact_import.error_message,
            updated_at=func.now()))

    def analyze(self) -> None:
        self.conn.exec_driver_sql("ANALYZE contacts")

    # ------------------------------------------------------------ errors.csv
    def errors(self, import_id: int, batch: int = 2000) -> Iterator[tuple[int, list, str]]:
        """The refused rows by line, read in batches (a keyset, not an offset)."""
        e = t.contact_import_errors
        after = 0
        while True:
            rows = self.conn.execute(select(e.c.line, e.c.cells, e.c.reason).where(
                e.c.contact_import_id == import_id, e.c.line > after).order_by(e.c.line).limit(batch)).all()
            yield from (tuple(row) for row in rows)
            if len(rows) < batch:
                return
            after = rows[-1].line


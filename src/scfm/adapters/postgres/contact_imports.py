"""Contact imports in PostgreSQL: the uploaded rows, normalised as they arrive, COPYed into a table of the import's
own; each chunk of them written with set-based SQL (one upsert of its contacts, one insert of its
participations, one of its refused rows) in the transaction that records the chunk's progress; and the refused
rows read back for errors.csv.

The table, contact_import_rows_<id> (line, msisdn, metadata, cells, problem, seen), is dropped when the import
ends.
It is UNLOGGED (a million rows without their WAL): PostgreSQL empties it if it restarts after a crash, and the
import then fails saying so (the service compares the rows read with the rows uploaded).
"""
from __future__ import annotations

import io
from json.encoder import encode_basestring
from typing import Iterable, Iterator

import psycopg2
from sqlalchemy import exc, func, select, update

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.repositories import Repository
from scfm.domain import model
from scfm.domain import state_machines as sm
from scfm.domain.contact_import import (DUPLICATE_NUMBER, ChunkCounts, ContactImport, Refusal, Row,
                                        merged_too_large_reason)
from scfm.domain.values import MAX_DOCUMENT_BYTES, MergeMode

OPEN = [s.value for s in sm.OPEN_CONTACT_IMPORT_STATUSES]


def rows_table(import_id: int) -> str:
    return f"contact_import_rows_{int(import_id)}"


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


_json_string = encode_basestring  # a text as a JSON string (json.dumps' own C function)


SEEN_BITS = 1 << 24  # 2 MiB whatever the file's size: a million numbers set about 6% of it, about 3% are `seen`


def _copy_lines(rows: Iterable[tuple[list[str], Row | Refusal]], counts: list[int]) -> Iterator[str]:
    """Rows as COPY (line, msisdn, metadata, cells, problem, seen) reads them: the cells (as a JSON array) of
    every row, since a good row may yet be refused (a number on an earlier line). `seen` is true when a bit
    of a fixed bitmap of the numbers so far (by hash) was set by an earlier row: maybe the same number, maybe
    another one; the rows that are not are no repeat. counts: [rows, rows seen]."""
    seen = bytearray(SEEN_BITS >> 3)
    mask = SEEN_BITS - 1
    count = seen_count = 0
    for cells, outcome in rows:
        count += 1
        cells_json = "[" + ",".join(map(_json_string, cells)) + "]"
        if isinstance(outcome, Row):
            bit = hash(outcome.msisdn) & mask
            byte, flag = bit >> 3, 1 << (bit & 7)
            if seen[byte] & flag:
                seen_count += 1
                repeat = "t"
            else:
                seen[byte] |= flag
                repeat = "\\N"
            yield (f"{outcome.line}\t{outcome.msisdn}\t{_copy_json_text(outcome.metadata + chr(9) + cells_json)}"
                   f"\t\\N\t{repeat}\n")
        else:
            yield f"{outcome.line}\t\\N\t\\N\t{_copy_json_text(cells_json)}\t{_copy_text(outcome.reason)}\t\\N\n"
    counts[:] = [count, seen_count]


def _copy_json_text(value: str) -> str:
    """JSON text in COPY's text format: JSON escapes tabs and line breaks itself, so only its backslashes double."""
    return value.replace("\\", "\\\\")


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

    def _copy(self, statement: str, lines: Iterable[str]) -> None:
        """COPY FROM STDIN on this transaction's connection; an error of the lines' source (a body over its
        limit) is raised as itself, PostgreSQL's as SQLAlchemy's, like every other statement's."""
        source = _Lines(lines)
        cursor = self.conn.connection.cursor()
        try:
            cursor.copy_expert(statement, io.BufferedReader(source, 1 << 16), size=1 << 16)
        except psycopg2.Error as error:
            if source.error is not None:
                raise source.error from None
            raise exc.DBAPIError.instance(statement, None, error, psycopg2.Error) from error
        finally:
            cursor.close()

    # ------------------------------------------------------------ upload
    def create_tables(self, import_id: int) -> None:
        self.drop_tables(import_id)  # ids are never reused, but a test's TRUNCATE ... RESTART IDENTITY reuses them
        self.conn.exec_driver_sql(
            f"CREATE UNLOGGED TABLE {rows_table(import_id)} (line integer NOT NULL, msisdn text, metadata jsonb, "
            "cells text NOT NULL, problem text, seen boolean)")

    def copy_rows(self, import_id: int, rows: Iterable[tuple[list[str], Row | Refusal]]) -> int:
        """COPY the rows, normalised or refused, into the import's table as they come; then refuse every row
        whose number an earlier line has. How many rows."""
        counts = [0, 0]
        table = rows_table(import_id)
        self._copy(f"COPY {table} (line, msisdn, metadata, cells, problem, seen) FROM STDIN", _copy_lines(rows, counts))
        sql = self.conn.exec_driver_sql
        # the rows are in the order of their lines: a block range index finds a chunk's at little cost
        sql(f"CREATE INDEX ON {table} USING brin (line)")
        if counts[1]:  # the numbers of the rows seen, each on every line it is on, then its later lines refused
            sql(f"""UPDATE {table} r SET problem = %(reason)s || ' (first on line ' || d.first_line || ')'
                FROM (SELECT msisdn, min(line) AS first_line FROM {table}
                      WHERE problem IS NULL AND msisdn IN (SELECT msisdn FROM {table} WHERE seen)
                      GROUP BY msisdn HAVING count(*) > 1) d
                WHERE r.msisdn = d.msisdn AND r.problem IS NULL AND r.line > d.first_line""",
                {"reason": DUPLICATE_NUMBER})
        # the planner needs to know the lines' range to use the index: a sample of 3,000 rows tells it
        sql("SET LOCAL default_statistics_target = 10")
        sql(f"ANALYZE {table} (line)")
        return counts[0]

    def drop_tables(self, import_id: int) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {rows_table(import_id)}")

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

    def write_chunk(self, contact_import: ContactImport, limit: int) -> tuple[int, ChunkCounts] | None:
        """Write the rows on the next `limit` lines after the import's last line (or, when those have none, on
        the `limit` lines from the next row on): their contacts, participations and refusals, with set-based
        SQL straight from the import's table. The chunk's last line and its counts; None when no row is left."""
        import_id, account_id = model.stored(contact_import.id), contact_import.account_id
        options = contact_import.import_options()
        sql, rows = self.conn.exec_driver_sql, rows_table(import_id)
        after = contact_import.last_line
        last_line = after + limit  # lines, not rows: a row may span lines, blank lines are no rows
        read, refused = sql(f"SELECT count(*), count(problem) FROM {rows} WHERE line > %s AND line <= %s",
                            (after, last_line)).one()
        if not read:
            following = sql(f"SELECT min(line) FROM {rows} WHERE line > %s", (after,)).scalar()
            if following is None:
                return None
            last_line = following + limit - 1
            read, refused = sql(f"SELECT count(*), count(problem) FROM {rows} WHERE line > %s AND line <= %s",
                                (after, last_line)).one()
        counts = ChunkCounts(read=read, refused=refused)
        chunk = "c.line > %(after)s AND c.line <= %(last)s"
        span = {"after": after, "last": last_line, "account": account_id, "id": import_id}
        good = read - refused
        if good:
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
                    SELECT %(account)s, c.msisdn, c.metadata, now(), now() FROM {rows} c
                    WHERE {chunk} AND c.problem IS NULL
                    ON CONFLICT ON CONSTRAINT index_contacts_on_account_id_and_msisdn {conflict}
                    RETURNING (xmax = 0) AS created)
                SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM written""",
                span).one()
            if bounded and good - created - updated > 0:
                merged = merge.replace("contacts.", "k.").replace("EXCLUDED.", "c.")
                too_large = sql(
                    f"""UPDATE {rows} c SET problem = %(reason)s FROM contacts k
                        WHERE {chunk} AND c.problem IS NULL AND k.account_id = %(account)s AND k.msisdn = c.msisdn
                          AND octet_length(({merged})::text) > %(bound)s""",
                    {**span, "bound": MAX_DOCUMENT_BYTES, "reason": merged_too_large_reason()}).rowcount
                counts.refused += too_large
                good -= too_large
            if contact_import.callout_id is not None:
                sql(f"""INSERT INTO callout_participations
                        (account_id, callout_id, contact_id, msisdn, created_at, updated_at)
                    SELECT %(account)s, %(callout)s, k.id, k.msisdn, now(), now()
                    FROM {rows} c JOIN contacts k ON k.account_id = %(account)s AND k.msisdn = c.msisdn
                    WHERE {chunk} AND c.problem IS NULL ORDER BY k.id ON CONFLICT DO NOTHING""",
                    {**span, "callout": contact_import.callout_id})
            counts.created, counts.updated = created, updated
            counts.unchanged = good - created - updated
        if counts.refused:
            sql(f"""INSERT INTO contact_import_errors (contact_import_id, line, cells, reason)
                SELECT %(id)s, c.line, c.cells::jsonb, c.problem FROM {rows} c
                WHERE {chunk} AND c.problem IS NOT NULL""",
                span)
        return last_line, counts

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


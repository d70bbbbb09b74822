"""Exports: every row a list's filters match, read through a server-side cursor, and the metadata keys they
use, found by PostgreSQL first (one pass over the distinct key paths), so that the columns are known before
the first row and no worker holds more than a batch."""
from __future__ import annotations

from typing import Iterator

from sqlalchemy import func, select

STREAM_BATCH = 2000


class Exports:
    def __init__(self, conn):
        self.conn = conn

    def snapshot(self) -> None:
        """One snapshot for every statement that follows (a new transaction; the pool resets the level)."""
        self.conn.rollback()
        self.conn.execution_options(isolation_level="REPEATABLE READ")
        self.conn.begin()

    def metadata_paths(self, repo, conditions, extra) -> list[tuple[str, ...]]:
        """The paths (as tuples) of every metadata value that is not an object, in the matching rows."""
        matching = select(repo.table.c.metadata).where(repo.where(conditions, extra))
        compiled = matching.compile(dialect=self.conn.dialect)
        processors = compiled._bind_processors
        params = {key: processors[key](value) if key in processors else value
                  for key, value in compiled.construct_params().items()}
        statement = f"""WITH RECURSIVE paths(path, value) AS (
                SELECT ARRAY[e.key], e.value FROM ({compiled}) AS m, jsonb_each(m.metadata) AS e
                UNION ALL
                SELECT p.path || e.key, e.value FROM paths p,
                    jsonb_each(CASE WHEN jsonb_typeof(p.value) = 'object' THEN p.value ELSE '{{}}' END) AS e)
            SELECT DISTINCT path FROM paths WHERE jsonb_typeof(value) <> 'object'"""
        return [tuple(path) for path in self.conn.exec_driver_sql(statement, params).scalars()]

    def rows(self, repo, conditions, extra) -> Iterator[dict]:
        """The matching rows, by id, as mappings (base columns and the repository's joined ones)."""
        query = repo.base_select().where(repo.where(conditions, extra)).order_by(repo.table.c.id)
        result = self.conn.execute(query.execution_options(stream_results=True, yield_per=STREAM_BATCH))
        for row in result:
            yield dict(row._mapping)

    def count(self, repo, conditions, extra) -> int:
        return self.conn.execute(select(func.count()).select_from(repo.table).where(
            repo.where(conditions, extra))).scalar_one()


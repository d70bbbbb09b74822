"""Exports: every row a list's filters match, read through a server-side cursor, and the metadata keys they
use, found by PostgreSQL first (a pass over the matching rows per level of nesting), so that the columns are
known before the first row and no worker holds more than a batch."""
from __future__ import annotations

import json
from typing import Any, Iterator

from sqlalchemy import DateTime, func, literal_column, select

STREAM_BATCH = 2000
MAX_DEPTH = 64  # metadata nests at most 32 levels; a bound all the same
TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'  # as the API shows times


class Exports:
    def __init__(self, conn):
        self.conn = conn

    def snapshot(self) -> None:
        """One snapshot for every statement that follows (a new transaction; the pool resets the level)."""
        self.conn.rollback()
        self.conn.execution_options(isolation_level="REPEATABLE READ")
        self.conn.begin()

    def _matching(self, repo, conditions, within) -> tuple[str, dict]:
        """The matching rows' metadata as SQL text and its parameters."""
        compiled = select(repo.table.c.metadata).where(repo.where(conditions, within)).compile(dialect=self.conn.dialect)
        processors: Any = compiled._bind_processors
        params = {key: processors[key](value) if key in processors else value
                  for key, value in compiled.construct_params().items()}
        return str(compiled), params

    def metadata_paths(self, repo, conditions, within) -> list[tuple[str, ...]]:
        """The paths (as tuples) of every metadata value that is not an object, in the matching rows."""
        return self.paths_of(*self._matching(repo, conditions, within))

    def paths_of(self, matching: str, params: dict) -> list[tuple[str, ...]]:
        """The paths of every metadata value that is not an object, in the `metadata` column of the rows of
        `matching` (SQL text, with `params`): the keys of each level, grouped by PostgreSQL, then those of the
        objects among them, level by level."""
        params = dict(params)
        leaves: list[tuple[str, ...]] = []
        frontier: list[tuple[str, ...]] = [()]
        for depth in range(MAX_DEPTH):
            if not frontier:
                break
            if depth == 0:
                node, paths_sql = "m.metadata", "SELECT '[]'::text AS encoded"
            else:
                node = "m.metadata #> ARRAY(SELECT jsonb_array_elements_text(p.encoded::jsonb))"
                paths_sql = "SELECT unnest(%(scfm_frontier)s::text[]) AS encoded"
                params["scfm_frontier"] = [json.dumps(list(path)) for path in frontier]
            rows = self.conn.exec_driver_sql(
                f"""SELECT p.encoded, e.key, bool_or(jsonb_typeof(e.value) = 'object'),
                           bool_or(jsonb_typeof(e.value) <> 'object')
                    FROM ({matching}) AS m CROSS JOIN ({paths_sql}) AS p
                    CROSS JOIN LATERAL (SELECT {node} AS node) AS n
                    CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(n.node) = 'object' THEN n.node
                                                       ELSE '{{}}' END) AS e
                    GROUP BY p.encoded, e.key""", params).all()
            frontier = []
            for encoded, key, has_object, has_leaf in rows:
                path = (*json.loads(encoded), key)
                if has_leaf:
                    leaves.append(path)
                if has_object:
                    frontier.append(path)
        return leaves

    def rows(self, repo, conditions, within, columns: tuple[str, ...],
             shown: dict[str, tuple[str, str]] | None = None) -> Iterator[tuple]:
        """The matching rows, by id, as tuples of `columns` then metadata; times as text, as the API shows
        them; `shown`: a column whose value is its own, else another (an inherited call flow logic)."""
        matching = repo.base_select().where(repo.where(conditions, within)).subquery("matching")
        shown = shown or {}
        selected = []
        for name in columns:
            column = matching.c[name]
            if name in shown:
                column = func.coalesce(*(matching.c[source] for source in shown[name]))
            elif isinstance(column.type, DateTime):
                column = func.to_char(column.op("AT TIME ZONE")(literal_column("'UTC'")), TIME_FORMAT)
            selected.append(column)
        query = select(*selected, matching.c.metadata).order_by(matching.c.id)
        result = self.conn.execute(query.execution_options(stream_results=True, yield_per=STREAM_BATCH))
        yield from result

    def count(self, repo, conditions, within) -> int:
        return self.conn.execute(select(func.count()).select_from(repo.table).where(
            repo.where(conditions, within))).scalar_one()

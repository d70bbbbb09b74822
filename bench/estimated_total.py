"""The API with one candidate fix patched in, for `python -m bench lists` to serve under gunicorn
(`gunicorn 'bench.estimated_total:create_app()'`); src/ is not touched, and importing this module patches
nothing.

The fix: list endpoints count at most CAP + 1 matching rows; when there are more, Total is the planner's
estimate of the count (EXPLAIN of the same count(*)), so that a list never scans every match to count it.
"""
from __future__ import annotations

from sqlalchemy import func, literal, select

CAP = 10_000


def plan_rows(node: dict) -> int:
    """The planner's estimate of the rows that count(*) at the top of a plan would count."""
    if node.get("Node Type") == "Aggregate" and node.get("Plans"):
        return int(sum(plan_rows(child) for child in node["Plans"]))
    if node.get("Node Type") == "Gather" and node.get("Plans"):  # a partial count per worker, and the leader
        child = node["Plans"][0]
        if child.get("Node Type") == "Aggregate" and child.get("Plans"):
            child = child["Plans"][0]
        return int(child["Plan Rows"] * (node.get("Workers Planned", 0) + 1))
    return int(node["Plan Rows"])


def estimated_count(conn, statement) -> int:
    compiled = statement.compile(dialect=conn.dialect)
    processors = compiled._bind_processors
    params = {key: processors[key](value) if key in processors else value
              for key, value in compiled.construct_params().items()}
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), params).scalar()
    return plan_rows(plan[0]["Plan"])


def list_(self, conditions=(), extra=(), page: int = 1, per_page: int = 25):
    where = self.where(conditions, extra)
    capped = select(literal(1)).select_from(self.table).where(where).limit(CAP + 1).subquery()
    total = self.conn.execute(select(func.count()).select_from(capped)).scalar_one()
    if total > CAP:
        total = max(CAP + 1, estimated_count(self.conn, select(func.count()).select_from(self.table).where(where)))
    query = self.base_select().where(where).order_by(self.table.c.id).limit(per_page).offset((page - 1) * per_page)
    return [self.to_entity(row) for row in self.conn.execute(query)], total


def create_app():
    """The app of scfm.entrypoints.wsgi, with Repository.list patched (in this process only)."""
    from scfm.adapters.postgres import repositories
    from scfm.entrypoints.app import create_app as create

    repositories.Repository.list = list_
    return create()

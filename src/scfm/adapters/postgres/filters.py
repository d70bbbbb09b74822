"""Compiles parsed filter conditions (scfm.domain.filters) to SQL."""
from __future__ import annotations

import json
import math

from sqlalchemy import and_, literal, or_, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import ColumnElement

from scfm.domain.filters import Custom, Eq, JsonEq, TimeCmp

_OPS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


def _nest(path: tuple, value) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def json_equals(column, path: tuple, value: str) -> ColumnElement:
    """Text equality on a JSON path, written as containment so a GIN index can serve it.

    `20` must match both the string "20" and the number 20, so each JSON reading of the text is tried.
    """
    candidates = [value]
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, (dict, list, str)) and not (isinstance(parsed, float) and not math.isfinite(parsed)):
            candidates.append(parsed)
    except ValueError:
        pass
    contains = [column.op("@>")(type_coerce(_nest(path, c), JSONB)) for c in candidates]
    return or_(*contains) if len(contains) > 1 else contains[0]


def compile_conditions(table, conditions, custom_compilers: dict | None = None,
                       eq_compilers: dict | None = None) -> list[ColumnElement]:
    """`eq_compilers`: column -> (values -> clause), for a column whose shown value is not its own."""
    clauses = []
    for condition in conditions:
        if isinstance(condition, Eq) and eq_compilers and condition.column in eq_compilers:
            clauses.append(eq_compilers[condition.column](condition.values))
        elif isinstance(condition, Eq):
            column = table.c[condition.column]
            values = condition.values
            clauses.append(column == values[0] if len(values) == 1 else column.in_(values))
        elif isinstance(condition, JsonEq):
            clauses.append(json_equals(table.c[condition.column], condition.path, condition.value))
        elif isinstance(condition, TimeCmp):
            clauses.append(getattr(table.c[condition.column], _OPS[condition.op])(condition.value))
        elif isinstance(condition, Custom):
            clauses.append((custom_compilers or {})[condition.name](condition.value))
        else:  # pragma: no cover - the parser makes only the kinds above
            raise TypeError(condition)
    return clauses


def all_of(clauses) -> ColumnElement:
    clauses = list(clauses)
    return and_(*clauses) if clauses else literal(True)


__all__ = ["compile_conditions", "json_equals", "all_of", "text"]

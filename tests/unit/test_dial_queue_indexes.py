"""The partial indexes of the migrations cover exactly the status sets of the state machines that the dial
queue's statements use: a status added to a set, and not to its index, would make a query slow or (for the
unique index) let a second call in flight. The dialer's two indexes have, besides, exactly the other
conditions of the dial queue's filters (a claim walking entries its filter skips is slow)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql

from scfm.adapters.postgres import dial_queue
from scfm.domain import state_machines as sm

VERSIONS = Path(__file__).parents[2] / "src/scfm/adapters/postgres/migrations/versions"
EXPECTED = {
    "index_phone_calls_one_in_flight_per_participation": sm.IN_FLIGHT_PHONE_CALL_STATUSES,
    "index_phone_calls_due_for_dialing": sm.DIALABLE_PHONE_CALL_STATUSES,
    "index_phone_calls_open_claims": sm.DIALABLE_PHONE_CALL_STATUSES,
    "index_phone_calls_awaiting_news": sm.AT_PROVIDER_PHONE_CALL_STATUSES,
}


def _index_predicates() -> dict[str, str]:
    """Every partial index on phone_calls the migrations' upgrades create, by name: its latest WHERE clause."""
    predicates = {}
    for path in sorted(VERSIONS.glob("*.py")):
        source = re.sub(r'"\s*\n\s*"', "", path.read_text())  # join "..." "..." written over lines
        source = source.split("\ndef downgrade(")[0]  # what a downgrade puts back is not the head's
        for name, where in re.findall(r"CREATE (?:UNIQUE )?INDEX (\w+)\s+ON phone_calls [^;\"]*?WHERE ([^;\"]+)",
                                      source):
            predicates[name] = " ".join(where.split())
    return predicates


def _statuses(predicate: str) -> set[str]:
    match = re.search(r"status IN \(([^)]*)\)|status = ('\w+')", predicate)
    assert match, predicate
    return set(re.findall(r"'(\w+)'", match.group(0)))


def test_every_partial_index_on_phone_calls_is_checked():
    assert set(_index_predicates()) >= set(EXPECTED)
    assert all("status" not in where for name, where in _index_predicates().items() if name not in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_index_predicate_has_the_state_machines_statuses(name):
    assert _statuses(_index_predicates()[name]) == set(sm.status_values(EXPECTED[name]))


# the dial queue's filters an index serves: (the filter's conditions, those the index leaves to the query)
FILTERS = {
    "index_phone_calls_due_for_dialing": (dial_queue._unclaimed_due(datetime(2026, 1, 1, tzinfo=timezone.utc)),
                                          {"next_attempt_at"}),
    "index_phone_calls_open_claims": (dial_queue._open_claim(), set()),
}


def _sql(condition) -> str:
    compiled = condition.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).replace("phone_calls.", "").split())


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_index_predicate_is_the_dial_queues_filter(name):
    conditions, left_to_the_query = FILTERS[name]
    kept = [c for c in conditions if _sql(c).split(" ")[0] not in left_to_the_query]  # "<column> <op> ..."
    predicate = _index_predicates()[name]
    parts = [part.strip() for part in re.split(r"\bAND\b", predicate)]
    assert len(parts) == len(kept), (predicate, [_sql(c) for c in kept])
    for condition in kept:
        sql = _sql(condition)
        if sql.startswith("status "):  # IN (...) or = '...': the same statuses
            assert any(part.startswith("status ") and _statuses(part) == _statuses(sql) for part in parts), sql
        else:
            assert sql in parts, (sql, parts)


def test_in_flight_is_dialable_or_at_the_provider_and_never_terminal():
    assert sm.IN_FLIGHT_PHONE_CALL_STATUSES == sm.DIALABLE_PHONE_CALL_STATUSES | sm.AT_PROVIDER_PHONE_CALL_STATUSES
    assert not sm.IN_FLIGHT_PHONE_CALL_STATUSES & sm.TERMINAL_PHONE_CALL_STATUSES
    assert sm.PHONE_CALL_TRANSITIONS["queue"][1] in sm.DIALABLE_PHONE_CALL_STATUSES

"""The partial indexes of the migrations cover exactly the status sets of the state machines that the dial
queue's statements use: a status added to a set, and not to its index, would make a query slow or (for the
unique index) let a second call in flight."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from scfm.domain import state_machines as sm

VERSIONS = Path(__file__).parents[2] / "src/scfm/adapters/postgres/migrations/versions"
EXPECTED = {
    "index_phone_calls_one_in_flight_per_participation": sm.IN_FLIGHT_PHONE_CALL_STATUSES,
    "index_phone_calls_due_for_dialing": sm.DIALABLE_PHONE_CALL_STATUSES,
    "index_phone_calls_open_claims": sm.DIALABLE_PHONE_CALL_STATUSES,
    "index_phone_calls_awaiting_news": sm.AT_PROVIDER_PHONE_CALL_STATUSES,
}


def _index_predicates() -> dict[str, str]:
    """Every partial index on phone_calls the migrations create, by name: its WHERE clause."""
    predicates = {}
    for path in sorted(VERSIONS.glob("*.py")):
        source = re.sub(r'"\s*\n\s*"', "", path.read_text())  # join "..." "..." written over lines
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


def test_in_flight_is_dialable_or_at_the_provider_and_never_terminal():
    assert sm.IN_FLIGHT_PHONE_CALL_STATUSES == sm.DIALABLE_PHONE_CALL_STATUSES | sm.AT_PROVIDER_PHONE_CALL_STATUSES
    assert not sm.IN_FLIGHT_PHONE_CALL_STATUSES & sm.TERMINAL_PHONE_CALL_STATUSES
    assert sm.PHONE_CALL_TRANSITIONS["queue"][1] in sm.DIALABLE_PHONE_CALL_STATUSES

"""Use cases of exports: every contact, participation or phone call a list's filters match, as CSV rows.

Filters are checked (422) and parents found (404) before the first row; the rows are then read in one
REPEATABLE READ transaction, so the metadata columns found first are those of the rows that follow.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from scfm.domain.contact_import import export_row, metadata_column_names
from scfm.domain.filters import (CALLOUT_PARTICIPATION_FILTERS, CONTACT_FILTERS, PHONE_CALL_FILTERS, FilterSpec,
                                 parse_filters)
from scfm.domain.ports import Repository, UnitOfWork, UnitsOfWork, Within

# kind -> (the uow's repository, its filters, its columns before the metadata ones)
EXPORTS: dict[str, tuple[str, FilterSpec, tuple[str, ...]]] = {
    "contacts": ("contacts", CONTACT_FILTERS, ("id", "msisdn", "created_at", "updated_at")),
    "callout_participations": ("callout_participations", CALLOUT_PARTICIPATION_FILTERS, (
        "id", "callout_id", "contact_id", "msisdn", "call_flow_logic", "callout_population_id", "created_at",
        "updated_at")),
    "phone_calls": ("phone_calls", PHONE_CALL_FILTERS, (
        "id", "callout_participation_id", "contact_id", "msisdn", "status", "call_flow_logic", "remote_call_id",
        "remote_status", "remote_direction", "remote_error_message", "duration", "remotely_queued_at",
        "created_at", "updated_at")),
}


# The values the API shows: a participation's or call's call flow logic is its own, else the one it inherits.
SHOWN: dict[str, dict[str, tuple[str, str]]] = {
    "callout_participations": {"call_flow_logic": ("call_flow_logic", "callout_call_flow_logic")},
    "phone_calls": {"call_flow_logic": ("call_flow_logic", "inherited_call_flow_logic")},
}


def _within(uow: UnitOfWork, callout_id: Any) -> list[Within]:
    """The callout whose records are exported (404 for one the account does not have), or none."""
    if callout_id is None:
        return []
    return [Within.of(uow.callouts.get(callout_id))]


def export(uow_for: UnitsOfWork, account_id: int, kind: str, q: Any, callout_id: Any = None,
           on_count: Callable[[int], None] | None = None) -> Iterator[list[str]]:
    """Rows of cells, the header first. `on_count` (if given) learns how many rows will follow."""
    repo_name, spec, columns = EXPORTS[kind]
    conditions = parse_filters(spec, q)
    with uow_for(account_id) as uow:
        _within(uow, callout_id)  # 404 now, not in the middle of a download

    def rows() -> Iterator[list[str]]:
        with uow_for(account_id) as uow:
            uow.exports.snapshot()
            repo: Repository[Any] = getattr(uow, repo_name)
            within = _within(uow, callout_id)
            names = metadata_column_names(uow.exports.metadata_paths(repo, conditions, within))
            if on_count is not None:
                on_count(uow.exports.count(repo, conditions, within))
            yield [*columns, *(f"metadata.{name}" for name in names)]
            for *values, metadata in uow.exports.rows(repo, conditions, within, columns, SHOWN.get(kind)):
                yield export_row(values, metadata, names)

    return rows()

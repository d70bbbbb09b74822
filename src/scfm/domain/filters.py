"""The `q[...]` filter language: raw nested parameters checked against a resource's filters.

Parsing is pure; the Postgres adapter compiles the resulting conditions to SQL. Unknown keys and
values that do not parse are errors, never ignored: a typo in a population filter must not call
everyone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable

from scfm.domain.errors import ValidationFailed
from scfm.domain.values import normalize_msisdn

TIME_SUFFIXES = {"_or_before": "<=", "_or_after": ">=", "_before": "<", "_after": ">"}


@dataclass(frozen=True)
class Eq:
    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class JsonEq:
    column: str
    path: tuple[Any, ...]
    value: str


@dataclass(frozen=True)
class TimeCmp:
    column: str
    op: str  # one of < <= > >=, applied as `column op value`
    value: datetime


@dataclass(frozen=True)
class Custom:
    name: str
    value: Any


Condition = Eq | JsonEq | TimeCmp | Custom


@dataclass(frozen=True)
class FilterSpec:
    columns: frozenset[str] = frozenset()
    text_columns: frozenset[str] = frozenset()  # free text: a comma is part of the value, not a list
    int_columns: frozenset[str] = frozenset()
    msisdn_columns: frozenset[str] = frozenset()
    enum_columns: dict[str, Any] = field(default_factory=dict)  # column -> allowed values
    json_columns: frozenset[str] = frozenset({"metadata"})
    time_columns: frozenset[str] = frozenset({"created_at", "updated_at"})
    custom: dict[str, Any] = field(default_factory=dict)  # name -> parser(raw) -> value

    def keys(self) -> list[str]:
        names = set(self.columns) | set(self.text_columns) | set(self.int_columns) | set(self.msisdn_columns) | set(self.enum_columns)
        names |= set(self.json_columns) | set(self.custom)
        for column in self.time_columns:
            names |= {column + suffix for suffix in TIME_SUFFIXES}
        return sorted(names)


def _split(raw: Any) -> list[Any]:
    if isinstance(raw, (list, tuple)):
        items = []
        for item in raw:
            items.extend(_split(item))
        return items
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return [raw]


def _is_blank(raw: Any) -> bool:
    return raw is None or raw == "" or raw == [] or raw == {}


def parse_timestamp(raw: Any, op: str) -> datetime:
    """A bound for `column op bound`. A date-only value compares whole days."""
    if not isinstance(raw, str):
        raise ValueError(raw)
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=timezone.utc)
            next_day = start + timedelta(days=1)
            # before D: < D; or_before D: < D+1; after D: >= D+1; or_after D: >= D
            return {"<": start, "<=": next_day, ">": next_day, ">=": start}[op]
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(raw) from None


def _date_op(op: str, raw: Any) -> str:
    """Date-only bounds are half-open: `or_before D` means `< D+1`, `after D` means `>= D+1`."""
    if isinstance(raw, str) and len(raw.strip()) == 10:
        return {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[op]
    return op


def _json_leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        leaves = []
        for key, inner in value.items():
            leaves.extend(_json_leaves(inner, path + (str(key),)))
        return leaves
    return [(path, value)]


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_bool(raw: Any) -> bool:
    text = str(raw).strip().lower()
    if text in {"true", "1", "t", "yes"}:
        return True
    if text in {"false", "0", "f", "no"}:
        return False
    raise ValueError(raw)


def enum_list(allowed: set[str]) -> Callable[[Any], tuple[Any, ...]]:
    def parse(raw: Any) -> tuple[Any, ...]:
        values = tuple(str(v) for v in _split(raw))
        if not values or any(v not in allowed for v in values):
            raise ValueError(raw)
        return values

    return parse


def parse_filters(spec: FilterSpec, raw: Any, prefix: str = "q") -> list[Any]:
    """Conditions for `raw` (a nested dict), or ValidationFailed naming every bad key."""
    if _is_blank(raw):
        return []
    if not isinstance(raw, dict):
        raise ValidationFailed.on(prefix, "is invalid")
    conditions: list[Any] = []
    errors: dict[str, list[str]] = {}
    for key, value in raw.items():
        name = f"{prefix}[{key}]"
        try:
            conditions.extend(_parse_one(spec, key, value))
        except _UnknownKey:
            errors[name] = ["is not a valid filter"]
        except (ValueError, TypeError, ValidationFailed):
            errors[name] = ["is invalid"]
    if errors:
        raise ValidationFailed(errors)
    return conditions


class _UnknownKey(Exception):
    pass


def _parse_one(spec: FilterSpec, key: str, value: Any) -> list[Any]:
    if key in spec.json_columns:
        if _is_blank(value):
            return []
        if not isinstance(value, dict):
            raise ValueError(value)
        leaves = _json_leaves(value)
        if any(isinstance(leaf, (list, dict)) for _, leaf in leaves):
            raise ValueError(value)
        return [JsonEq(key, path, _json_text(leaf)) for path, leaf in leaves if path]
    if isinstance(value, dict):
        if key in spec.keys():
            raise ValueError(value)
        raise _UnknownKey(key)
    if key in spec.custom:
        return [] if _is_blank(value) else [Custom(key, spec.custom[key](value))]
    for suffix, op in TIME_SUFFIXES.items():
        if key.endswith(suffix) and key[: -len(suffix)] in spec.time_columns:
            if _is_blank(value):
                return []
            return [TimeCmp(key[: -len(suffix)], _date_op(op, value), parse_timestamp(value, op))]
    if _is_blank(value) and key in spec.keys():
        return []
    if key in spec.text_columns:
        return [Eq(key, (str(value),))]
    values = _split(value)
    if key in spec.msisdn_columns:
        return [Eq(key, tuple(normalize_msisdn(v) for v in values))]
    if key in spec.int_columns:
        return [Eq(key, tuple(int(str(v)) for v in values))]
    if key in spec.enum_columns:
        return [Eq(key, enum_list(spec.enum_columns[key])(values))]
    if key in spec.columns:
        return [Eq(key, tuple(str(v) for v in values))]
    raise _UnknownKey(key)


# The filters each resource accepts.
PHONE_CALL_STATUSES = {
    "created", "queued", "remotely_queued", "remote_fetch_queued", "in_progress", "errored", "failed",
    "busy", "not_answered", "canceled", "completed",
}

ACCOUNT_FILTERS = FilterSpec(
    columns=frozenset({"twilio_account_sid", "somleng_account_sid", "platform_provider_name"}),
    json_columns=frozenset({"metadata", "settings"}),
)
ACCESS_TOKEN_FILTERS = FilterSpec()
CONTACT_FILTERS = FilterSpec(msisdn_columns=frozenset({"msisdn"}))
CALLOUT_FILTERS = FilterSpec(
    columns=frozenset({"call_flow_logic"}),
    enum_columns={"status": {"initialized", "running", "paused", "stopped"}},
)
CALLOUT_PARTICIPATION_FILTERS = FilterSpec(
    columns=frozenset({"call_flow_logic"}),
    int_columns=frozenset({"callout_id", "contact_id", "callout_population_id"}),
    msisdn_columns=frozenset({"msisdn"}),
    custom={
        "has_phone_calls": parse_bool,
        "last_phone_call_attempt": enum_list(PHONE_CALL_STATUSES),
        "no_phone_calls_or_last_attempt": enum_list(PHONE_CALL_STATUSES),
    },
)
PHONE_CALL_FILTERS = FilterSpec(
    columns=frozenset({"call_flow_logic", "remote_call_id", "remote_status", "remote_direction"}),
    text_columns=frozenset({"remote_error_message"}),
    int_columns=frozenset({"callout_participation_id", "contact_id"}),
    msisdn_columns=frozenset({"msisdn"}),
    enum_columns={"status": PHONE_CALL_STATUSES},
    json_columns=frozenset({"metadata", "remote_response", "remote_queue_response", "remote_request_params"}),
    time_columns=frozenset({"created_at", "updated_at", "remotely_queued_at"}),
)
REMOTE_PHONE_CALL_EVENT_FILTERS = FilterSpec(
    columns=frozenset({"call_flow_logic", "remote_call_id", "remote_direction"}),
    int_columns=frozenset({"phone_call_id"}),
    json_columns=frozenset({"metadata", "details"}),
)
BATCH_OPERATION_TYPES = {
    "BatchOperation::CalloutPopulation", "BatchOperation::PhoneCallCreate",
    "BatchOperation::PhoneCallQueue", "BatchOperation::PhoneCallQueueRemoteFetch",
}
BATCH_OPERATION_FILTERS = FilterSpec(
    int_columns=frozenset({"callout_id"}),
    enum_columns={"status": {"preview", "queued", "running", "finished"}, "type": BATCH_OPERATION_TYPES},
    json_columns=frozenset({"metadata", "parameters"}),
)

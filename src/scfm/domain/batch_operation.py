"""Batch operations: their types, and the parameters each type takes, checked before anything runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scfm.domain import filters as f
from scfm.domain.errors import ValidationFailed
from scfm.domain.provider import validate_remote_request_params
from scfm.domain.values import MAX_DOCUMENT_BYTES, document_size

CALLOUT_POPULATION = "BatchOperation::CalloutPopulation"
PHONE_CALL_CREATE = "BatchOperation::PhoneCallCreate"
PHONE_CALL_QUEUE = "BatchOperation::PhoneCallQueue"
PHONE_CALL_QUEUE_REMOTE_FETCH = "BatchOperation::PhoneCallQueueRemoteFetch"
TYPES = (CALLOUT_POPULATION, PHONE_CALL_CREATE, PHONE_CALL_QUEUE, PHONE_CALL_QUEUE_REMOTE_FETCH)
PHONE_CALL_TYPES = (PHONE_CALL_CREATE, PHONE_CALL_QUEUE, PHONE_CALL_QUEUE_REMOTE_FETCH)

_LIMITS = {"limit", "max", "max_per_period", "max_per_period_hours", "max_per_period_timestamp_attribute",
           "max_per_period_statuses", "skip_validate_preview_presence"}
ALLOWED_PARAMETERS = {
    CALLOUT_POPULATION: {"contact_filter_params"},
    PHONE_CALL_CREATE: {"remote_request_params", "callout_filter_params", "callout_participation_filter_params"}
    | _LIMITS,
    PHONE_CALL_QUEUE: {"phone_call_filter_params", "callout_filter_params", "callout_participation_filter_params"}
    | _LIMITS,
    PHONE_CALL_QUEUE_REMOTE_FETCH: {"phone_call_filter_params", "callout_filter_params",
                                    "callout_participation_filter_params", "limit",
                                    "skip_validate_preview_presence"},
}
FILTER_SPECS = {
    "contact_filter_params": f.CONTACT_FILTERS,
    "callout_filter_params": f.CALLOUT_FILTERS,
    "callout_participation_filter_params": f.CALLOUT_PARTICIPATION_FILTERS,
    "phone_call_filter_params": f.PHONE_CALL_FILTERS,
}
TIMESTAMP_ATTRIBUTES = {"remotely_queued_at", "created_at", "updated_at", "queued_at"}

# Which previews and results a type has (anything else is 404).
PREVIEWS = {
    CALLOUT_POPULATION: {"contacts"},
    PHONE_CALL_CREATE: {"callout_participations", "contacts"},
    PHONE_CALL_QUEUE: {"phone_calls"},
    PHONE_CALL_QUEUE_REMOTE_FETCH: {"phone_calls"},
}
RESULTS = {
    CALLOUT_POPULATION: {"callout_participations", "contacts"},
    PHONE_CALL_CREATE: {"phone_calls"},
    PHONE_CALL_QUEUE: {"phone_calls"},
    PHONE_CALL_QUEUE_REMOTE_FETCH: {"phone_calls"},
}


@dataclass(frozen=True)
class PeriodCap:
    max: int
    hours: float
    timestamp_attribute: str
    statuses: tuple[Any, ...] | None


@dataclass(frozen=True)
class Plan:
    """The parsed parameters of an operation: the filters per resource, and how many rows at most."""

    type: str
    filters: dict[str, Any] = field(default_factory=dict)  # contact/callout/callout_participation/phone_call -> conditions
    limit: int | None = None
    period_cap: PeriodCap | None = None
    remote_request_params: dict[str, Any] | None = None
    skip_validate_preview_presence: bool = False


MAXIMUM = 2**31 - 1  # more rows than any operation acts on, and within the database's integers


def _int(parameters: dict[str, Any], name: str, errors: dict[str, Any], minimum: int = 0) -> int | None:
    raw = parameters.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        errors[name] = ["is not a number"]
        return None
    if value < minimum:
        errors[name] = [f"must be greater than or equal to {minimum}"]
        return None
    if value > MAXIMUM:
        errors[name] = [f"must be less than or equal to {MAXIMUM}"]
        return None
    return value


def validate_type(type_: Any) -> str:
    if type_ in (None, ""):
        raise ValidationFailed.on("type", "can't be blank")
    if type_ not in TYPES:
        raise ValidationFailed.on("type", "is not included in the list")
    return str(type_)


def plan(type_: str, parameters: Any) -> Plan:
    """Check `parameters` for `type_`; every problem is a 422 naming the parameter."""
    if parameters in (None, ""):
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValidationFailed.on("parameters", "is invalid")
    if document_size(parameters) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed.on("parameters", f"is too large (maximum is {MAX_DOCUMENT_BYTES} bytes)")
    errors: dict[str, list[str]] = {}
    for name in sorted(set(parameters) - ALLOWED_PARAMETERS[type_]):
        errors[name] = ["is not a known parameter"]
    conditions = {}
    for name, spec in FILTER_SPECS.items():
        if name in parameters and name in ALLOWED_PARAMETERS[type_]:
            try:
                conditions[name.removesuffix("_filter_params")] = f.parse_filters(spec, parameters[name], prefix=name)
            except ValidationFailed as error:
                errors.update(error.errors)
    remote_request_params = None
    if type_ == PHONE_CALL_CREATE:
        try:
            remote_request_params = validate_remote_request_params(parameters.get("remote_request_params"))
        except ValidationFailed as error:
            errors.update(error.errors)
    limit = _int(parameters, "limit", errors)
    cap = _period_cap(parameters, errors)
    skip = False
    if parameters.get("skip_validate_preview_presence") not in (None, ""):
        try:
            skip = f.parse_bool(parameters["skip_validate_preview_presence"])
        except ValueError:
            errors["skip_validate_preview_presence"] = ["is invalid"]
    if errors:
        raise ValidationFailed(errors)
    return Plan(type_, conditions, limit, cap, remote_request_params, skip)


def _period_cap(parameters: dict[str, Any], errors: dict[str, Any]) -> PeriodCap | None:
    maxima = [v for v in (_int(parameters, "max", errors), _int(parameters, "max_per_period", errors)) if v is not None]
    given = parameters.get("max_per_period_hours")
    hours = 24.0
    try:
        hours = 24.0 if given is None or given == "" else float(given)
        if not 0 < hours <= 24 * 366 * 10:
            raise ValueError(hours)
    except (TypeError, ValueError):
        errors["max_per_period_hours"] = ["must be greater than 0 and at most ten years"]
    attribute = parameters.get("max_per_period_timestamp_attribute") or "remotely_queued_at"
    if not isinstance(attribute, str) or attribute not in TIMESTAMP_ATTRIBUTES:
        errors["max_per_period_timestamp_attribute"] = ["is not included in the list"]
    statuses = parameters.get("max_per_period_statuses")
    if statuses not in (None, "", []):
        try:
            statuses = f.enum_list(f.PHONE_CALL_STATUSES)(statuses)
        except ValueError:
            errors["max_per_period_statuses"] = ["is not included in the list"]
    else:
        statuses = None
    if not maxima or errors:
        return None
    return PeriodCap(min(maxima), hours, attribute, statuses)


def acted_on_limit(plan_: Plan, calls_in_period: int | None) -> int | None:
    """How many rows a run may act on: `limit`, capped by what the period still allows."""
    limits = [plan_.limit] if plan_.limit is not None else []
    if plan_.period_cap is not None and calls_in_period is not None:
        limits.append(max(0, plan_.period_cap.max - calls_in_period))
    return min(limits) if limits else None

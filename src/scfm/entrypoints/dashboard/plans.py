"""The call plan form: a callout's `call_plan` as the values of the form's fields, and the fields back as the
document the API takes (validated by the call plan's own rules, whose errors name the field)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scfm.domain.call_plan import DAYS, RETRYABLE_OUTCOMES
from scfm.domain.errors import ValidationFailed

MESSAGE_FIELDS = ("url", "method", "from")  # of remote_request_params
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"  # an <input type="datetime-local">'s value


def _zone(name: str | None):
    """The window's zone, in which the form's not_after is written; UTC without a window (or a bad zone, which
    the plan's validation names)."""
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def from_form(form) -> dict[str, Any] | None:
    """The plan the form describes; None for an empty form (no plan)."""
    plan: dict[str, Any] = {}
    message = {key: form.get(f"plan_{key}", "").strip() for key in MESSAGE_FIELDS}
    if message["url"] or message["from"]:
        plan["remote_request_params"] = {key: value for key, value in message.items() if value}
    if form.get("max_attempts", "").strip():
        plan["max_attempts"] = form["max_attempts"].strip()
    retries = {}
    for outcome in RETRYABLE_OUTCOMES:
        steps = [step.strip() for step in form.get(f"retry_{outcome}", "").split(",") if step.strip()]
        if steps:
            retries[outcome] = steps
    if retries:
        plan["retries"] = retries
    zone = form.get("time_zone", "").strip()
    opens, closes = form.get("window_from", "").strip(), form.get("window_to", "").strip()
    days = [day for day in form.getlist("days") if day in DAYS]
    if zone or opens or closes or days:
        plan["window"] = {"time_zone": zone, "from": opens, "to": closes, **({"days": days} if days else {})}
    until = form.get("not_after", "").strip()
    if until:
        try:
            instant = datetime.fromisoformat(until)
        except ValueError:
            raise ValidationFailed.on("call_plan[not_after]", "is invalid") from None
        plan["not_after"] = (instant if instant.tzinfo else instant.replace(tzinfo=_zone(zone))).isoformat()
    return plan or None


def form_values(plan: dict[str, Any] | None) -> dict[str, Any]:
    """The form's fields for a stored plan (blank for what it does not say)."""
    plan = plan or {}
    message = plan.get("remote_request_params") or {}
    window = plan.get("window") or {}
    retries = plan.get("retries") or {}
    until = ""
    if plan.get("not_after"):
        until = datetime.fromisoformat(plan["not_after"]).astimezone(_zone(window.get("time_zone"))).strftime(
            LOCAL_MINUTE)
    return {
        **{key: message.get(key, "") for key in MESSAGE_FIELDS},
        "max_attempts": plan.get("max_attempts") or "",
        "retries": {outcome: ", ".join(str(step) for step in retries.get(outcome, []))
                    for outcome in RETRYABLE_OUTCOMES},
        "time_zone": window.get("time_zone", ""), "days": window.get("days", []),
        "window_from": window.get("from", ""), "window_to": window.get("to", ""), "not_after": until,
    }

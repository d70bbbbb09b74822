"""The state machines of callouts, batch operations and phone calls, as tables."""
from __future__ import annotations

from enum import Enum
from typing import TypeVar

from scfm.domain.errors import EventNotAllowed


class CalloutStatus(str, Enum):
    INITIALIZED = "initialized"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


CALLOUT_TRANSITIONS: dict[str, tuple[frozenset[CalloutStatus], CalloutStatus]] = {
    "start": (frozenset({CalloutStatus.INITIALIZED}), CalloutStatus.RUNNING),
    "pause": (frozenset({CalloutStatus.RUNNING}), CalloutStatus.PAUSED),
    "resume": (frozenset({CalloutStatus.PAUSED, CalloutStatus.STOPPED}), CalloutStatus.RUNNING),
    "stop": (frozenset({CalloutStatus.RUNNING, CalloutStatus.PAUSED}), CalloutStatus.STOPPED),
}


class BatchOperationStatus(str, Enum):
    PREVIEW = "preview"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"


BATCH_OPERATION_TRANSITIONS: dict[str, tuple[frozenset[BatchOperationStatus], BatchOperationStatus]] = {
    "queue": (frozenset({BatchOperationStatus.PREVIEW}), BatchOperationStatus.QUEUED),
    "start": (frozenset({BatchOperationStatus.QUEUED}), BatchOperationStatus.RUNNING),
    "finish": (frozenset({BatchOperationStatus.RUNNING}), BatchOperationStatus.FINISHED),
    "requeue": (frozenset({BatchOperationStatus.FINISHED}), BatchOperationStatus.QUEUED),
}
# Events a user may fire through the API; start and finish belong to the worker.
BATCH_OPERATION_USER_EVENTS = frozenset({"queue", "requeue"})


class PhoneCallStatus(str, Enum):
    CREATED = "created"
    QUEUED = "queued"
    REMOTELY_QUEUED = "remotely_queued"
    REMOTE_FETCH_QUEUED = "remote_fetch_queued"
    IN_PROGRESS = "in_progress"
    ERRORED = "errored"
    FAILED = "failed"
    BUSY = "busy"
    NOT_ANSWERED = "not_answered"
    CANCELED = "canceled"
    COMPLETED = "completed"
    EXPIRED = "expired"  # not dialed by its call plan's not_after (remote_error_message says so)


TERMINAL_PHONE_CALL_STATUSES = frozenset({
    PhoneCallStatus.COMPLETED, PhoneCallStatus.BUSY, PhoneCallStatus.FAILED,
    PhoneCallStatus.NOT_ANSWERED, PhoneCallStatus.CANCELED, PhoneCallStatus.ERRORED, PhoneCallStatus.EXPIRED,
})

# Waiting in our dial queue for a dialer: QUEUED (a claimed one, with dial_claimed_at, is being dialed).
DIALABLE_PHONE_CALL_STATUSES = frozenset({PhoneCallStatus.QUEUED})
# The provider has the call and we wait to hear about it (a silent one is fetched).
AWAITING_NEWS_PHONE_CALL_STATUSES = frozenset({PhoneCallStatus.REMOTELY_QUEUED, PhoneCallStatus.IN_PROGRESS})
# At the provider: awaiting news, or being fetched from it.
AT_PROVIDER_PHONE_CALL_STATUSES = AWAITING_NEWS_PHONE_CALL_STATUSES | {PhoneCallStatus.REMOTE_FETCH_QUEUED}
# In flight: a call in one of these holds its participation, at most one per participation (a unique index),
# and counts towards the account's max_calls_in_flight (a dialable one only once claimed).
IN_FLIGHT_PHONE_CALL_STATUSES = DIALABLE_PHONE_CALL_STATUSES | AT_PROVIDER_PHONE_CALL_STATUSES
# Callouts whose queued calls are held back from the dialer.
HELD_CALLOUT_STATUSES = frozenset({CalloutStatus.PAUSED, CalloutStatus.STOPPED})


def status_values(statuses: frozenset[PhoneCallStatus] | frozenset[CalloutStatus]) -> list[str]:
    """The status strings of a set, sorted, for storage queries."""
    return sorted(status.value for status in statuses)


PHONE_CALL_TRANSITIONS: dict[str, tuple[frozenset[PhoneCallStatus], PhoneCallStatus]] = {
    "queue": (frozenset({PhoneCallStatus.CREATED}), PhoneCallStatus.QUEUED),
    "queue_remote_fetch": (
        frozenset({PhoneCallStatus.REMOTELY_QUEUED, PhoneCallStatus.IN_PROGRESS}),
        PhoneCallStatus.REMOTE_FETCH_QUEUED,
    ),
    "remotely_queue": (frozenset({PhoneCallStatus.QUEUED}), PhoneCallStatus.REMOTELY_QUEUED),
    "error": (frozenset({PhoneCallStatus.QUEUED}), PhoneCallStatus.ERRORED),
}
# Events a user may fire through the API; the rest belong to the worker and the webhook.
PHONE_CALL_USER_EVENTS = frozenset({"queue", "queue_remote_fetch"})

# Provider CallStatus -> local status; None means "no change" (queued at the provider).
REMOTE_STATUS_MAP: dict[str, PhoneCallStatus | None] = {
    "queued": None,
    "ringing": PhoneCallStatus.IN_PROGRESS,
    "in-progress": PhoneCallStatus.IN_PROGRESS,
    "completed": PhoneCallStatus.COMPLETED,
    "busy": PhoneCallStatus.BUSY,
    "failed": PhoneCallStatus.FAILED,
    "no-answer": PhoneCallStatus.NOT_ANSWERED,
    "canceled": PhoneCallStatus.CANCELED,
}

# The provider's last word on a call: once reported, its remote_status keeps it (a late or replayed report
# of an earlier status is recorded as an event, but changes nothing).
FINAL_REMOTE_STATUSES = frozenset(key for key, status in REMOTE_STATUS_MAP.items()
                                  if status in TERMINAL_PHONE_CALL_STATUSES)


def is_final_remote_status(remote_status: str | None) -> bool:
    return (remote_status or "").strip().lower() in FINAL_REMOTE_STATUSES


def remote_status_after(current: str | None, reported: str | None) -> str | None:
    """The call's remote_status after the provider reported `reported`: never back from a final one."""
    if not reported or is_final_remote_status(current):
        return current
    return reported


# How far along a call is; status only ever moves to a higher rank.
_RANK = {
    PhoneCallStatus.CREATED: 0,
    PhoneCallStatus.QUEUED: 1,
    PhoneCallStatus.REMOTELY_QUEUED: 2,
    PhoneCallStatus.REMOTE_FETCH_QUEUED: 2,
    PhoneCallStatus.IN_PROGRESS: 3,
}
_TERMINAL_RANK = 4


def _rank(status: PhoneCallStatus) -> int:
    return _TERMINAL_RANK if status in TERMINAL_PHONE_CALL_STATUSES else _RANK[status]


S = TypeVar("S", bound=Enum)


def transition(table: dict[str, tuple[frozenset[S], S]], status: S, event: str) -> S:
    """The status after `event`, or EventNotAllowed."""
    if event not in table or status not in table[event][0]:
        raise EventNotAllowed(event, getattr(status, "value", str(status)))
    return table[event][1]


def apply_remote_status(current: PhoneCallStatus, remote_status: str | None, *, fetched: bool) -> PhoneCallStatus:
    """The local status after the provider reported `remote_status` (by webhook, or by a fetch).

    Forward only: a late or duplicate report never moves a call back, and a terminal call stays as it is.
    A fetch that finds the call still queued at the provider returns it from remote_fetch_queued to
    remotely_queued.
    """
    if current in TERMINAL_PHONE_CALL_STATUSES or current is PhoneCallStatus.CREATED:
        return current
    key = (remote_status or "").strip().lower()
    target = REMOTE_STATUS_MAP.get(key)
    if target is None:
        if current is PhoneCallStatus.REMOTE_FETCH_QUEUED and fetched:
            return PhoneCallStatus.REMOTELY_QUEUED
        return current
    if target in TERMINAL_PHONE_CALL_STATUSES:
        return target
    if current is PhoneCallStatus.REMOTE_FETCH_QUEUED and fetched:
        return target
    return target if _rank(target) > _rank(current) else current


class ContactImportStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


CONTACT_IMPORT_TRANSITIONS: dict[str, tuple[frozenset[ContactImportStatus], ContactImportStatus]] = {
    "start": (frozenset({ContactImportStatus.QUEUED}), ContactImportStatus.RUNNING),
    "finish": (frozenset({ContactImportStatus.RUNNING}), ContactImportStatus.FINISHED),
    "fail": (frozenset({ContactImportStatus.QUEUED, ContactImportStatus.RUNNING}), ContactImportStatus.FAILED),
}
# Imports a worker still has to carry on (the sweeper redelivers them when their job was lost).
OPEN_CONTACT_IMPORT_STATUSES = frozenset({ContactImportStatus.QUEUED, ContactImportStatus.RUNNING})

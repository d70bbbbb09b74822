"""Entities: plain dataclasses that carry the rules of the records the API manages."""
from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from scfm.domain import state_machines as sm
from scfm.domain.errors import DeleteRefused, ValidationFailed
from scfm.domain.values import MergeMode, merge_metadata

SUPER_ADMIN = "super_admin"


T = TypeVar("T")


def stored(value: T | None) -> T:
    """A field a record read from a repository always has (its id, its account's, a batch operation's type):
    an entity's fields are optional only until it is first saved."""
    if value is None:
        raise ValueError("the record is not stored yet")
    return value


@dataclass
class Entity:
    id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def update_metadata(self, new: Any, mode: MergeMode) -> None:
        self.metadata = merge_metadata(self.metadata, new, mode)

    # -- change tracking: a repository takes a snapshot when it loads or writes an entity, and `save` writes
    # exactly the fields that differ from it, so a changed field cannot be left out of a write.
    def mark_clean(self) -> None:
        """Take the snapshot: the entity as its row now stands."""
        self._snapshot = {name: _copied(getattr(self, name)) for name in _field_names(type(self))}

    def changed_fields(self) -> set[str]:
        """The fields that differ from the snapshot (every field of an entity never loaded)."""
        snapshot: dict[str, Any] | None = getattr(self, "_snapshot", None)
        if snapshot is None:
            return set(_field_names(type(self)))
        return {name for name, value in snapshot.items() if getattr(self, name) != value}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(entity: type) -> tuple[str, ...]:
    """An entity class's fields, found once: a snapshot and its diff are taken on every webhook request."""
    names = _FIELD_NAMES.get(entity)
    if names is None:
        names = _FIELD_NAMES[entity] = tuple(f.name for f in dataclasses.fields(entity))
    return names


def _copied(value: Any) -> Any:
    """A field's value as the snapshot keeps it: its dicts and lists (JSON documents) copied all the way down;
    anything else is a value no one changes in place."""
    if isinstance(value, dict):
        return {key: _copied(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_copied(inner) for inner in value]
    return value


@dataclass
class Account(Entity):
    settings: dict[str, Any] = field(default_factory=dict)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    somleng_account_sid: str | None = None
    somleng_auth_token: str | None = None
    platform_provider_name: str | None = None
    somleng_api_host: str | None = None
    somleng_api_base_url: str | None = None
    permissions: list[str] = field(default_factory=list)
    calls_per_second: float | None = None
    max_calls_in_flight: int | None = None
    call_plan: dict[str, Any] | None = None  # the default of its callouts'

    @property
    def is_super_admin(self) -> bool:
        return SUPER_ADMIN in self.permissions


MAX_SESSIONS_PER_TOKEN = 20  # a token's dashboard sessions at once: a sign-in beyond ends the oldest


@dataclass
class AccessToken(Entity):
    account_id: int | None = None
    token_digest: str | None = None
    token: str | None = None  # the plain token: known only to the request that created it

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, account_id: int, metadata: dict[str, Any] | None = None) -> "AccessToken":
        token = secrets.token_hex(32)
        return cls(account_id=account_id, token=token, token_digest=cls.digest(token), metadata=metadata or {})


@dataclass
class Contact(Entity):
    account_id: int | None = None
    msisdn: str | None = None


@dataclass
class Callout(Entity):
    account_id: int | None = None
    status: str = sm.CalloutStatus.INITIALIZED.value
    call_flow_logic: str | None = None
    call_plan: dict[str, Any] | None = None

    def fire(self, event: str) -> None:
        self.status = sm.transition(sm.CALLOUT_TRANSITIONS, sm.CalloutStatus(self.status), event).value


@dataclass
class CalloutParticipation(Entity):
    account_id: int | None = None
    callout_id: int | None = None
    contact_id: int | None = None
    callout_population_id: int | None = None
    msisdn: str | None = None
    call_flow_logic: str | None = None
    # kept by the database from its phone calls: the latest, how many were made, how many dialed
    last_phone_call_id: int | None = None
    last_phone_call_status: str | None = None
    calls_count: int = 0
    attempts: int = 0
    # set by the call plan's runner once no call is left to make
    outcome: str | None = None
    finished_at: datetime | None = None
    # the callout's call flow logic, read with the row so the effective value can be shown
    callout_call_flow_logic: str | None = None

    @property
    def effective_call_flow_logic(self) -> str | None:
        return self.call_flow_logic or self.callout_call_flow_logic


@dataclass
class PhoneCall(Entity):
    account_id: int | None = None
    callout_participation_id: int | None = None
    contact_id: int | None = None
    create_batch_operation_id: int | None = None
    queue_batch_operation_id: int | None = None
    queue_remote_fetch_batch_operation_id: int | None = None
    status: str = sm.PhoneCallStatus.CREATED.value
    msisdn: str | None = None
    remote_call_id: str | None = None
    remote_status: str | None = None
    remote_direction: str | None = None
    remote_error_message: str | None = None
    remote_response: dict[str, Any] = field(default_factory=dict)
    remote_request_params: dict[str, Any] = field(default_factory=dict)
    remote_queue_response: dict[str, Any] = field(default_factory=dict)
    call_flow_logic: str | None = None
    remotely_queued_at: datetime | None = None
    duration: int | None = None
    queued_at: datetime | None = None
    dial_claimed_at: datetime | None = None
    dial_attempts: int = 0
    next_attempt_at: datetime | None = None
    remote_status_updated_at: datetime | None = None
    reconcile_after: datetime | None = None
    waiting_for_window: bool = False
    # call flow logic inherited from the participation, then the callout (read-only)
    inherited_call_flow_logic: str | None = None

    @property
    def effective_call_flow_logic(self) -> str | None:
        return self.call_flow_logic or self.inherited_call_flow_logic

    @property
    def status_enum(self) -> sm.PhoneCallStatus:
        return sm.PhoneCallStatus(self.status)

    def fire(self, event: str) -> None:
        self.status = sm.transition(sm.PHONE_CALL_TRANSITIONS, self.status_enum, event).value

    def mark_queued(self, now: datetime) -> None:
        self.queued_at = self.next_attempt_at = now
        self.dial_claimed_at = None

    def ensure_editable(self, changing: set[str]) -> None:
        locked = changing & {"msisdn", "call_flow_logic", "remote_request_params"}
        if locked and self.status != sm.PhoneCallStatus.CREATED.value:
            raise ValidationFailed({name: [f"cannot be changed when status is {self.status}"] for name in sorted(locked)})

    def ensure_deletable(self) -> None:
        if self.status != sm.PhoneCallStatus.CREATED.value:
            raise DeleteRefused(f"status is {self.status}")

    def apply_remote_status(self, remote_status: str | None, *, fetched: bool) -> None:
        self.remote_status = sm.remote_status_after(self.remote_status, remote_status)
        self.status = sm.apply_remote_status(self.status_enum, remote_status, fetched=fetched).value


@dataclass
class RemotePhoneCallEvent(Entity):
    account_id: int | None = None
    phone_call_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    remote_call_id: str | None = None
    remote_direction: str | None = None
    call_flow_logic: str | None = None


@dataclass
class BatchOperation(Entity):
    account_id: int | None = None
    callout_id: int | None = None
    type: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = sm.BatchOperationStatus.PREVIEW.value
    error_message: str | None = None

    def fire(self, event: str) -> None:
        self.status = sm.transition(
            sm.BATCH_OPERATION_TRANSITIONS, sm.BatchOperationStatus(self.status), event
        ).value

"""The provider webhook, and the remote phone call events it records."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from scfm.domain import state_machines as sm
from scfm.domain.call_flow_logic import CallFlowRegistry, CallFlowRequest, CallFlowResponse
from scfm.domain.clock import Clock, utc_now
from scfm.domain.errors import DomainError, NotFound, ValidationFailed
from scfm.domain.filters import REMOTE_PHONE_CALL_EVENT_FILTERS
from scfm.domain.model import Contact, PhoneCall, RemotePhoneCallEvent, stored
from scfm.domain.ports import ReportsUnitOfWork, SignatureValidator, UnitOfWork, Within
from scfm.domain.provider import webhook_auth_token
from scfm.domain.values import MergeMode, merge_metadata, msisdn_or_as_given
from scfm.services.common import Page, PageRequest, apply_metadata, list_page


class Forbidden(DomainError):
    """A webhook that is not signed by the account it names."""


@dataclass
class WebhookResult:
    event: RemotePhoneCallEvent | None  # None: a replay of a request already recorded, which changed nothing
    call_flow_response: CallFlowResponse


def request_digest(url: str, lists: dict[str, Any]) -> bytes:
    """What the signature covers (the URL and every form value), as a digest: the same signed request made
    again has the same digest, and is recorded once."""
    pairs = sorted((key, str(value)) for key, values in lists.items() for value in values)
    return hashlib.sha256(json.dumps([url, pairs]).encode()).digest()


# The parameters the webhook reads: given twice they would be ambiguous (the provider never repeats them).
READ_ONCE = ("AccountSid", "CallSid", "CallStatus", "Direction", "From", "CallDuration", "Digits")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _InboundCallMadeMeanwhile(ValidationFailed):
    """Another request of the same new inbound call made it first (this one's insert waited for its commit)."""

    def __init__(self) -> None:
        super().__init__({"remote_call_id": ["has already been taken"]})


def handle_webhook(reports_for: Callable[[], ReportsUnitOfWork], call_flows: CallFlowRegistry,
                   provider_defaults: dict[str, Any], validate_signature: SignatureValidator, url: str,
                   params: dict[str, Any],
                   signature: str, our_phone_call_id: Any = None, clock: Clock = utc_now) -> WebhookResult:
    """Record one provider request, move the call forward, and answer with its call flow logic.

    `params` is the form as posted, names to lists of values (or to single values); validate_signature is
    given every value, as lists. `our_phone_call_id`
    comes from the status callback URL we gave the provider, and finds a call whose create response was lost.
    Two requests of a new inbound call at once (a retried request, or two statuses) make one call: the one
    that finds the other's call made meanwhile is handled again, as a request for that call.
    """
    arguments = (reports_for, call_flows, provider_defaults, validate_signature, url, params, signature,
                 our_phone_call_id, clock)
    try:
        return _handle_webhook(*arguments)
    except _InboundCallMadeMeanwhile:
        return _handle_webhook(*arguments)


def _handle_webhook(reports_for: Callable[[], ReportsUnitOfWork], call_flows: CallFlowRegistry,
                    provider_defaults: dict[str, Any], validate_signature: SignatureValidator, url: str,
                    params: dict[str, Any], signature: str, our_phone_call_id: Any, clock: Clock) -> WebhookResult:
    lists = _lists(params)
    account_sid = _first(lists, "AccountSid")
    if not account_sid:
        raise Forbidden("AccountSid is missing")
    call_sid = _first(lists, "CallSid")
    with reports_for() as server:  # one transaction for the whole request
        target = server.provider_reports.find(account_sid, call_sid)
        token = webhook_auth_token(target.account, account_sid, provider_defaults) if target else None
        if target is None or not token or not validate_signature(token, url, lists, signature or ""):
            raise Forbidden("bad signature")
        account_id = stored(target.account.id)
        for key in READ_ONCE:
            if len(lists.get(key, ())) > 1:
                raise ValidationFailed.on(key, "must be given once")
        details: dict[str, Any] = {key: (values if len(values) > 1 else values[0]) for key, values in lists.items()}
        if not call_sid:
            raise ValidationFailed.on("CallSid", "can't be blank")
        remote_status = (details.get("CallStatus") or "").lower() or None
        direction = details.get("Direction")

        call, context = target.call, target.context
        if call is None or context is None:  # the account's own repositories, only when the call needs them
            uow = server.for_account(account_id)
            if call is None and our_phone_call_id is not None:
                call = _adopt(uow, _int(our_phone_call_id), call_sid, clock())
            if call is None:
                if (direction or "").lower() != "inbound":
                    raise NotFound("phone call")
                call = _inbound_call(uow, account_id, details, call_sid, clock())
            if context is None:
                context = _context_metadata(uow, call)
        _apply_report(call, details, remote_status, direction, clock())
        name: str | None = call.effective_call_flow_logic
        if name and not call_flows.is_registered(name):
            name = None  # unregistered since it was set: answer with the default rather than fail the call
        flow = call_flows.get(name)
        response = flow.respond(CallFlowRequest(
            phone_call_id=stored(call.id), msisdn=call.msisdn, direction=call.remote_direction,
            remote_status=call.remote_status, digits=details.get("Digits"), webhook_url=url,
            metadata=dict(call.metadata), context_metadata=context, details=details,
        ))
        if response.metadata_updates:
            call.metadata = merge_metadata(call.metadata, response.metadata_updates, MergeMode.DEEP_MERGE)
        event = server.provider_reports.record(call, RemotePhoneCallEvent(
            account_id=account_id, phone_call_id=call.id, details=details, remote_call_id=call_sid,
            remote_direction=direction, call_flow_logic=name or call_flows.default_name,
        ), request_digest(url, lists))
        server.commit()
    return WebhookResult(event, response)


def _lists(params: dict[str, Any]) -> dict[str, list[Any]]:
    return {key: value if isinstance(value, list) else [value] for key, value in params.items()}


def _first(lists: dict[str, list[Any]], key: str) -> Any:
    values = lists.get(key)
    return values[0] if values else None


def _adopt(uow: UnitOfWork, phone_call_id: int | None, call_sid: str, now: datetime) -> PhoneCall | None:
    """The callback of a call whose create response we never saw: it is ours by the URL we gave. The dialer
    may have recorded this very sid since the request looked the call up by it: then the call is this one."""
    if phone_call_id is None:
        return None
    call = uow.phone_calls.find(phone_call_id, for_update=True)
    if call is None or call.remote_call_id:
        return call if call is not None and call.remote_call_id == call_sid else None
    call.remote_call_id = call_sid
    if call.status == sm.PhoneCallStatus.QUEUED.value:
        call.fire("remotely_queue")
        call.remotely_queued_at = call.remotely_queued_at or now
    uow.phone_calls.save(call)
    return uow.phone_calls.get(call.id)


def _inbound_call(uow: UnitOfWork, account_id: int, details: dict[str, Any], call_sid: str, now: datetime) -> PhoneCall:
    msisdn = msisdn_or_as_given(str(details.get("From") or "").strip(), field="From")
    if not msisdn:
        raise ValidationFailed.on("From", "can't be blank")
    contact = uow.contacts.by_msisdn(msisdn) or uow.contacts.add_if_missing(Contact(account_id=account_id, msisdn=msisdn))
    call = PhoneCall(
        account_id=account_id, contact_id=contact.id, msisdn=msisdn, remote_call_id=call_sid,
        remote_direction=details.get("Direction"), status=sm.PhoneCallStatus.REMOTELY_QUEUED.value,
        remotely_queued_at=now,
    )
    try:
        call = uow.phone_calls.add(call)
    except ValidationFailed as error:
        if "remote_call_id" in error.errors:  # not there when looked up: made since, by a concurrent request
            raise _InboundCallMadeMeanwhile() from None
        raise
    return uow.phone_calls.get(call.id, for_update=True)


def _apply_report(call: PhoneCall, details: dict[str, Any], remote_status: str | None, direction: str | None,
                  now: datetime) -> None:
    finished = sm.is_final_remote_status(call.remote_status)  # the provider's last word is already in
    call.apply_remote_status(remote_status, fetched=False)
    call.remote_status_updated_at = now
    if direction and not call.remote_direction:
        call.remote_direction = direction
    duration = _int(details.get("CallDuration"))
    if duration is not None and not finished:
        call.duration = duration


def _context_metadata(uow: UnitOfWork, call: PhoneCall) -> dict[str, Any]:
    """Callout, then participation, then call metadata: the nearer one wins."""
    merged: dict[str, Any] = {}
    if call.callout_participation_id:
        participation = uow.callout_participations.find(call.callout_participation_id)
        if participation:
            callout = uow.callouts.find(participation.callout_id)
            merged.update(callout.metadata if callout else {})
            merged.update(participation.metadata)
    merged.update(call.metadata)
    return merged


# ---------------------------------------------------------------- the events API

def get_event(uow: UnitOfWork, event_id: int) -> RemotePhoneCallEvent:
    with uow:
        return uow.remote_phone_call_events.get(event_id)


def update_event(uow: UnitOfWork, event_id: int, params: dict[str, Any]) -> RemotePhoneCallEvent:
    with uow:
        event = uow.remote_phone_call_events.get(event_id, for_update=True)
        apply_metadata(event, params)
        event = uow.remote_phone_call_events.save(event)
        uow.commit()
    return event


def list_events(uow: UnitOfWork, q: Any, paging: PageRequest, phone_call_id: int | None = None,
                contact_id: int | None = None, callout_id: int | None = None,
                participation_id: int | None = None) -> Page:
    with uow:
        repo = uow.remote_phone_call_events
        within = []
        if phone_call_id is not None:
            within.append(Within.of(uow.phone_calls.get(phone_call_id)))
        if contact_id is not None:
            within.append(Within.of(uow.contacts.get(contact_id)))
        if callout_id is not None:
            within.append(Within.of(uow.callouts.get(callout_id)))
        if participation_id is not None:
            within.append(Within.of(uow.callout_participations.get(participation_id)))
        return list_page(repo, REMOTE_PHONE_CALL_EVENT_FILTERS, q, paging, within)

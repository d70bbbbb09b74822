"""Dialing and remote fetches: what the workers do with queued calls.

A claim is committed before the provider is asked, so a call is dialed at most once: a second delivery of
the same job finds the claim and does nothing. An outcome that is unknown (timeout, reset, 5xx) is never
re-dialed; the status callback (which names our call) or the sweeper settles it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from scfm.domain import state_machines as sm
from scfm.domain.ports import (
    CallProvider, OutcomeUnknown, ProviderRateLimited, ProviderRefused, ProviderUnreachable, RemoteCall,
)
from scfm.domain.provider import credentials_for

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/remote_phone_call_events"
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]
NO_CREDENTIALS = (
    "Unable to create record: no provider credentials are configured for this account "
    "(set its twilio_account_sid/twilio_auth_token or somleng_* fields, or the server's defaults)"
)


@dataclass(frozen=True)
class DialOutcome:
    result: str  # skipped, remotely_queued, errored, retry, unknown
    retry_in: float | None = None


def outgoing_params(call, public_url: str | None) -> dict:
    """The create-call parameters: the call's own, plus a status callback that names our call."""
    params = dict(call.remote_request_params or {})
    if public_url and not params.get("status_callback"):
        params["status_callback"] = f"{public_url}{WEBHOOK_PATH}?phone_call_id={call.id}"
        params.setdefault("status_callback_event", STATUS_CALLBACK_EVENTS)
    return params


def dial(uow, provider: CallProvider, provider_defaults: dict, public_url: str | None, phone_call_id: int,
         retry_in: float = 5.0) -> DialOutcome:
    with uow:
        call = uow.phone_calls.claim_for_dialing(phone_call_id)
        if call is None:
            return DialOutcome("skipped")
        account = uow.accounts.get(call.account_id)
        uow.commit()

    credentials = credentials_for(account, provider_defaults)
    if credentials is None:
        _record_refusal(uow, phone_call_id, NO_CREDENTIALS)
        return DialOutcome("errored")
    try:
        remote = provider.create_call(credentials, call.msisdn, outgoing_params(call, public_url))
    except ProviderRefused as refusal:
        _record_refusal(uow, phone_call_id, refusal.message)
        return DialOutcome("errored")
    except (ProviderRateLimited, ProviderUnreachable) as error:
        log.info("phone call %s not dialed (%s); retrying in %ss", phone_call_id, type(error).__name__, retry_in)
        with uow:
            uow.phone_calls.release_claim(phone_call_id, retry_in, count_attempt=False)
            uow.commit()
        return DialOutcome("retry", retry_in)
    except OutcomeUnknown as error:
        log.warning("phone call %s: outcome of the dial is unknown: %s", phone_call_id, error)
        return DialOutcome("unknown")
    _record_remotely_queued(uow, phone_call_id, remote)
    return DialOutcome("remotely_queued")


def _record_refusal(uow, phone_call_id: int, message: str) -> None:
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        if call.status == sm.PhoneCallStatus.QUEUED.value:
            call.fire("error")
        call.remote_error_message = message
        call.remotely_queued_at = call.remotely_queued_at or _now()
        uow.phone_calls.save(call, {"status", "remote_error_message", "remotely_queued_at"})
        uow.commit()


def _record_remotely_queued(uow, phone_call_id: int, remote: RemoteCall) -> None:
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        if call.status == sm.PhoneCallStatus.QUEUED.value:
            call.fire("remotely_queue")
        # a status callback may have come first: then the status is already further along
        call.remote_call_id = call.remote_call_id or remote.sid
        call.remote_status = call.remote_status or remote.status
        call.remote_direction = call.remote_direction or remote.direction
        call.remote_queue_response = remote.response
        call.remotely_queued_at = call.remotely_queued_at or _now()
        uow.phone_calls.save(call, {
            "status", "remote_call_id", "remote_status", "remote_direction", "remote_queue_response",
            "remotely_queued_at",
        })
        uow.commit()


def give_up_unknown_outcome(uow, phone_call_id: int) -> bool:
    """A claimed call that nobody reported on: end it as errored, saying the outcome was unknown."""
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        if call.status != sm.PhoneCallStatus.QUEUED.value or call.dial_claimed_at is None or call.remote_call_id:
            return False
        call.fire("error")
        call.remote_error_message = (
            "The outcome of the request to the provider is unknown (no answer, and no status callback came)"
        )
        call.remotely_queued_at = call.remotely_queued_at or _now()
        uow.phone_calls.save(call, {"status", "remote_error_message", "remotely_queued_at"})
        uow.commit()
    return True


def fetch_remote_call(uow, provider: CallProvider, provider_defaults: dict, phone_call_id: int) -> str:
    with uow:
        call = uow.phone_calls.get(phone_call_id)
        if call.status != sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value or not call.remote_call_id:
            return "skipped"
        account = uow.accounts.get(call.account_id)
    credentials = credentials_for(account, provider_defaults)
    if credentials is None:
        return "skipped"
    try:
        remote = provider.fetch_call(credentials, call.remote_call_id)
    except ProviderRefused as refusal:
        with uow:
            call = uow.phone_calls.get(phone_call_id, for_update=True)
            call.remote_error_message = refusal.message
            if call.status == sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value:
                call.status = sm.PhoneCallStatus.REMOTELY_QUEUED.value
            uow.phone_calls.save(call, {"remote_error_message", "status"})
            uow.commit()
        return "refused"
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        call.apply_remote_status(remote.status, fetched=True)
        call.remote_response = remote.response
        if remote.duration is not None:
            call.duration = remote.duration
        call.remote_status_updated_at = _now()
        uow.phone_calls.save(call, {"status", "remote_status", "remote_response", "duration",
                                    "remote_status_updated_at"})
        uow.commit()
    return call.status


def _now() -> datetime:
    return datetime.now(timezone.utc)

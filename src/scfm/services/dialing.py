"""After the dial: what the workers do with calls the dispatcher (services/dispatcher.py) dialed.

An outcome that is unknown (killed dialer, timeout, reset, 5xx) is never blindly re-dialed: the status
callback (which names our call) settles it; after a grace period the sweeper asks the provider for its calls
to that number, adopts the one it finds, dials again if it finds none, and otherwise ends the call as errored
with a message saying the outcome was unknown. Calls with no news are fetched from the provider.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from scfm.domain import state_machines as sm
from scfm.domain.clock import Clock, utc_now
from scfm.domain.dialing import Timings, settle_unknown_outcome
from scfm.domain.ports import (
    UnitOfWork, UnitsOfWork,
    CallProvider, OutcomeUnknown, ProviderRateLimited, ProviderRefused, ProviderUnreachable, RemoteCall,
)
from scfm.domain.model import PhoneCall, stored
from scfm.domain.provider import credentials_for
from scfm.services.dispatcher import NO_CREDENTIALS

log = logging.getLogger(__name__)

UNKNOWN_OUTCOME = "The outcome of the request to the provider is unknown (no answer, and no status callback came)"


def reconcile_unknown_outcome(uow_for: UnitsOfWork, provider: CallProvider, provider_defaults: dict[str, Any],
                              phone_call_id: int,
                              timings: Timings = Timings(), clock: Clock = utc_now) -> str:
    """A claimed call nobody reported on: ask the provider for its calls to the number, and settle the claim
    as `settle_unknown_outcome` says (adopt the call it made, dial again, or end it errored saying why).
    A provider out of reach is asked again later, and given up on once the claim is `expire_after_silence`
    old. Returns what was done."""
    with uow_for(None) as uow:
        call = uow.phone_calls.find(phone_call_id)
        if call is None or not _claim_is_stale(call, timings, clock()):
            return "skipped"
        account = uow.accounts.get(call.account_id)
    claimed_at, msisdn = stored(call.dial_claimed_at), stored(call.msisdn)
    try:
        credentials = credentials_for(account, provider_defaults)
        if credentials is None:
            raise ProviderRefused(NO_CREDENTIALS)
        listed = provider.find_calls(credentials, msisdn)
    except (ProviderRateLimited, ProviderUnreachable, OutcomeUnknown) as error:
        if clock() - claimed_at < timedelta(seconds=timings.expire_after_silence):
            log.info("phone call %s: the provider could not be asked about it (%s); asking again later",
                     phone_call_id, error)
            return "ask again"
        return _give_up(uow_for(None), phone_call_id, claimed_at,
                        f"{UNKNOWN_OUTCOME}; the provider could not be asked: {error}", clock())
    except ProviderRefused as refusal:
        return _give_up(uow_for(None), phone_call_id, claimed_at,
                        f"{UNKNOWN_OUTCOME}; the provider refused to list its calls: {refusal.message}", clock())
    except Exception:  # an adapter's unforeseen failure: asked again, like an unreachable provider
        log.exception("phone call %s: listing the provider's calls failed unexpectedly", phone_call_id)
        return "ask again"
    with uow_for(None) as uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        now = clock()
        if call.dial_claimed_at != claimed_at or not _claim_is_stale(call, timings, now):
            return "skipped"  # settled meanwhile, or claimed again: the list answered for another claim
        settlement = settle_unknown_outcome(
            claimed_at, timings.unknown_outcome_grace, listed,
            uow.dial_queue.known_remote_call_ids([remote.sid for remote in listed]),
            uow.dial_queue.open_claims_to(msisdn, excluding=phone_call_id), now)
        if settlement.action == "adopt" and settlement.remote is not None:
            _adopt(uow, call, settlement.remote, now)
        elif settlement.action == "dial_again":
            log.info("phone call %s: the provider made no call to %s for it; dialing again", phone_call_id,
                     call.msisdn)
            uow.dial_queue.put_back(phone_call_id, 0, count_attempt=False)
        elif settlement.action == "error":
            call.fire("error")
            call.remote_error_message = f"{UNKNOWN_OUTCOME}; {settlement.reason}"
            uow.phone_calls.save(call)
        else:
            log.info("phone call %s: %s; asking again later", phone_call_id, settlement.reason)
        uow.commit()
    return settlement.action.replace("_", " ")


def _claim_is_stale(call: PhoneCall, timings: Timings, now: datetime) -> bool:
    """A claim whose dial outcome is still unknown after the grace for its status callback."""
    claimed_at = call.dial_claimed_at
    return (_outcome_unknown(call) and claimed_at is not None
            and now - claimed_at >= timedelta(seconds=timings.unknown_outcome_grace))


def _outcome_unknown(call: PhoneCall) -> bool:
    return call.status == sm.PhoneCallStatus.QUEUED.value and call.dial_claimed_at is not None and not call.remote_call_id


def _adopt(uow: UnitOfWork, call: PhoneCall, remote: RemoteCall, now: datetime) -> None:
    call.remote_call_id = remote.sid
    call.fire("remotely_queue")
    call.remotely_queued_at = remote.created_at or now
    call.remote_queue_response = remote.response
    call.apply_remote_status(remote.status, fetched=True)
    call.remote_status_updated_at = now
    call.remote_direction = call.remote_direction or remote.direction
    if remote.duration is not None:
        call.duration = remote.duration
    uow.phone_calls.save(call)


def _give_up(uow: UnitOfWork, phone_call_id: int, claimed_at: datetime, message: str, now: datetime) -> str:
    """End a claimed call whose outcome stays unknown as errored, saying so."""
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        if not _outcome_unknown(call) or call.dial_claimed_at != claimed_at:
            return "skipped"
        call.fire("error")
        call.remote_error_message = message
        call.remotely_queued_at = call.remotely_queued_at or now
        uow.phone_calls.save(call)
        uow.commit()
    return "error"


def fetch_remote_call(uow: UnitOfWork, provider: CallProvider, provider_defaults: dict[str, Any],
                      phone_call_id: int) -> str:
    with uow:
        call = uow.phone_calls.get(phone_call_id)
        if call.status != sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value or not call.remote_call_id:
            return "skipped"
        account = uow.accounts.get(call.account_id)
    try:
        credentials = credentials_for(account, provider_defaults)
        if credentials is None:
            return "skipped"
        remote = provider.fetch_call(credentials, call.remote_call_id)
    except (ProviderRateLimited, ProviderUnreachable):
        raise  # the job is retried; the sweeper re-enqueues it if the retries run out
    except Exception as error:  # a refusal (an endpoint no longer allowed, too), or an adapter's unforeseen failure
        if not isinstance(error, ProviderRefused):
            log.exception("phone call %s: fetching it from the provider failed unexpectedly", phone_call_id)
        message = error.message if isinstance(error, ProviderRefused) else "The provider could not be asked about the call"
        with uow:
            call = uow.phone_calls.get(phone_call_id, for_update=True)
            call.remote_error_message = message
            if call.status == sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value:
                call.status = sm.PhoneCallStatus.REMOTELY_QUEUED.value
            uow.phone_calls.save(call)
            uow.commit()
        return "refused"
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        call.apply_remote_status(remote.status, fetched=True)
        call.remote_response = remote.response
        if remote.duration is not None:
            call.duration = remote.duration
        call.remote_status_updated_at = _now()
        uow.phone_calls.save(call)
        uow.commit()
    return str(call.status)


def _now() -> datetime:
    return datetime.now(timezone.utc)

"""Dialing and remote fetches: what the workers do with queued calls.

Queued calls wait in PostgreSQL. A dispatcher per account claims them in order (FOR UPDATE SKIP LOCKED) as
the shared rate limiter allows; the claim is committed before the provider is asked, so a call is dialed at
most once. An outcome that is unknown (killed worker, timeout, reset, 5xx) is never blindly re-dialed: the
status callback (which names our call) settles it; after a grace period the sweeper asks the provider for
its calls to that number, adopts the one it finds, dials again if it finds none, and otherwise ends the call
as errored with a message saying the outcome was unknown.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from scfm.domain import state_machines as sm
from scfm.domain.clock import Clock, utc_now
from scfm.domain.dialing import DialingPolicy, Timings, settle_unknown_outcome
from scfm.domain.errors import ValidationFailed
from scfm.domain.ports import (
    CallProvider, OutcomeUnknown, ProviderRateLimited, ProviderRefused, ProviderUnreachable, RemoteCall,
)
from scfm.domain.provider import credentials_for, dialing_ceilings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/remote_phone_call_events"
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]
NO_CREDENTIALS = (
    "Unable to create record: no provider credentials are configured for this account "
    "(set its twilio_account_sid/twilio_auth_token or somleng_* fields, or the server's defaults)"
)
DUPLICATE_SID = "The provider answered with the sid of a call that another phone call already holds"
UNKNOWN_OUTCOME = "The outcome of the request to the provider is unknown (no answer, and no status callback came)"


@dataclass(frozen=True)
class DialOutcome:
    result: str  # remotely_queued, errored, retry, unknown
    retry_in: float | None = None


@dataclass
class DispatchReport:
    dialed: int = 0
    results: dict = None
    more_due: bool = False

    def count(self, result: str) -> None:
        self.results = self.results or {}
        self.results[result] = self.results.get(result, 0) + 1


def outgoing_params(call, public_url: str | None) -> dict:
    """The create-call parameters: the call's own, plus a status callback that names our call."""
    params = dict(call.remote_request_params or {})
    if public_url and not params.get("status_callback"):
        params["status_callback"] = f"{public_url}{WEBHOOK_PATH}?phone_call_id={call.id}"
        params.setdefault("status_callback_event", STATUS_CALLBACK_EVENTS)
    return params


def dispatch(uow_for, provider: CallProvider, limiter, provider_defaults: dict, public_url: str | None,
             account_id: int, timings: Timings = Timings(), stop: threading.Event | None = None,
             begin=None) -> DispatchReport:
    """Dial this account's due calls at its rate until none is due or the budget is spent.

    Runs `policy.concurrency` threads, each taking the next slot of the shared limiter, then the next due
    call; several dispatchers (on several workers) share the same limiter and never exceed the rate.
    `begin`, once the threads are ready, may wait for the right to dial (a dispatcher taking over from
    another), and returns whether it came.
    """
    with uow_for(None) as uow:
        account = uow.accounts.get(account_id)
    policy = _capped(DialingPolicy.for_account(account), provider_defaults)
    credentials, unusable = _credentials(account, provider_defaults)
    report = DispatchReport()
    lock = threading.Lock()
    stop = stop or threading.Event()
    ready, go = threading.Barrier(policy.concurrency + 1), threading.Event()
    deadline = 0.0

    def dial_loop():
        try:
            if credentials is not None and hasattr(provider, "warm"):
                provider.warm(credentials)  # first-use costs (imports, the client) must not fall between slot and send
            with uow_for(None):
                pass  # and a database connection in the pool
        finally:
            ready.wait()  # a thread that failed to get ready must not keep the others waiting
        go.wait()
        while not stop.is_set() and time.monotonic() < deadline:
            with uow_for(None) as uow:
                if policy.max_calls_in_flight and uow.phone_calls.in_flight_count(account_id) >= policy.max_calls_in_flight:
                    with lock:
                        report.more_due = True
                    return
                call = uow.phone_calls.claim_next_due(account_id)
                uow.commit()
            if call is None:
                return
            claimed = time.monotonic()
            if credentials is not None:
                _wait_for_slot(limiter, credentials.account_sid, policy.slots_per_second)
            if time.monotonic() - claimed > timings.unknown_outcome_grace / 2:
                # the sweeper may soon ask the provider about this claim and, finding no call, dial it again:
                # a request sent this late could make a second call
                with uow_for(None) as uow:
                    uow.phone_calls.release_claim(call.id, timings.retry_after_rate_limit, count_attempt=False)
                    uow.commit()
                continue
            outcome = dial_claimed(uow_for(None), provider, credentials, public_url, call, timings, unusable)
            if outcome.result == "retry" and credentials is not None and outcome.retry_in:
                limiter.penalize(credentials.account_sid, outcome.retry_in)
            with lock:
                report.dialed += 1
                report.count(outcome.result)

    threads = [threading.Thread(target=dial_loop, daemon=True) for _ in range(policy.concurrency)]
    for thread in threads:
        thread.start()
    began = False
    try:
        ready.wait()
        began = begin is None or begin()
    finally:  # whatever happened, the threads are let go: to dial, or (stopped) to end
        if not began:
            stop.set()
        deadline = time.monotonic() + timings.dispatcher_budget
        go.set()
    for thread in threads:
        thread.join()
    with uow_for(None) as uow:
        report.more_due = report.more_due or uow.phone_calls.due_for_dialing_exists(account_id)
    return report


def _capped(policy: DialingPolicy, provider_defaults: dict) -> DialingPolicy:
    """The account's policy within the server's ceilings (an account may have been set before they were)."""
    max_rate, max_in_flight = dialing_ceilings(provider_defaults)
    return DialingPolicy(min(policy.calls_per_second, max_rate),
                         min(policy.max_calls_in_flight or max_in_flight, max_in_flight))


def _credentials(account, provider_defaults: dict):
    """(credentials, None), or (None, why the account's calls cannot be made)."""
    try:
        credentials = credentials_for(account, provider_defaults)
    except ProviderRefused as refusal:  # an endpoint the server does not (or no longer) allow
        return None, refusal.message
    return credentials, None if credentials else NO_CREDENTIALS


MAX_SLOT_LATENESS = 0.010


def _wait_for_slot(limiter, name: str, per_second: float) -> None:
    """Sleep until this call's slot. The slot is taken after the claim, so that only the request itself comes
    between the slot and the provider; a slot missed by more than a few milliseconds (a busy CPU) is given up
    for the next one, so that a late request never lands close behind its successor."""
    while True:
        asked = time.monotonic()
        wait = limiter.reserve(name, per_second)
        answered = time.monotonic()
        # Redis's now lies between `asked` and `answered`: wake no earlier than the latest the slot can be,
        # and count lateness from the earliest, so that both errors err on the side of the rate
        if answered + wait > time.monotonic():
            time.sleep(answered + wait - time.monotonic())
        if time.monotonic() - (asked + wait) <= MAX_SLOT_LATENESS:
            return


def dial_claimed(uow, provider: CallProvider, credentials, public_url: str | None, call,
                 timings: Timings = Timings(), unusable: str | None = None) -> DialOutcome:
    """Ask the provider for a call this worker has claimed, and record the answer. `unusable`: why there are
    no credentials to dial with."""
    if credentials is None:
        _record_refusal(uow, call.id, unusable or NO_CREDENTIALS)
        return DialOutcome("errored")
    try:
        remote = provider.create_call(credentials, call.msisdn, outgoing_params(call, public_url))
    except ProviderRefused as refusal:
        _record_refusal(uow, call.id, refusal.message)
        return DialOutcome("errored")
    except (ProviderRateLimited, ProviderUnreachable) as error:
        retry_in = timings.retry_after_rate_limit if isinstance(error, ProviderRateLimited) else timings.retry_after_unreachable
        log.info("phone call %s not dialed (%s); retrying in %ss", call.id, type(error).__name__, retry_in)
        with uow:
            uow.phone_calls.release_claim(call.id, retry_in, count_attempt=False)
            uow.commit()
        return DialOutcome("retry", retry_in)
    except OutcomeUnknown as error:
        log.warning("phone call %s: outcome of the dial is unknown: %s", call.id, error)
        return DialOutcome("unknown")
    except Exception:  # whatever else a provider adapter lets through: the claim waits for reconciliation
        log.exception("phone call %s: the dial failed unexpectedly; its outcome is left to reconciliation", call.id)
        return DialOutcome("unknown")
    try:
        _record_remotely_queued(uow, call.id, remote)
    except ValidationFailed:  # the provider answered with the sid of a call another phone call holds
        _record_refusal(uow, call.id, DUPLICATE_SID)
        return DialOutcome("errored")
    return DialOutcome("remotely_queued")


def _record_refusal(uow, phone_call_id: int, message: str) -> None:
    with uow:
        uow.phone_calls.record_dial(phone_call_id, refusal=message)
        uow.commit()


def _record_remotely_queued(uow, phone_call_id: int, remote: RemoteCall) -> None:
    with uow:
        uow.phone_calls.record_dial(phone_call_id, remote=remote)
        uow.commit()


def reconcile_unknown_outcome(uow_for, provider: CallProvider, provider_defaults: dict, phone_call_id: int,
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
    claimed_at = call.dial_claimed_at
    try:
        credentials = credentials_for(account, provider_defaults)
        if credentials is None:
            raise ProviderRefused(NO_CREDENTIALS)
        listed = provider.find_calls(credentials, call.msisdn)
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
            uow.phone_calls.known_remote_call_ids([remote.sid for remote in listed]),
            uow.phone_calls.open_claims_to(call.msisdn, excluding=call.id), now)
        if settlement.action == "adopt":
            _adopt(uow, call, settlement.remote, now)
        elif settlement.action == "dial_again":
            log.info("phone call %s: the provider made no call to %s for it; dialing again", phone_call_id,
                     call.msisdn)
            uow.phone_calls.release_claim(phone_call_id, 0, count_attempt=False)
        elif settlement.action == "error":
            call.fire("error")
            call.remote_error_message = f"{UNKNOWN_OUTCOME}; {settlement.reason}"
            uow.phone_calls.save(call)
        else:
            log.info("phone call %s: %s; asking again later", phone_call_id, settlement.reason)
        uow.commit()
    return settlement.action.replace("_", " ")


def _claim_is_stale(call, timings: Timings, now: datetime) -> bool:
    """A claim whose dial outcome is still unknown after the grace for its status callback."""
    return _outcome_unknown(call) and now - call.dial_claimed_at >= timedelta(seconds=timings.unknown_outcome_grace)


def _outcome_unknown(call) -> bool:
    return call.status == sm.PhoneCallStatus.QUEUED.value and call.dial_claimed_at is not None and not call.remote_call_id


def _adopt(uow, call, remote: RemoteCall, now: datetime) -> None:
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


def _give_up(uow, phone_call_id: int, claimed_at: datetime, message: str, now: datetime) -> str:
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


def fetch_remote_call(uow, provider: CallProvider, provider_defaults: dict, phone_call_id: int) -> str:
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
    return call.status


def _now() -> datetime:
    return datetime.now(timezone.utc)

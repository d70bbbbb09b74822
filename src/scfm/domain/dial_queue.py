"""The dial queue: queued phone calls waiting for a dialer, and the claims a dialer holds on them.

A call is claimed (its claim committed) before the provider is asked, so it is dialed at most once; what the
provider answered is then recorded, or the claim is put back when nothing reached the provider. A claim
nobody recorded an answer for has an unknown outcome, which the sweeper has reconciled. Every status the
queue reads or writes comes from `scfm.domain.state_machines`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from scfm.domain.model import PhoneCall
from scfm.domain.ports import RemoteCall


@dataclass(frozen=True)
class Claim:
    """A claimed call, and what the dialer checks before dialing it: its callout's effective call plan (None
    when it has none) and the time zone its contact's metadata names (when it names one)."""
    call: PhoneCall
    call_plan: dict[str, Any] | None = None
    contact_time_zone: Any = None


@dataclass(frozen=True)
class PlannedCallout:
    """A running callout with a call plan, locked for one run of the plan's runner."""
    callout_id: int
    account_id: int
    call_plan: dict[str, Any]
    calls_per_second: float | None


@dataclass(frozen=True)
class CallsToMake:
    """What the runner asks of the queue for one callout: calls for its unfinished participations with none
    in flight, the first due `now`, a retry after its ladder's delay from the end of the last call."""
    remote_request_params: dict[str, Any]
    retries: dict[str, tuple[int, ...]]  # outcome -> ladder of delays; only these outcomes are retried
    max_attempts: int  # calls that reached the provider
    max_calls: int  # calls in all, those that dialed nothing too
    horizon_seconds: float  # retries due later than now + this are made later
    limit: int


class DialQueue(Protocol):
    # -- the dialer (`now`: the dialer's wall clock)
    def accounts_with_due_calls(self, now: datetime) -> list[int]:
        """Accounts with a call due for dialing now (unclaimed, its next attempt due)."""

    def due_exists(self, account_id: int, now: datetime) -> bool:
        """Whether the account has a call due that is not held back (its callout paused or stopped)."""

    def in_flight_count(self, account_id: int) -> int:
        """The account's calls being dialed, queued at the provider or ringing (its max_calls_in_flight)."""

    def claim_due(self, account_id: int, now: datetime, limit: int) -> list[Claim]:
        """Claim up to `limit` of the account's due calls, in order, in one statement; concurrent dialers skip
        each other's. The claim clears waiting_for_window (a call put back until its window opens is claimed in
        it, or put back again)."""

    def release(self, phone_call_ids: list[int]) -> None:
        """Give claimed calls back untouched, as if never claimed (a dialer stopping with claims it did not
        dial): no attempt counted, their place in the queue kept."""

    def put_back_until(self, phone_call_id: int, at: datetime) -> None:
        """Give a claimed call back until its window opens: waiting_for_window, and no attempt counted."""

    def end_expired(self, phone_call_id: int, message: str) -> None:
        """A claimed call past its plan's not_after ends expired, saying why (if still dialable)."""

    def record_remotely_queued(self, phone_call_id: int, remote: RemoteCall) -> None:
        """The provider made the call. Only a call still dialable moves: a status callback may have taken it
        further already. A sid another phone call holds is a ValidationFailed."""

    def record_many_remotely_queued(self, records: list[tuple[int, RemoteCall]]) -> None:
        """record_remotely_queued for many calls in one statement: a sid another phone call holds is a
        ValidationFailed, and nothing is recorded."""

    def record_refusal(self, phone_call_id: int, message: str) -> None:
        """The provider refused the call (or it cannot be made): it ends errored, saying why."""

    def put_back(self, phone_call_id: int, retry_in_seconds: float, count_attempt: bool = True) -> None:
        """Give a claimed call back to the dialers: nothing reached the provider."""

    # -- the sweeper and the reconciliation
    def claims_to_reconcile(self, older_than_seconds: float, ask_again_in_seconds: float,
                            limit: int = 1000) -> list[int]:
        """Claims that never heard back (their outcome is unknown) due to be asked about; each is then found
        again only after `ask_again_in_seconds`."""

    def open_claims_to(self, msisdn: str, excluding: int) -> list[datetime]:
        """When the other open claims to this number (of any account) were made."""

    def known_remote_call_ids(self, sids: list[str]) -> set[str]:
        """Which of these provider call sids a phone call here holds."""

    def silent_calls(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        """Calls at the provider with no news from it for a while."""

    def expire(self, ids: list[int], message: str) -> int:
        """End these calls, if still at the provider, as errored with `message`."""

    def queue_remote_fetches(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        """Mark for a fetch the calls awaiting news silent for a while and not asked about for as long, and
        the fetches marked that long ago that never ran."""

    # -- the call plans' runner (services/call_plans.py)
    def planned_callouts(self, after_id: int = 0, limit: int = 1000) -> list[int]:
        """Running callouts with an effective call plan and a participation not finished, by id after
        `after_id`."""

    def lock_planned_callout(self, callout_id: int) -> PlannedCallout | None:
        """The callout, locked for this transaction, if it is running with a plan (None when another runner
        holds it: that one does the work)."""

    def expire_queued_calls(self, callout_id: int, message: str) -> int:
        """The callout's queued calls no dialer has claimed end expired, saying why."""

    def finish_participations(self, callout_id: int, now: datetime, retried: list[str], max_attempts: int,
                              max_calls: int) -> int:
        """Write the outcome of the unfinished participations whose last call ended and is not to be retried:
        completed, an outcome not in `retried`, or `max_attempts` dialed or `max_calls` made."""

    def expire_participations(self, callout_id: int, now: datetime) -> int:
        """Unfinished participations with no call in flight end with the outcome expired."""

    def calls_ahead(self, callout_id: int, now: datetime, horizon_seconds: float, limit: int) -> int:
        """The callout's calls waiting for a dialer, due within the horizon (counted up to `limit`)."""

    def make_calls(self, callout_id: int, account_id: int, now: datetime, calls: CallsToMake) -> int:
        """Queue the calls `calls` says, one per participation at most, never a second in flight."""

    def reopen_expired(self, callout_id: int) -> int:
        """Participations that ended expired are open again (the callout's plan changed: maybe its not_after)."""


# -- what else a dialer needs
class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime:
        """The wall clock (aware, UTC): what is due, calling windows, expiry."""

    def sleep(self, seconds: float) -> None: ...


class RateLimiter(Protocol):
    """Evenly spaced slots per provider account, shared by every dialer."""

    def reserve(self, name: str, per_second: float) -> float:
        """Seconds to wait for the next slot of `name`."""

    def penalize(self, name: str, seconds: float) -> None:
        """No slot of `name` for `seconds` (the provider said 429)."""

    def reserve_share(self, name: str, tenant: str, asked_per_second: float, allowed_per_second: float) -> float:
        """Seconds to wait for the tenant's next slot of its share of `name`, a provider account that allows
        `allowed_per_second` to the tenants dialing on it, in proportion to what each asks."""

    def leave_share(self, name: str, tenant: str) -> None: ...


class Leases(Protocol):
    """Short leases that a holder renews while it works; a dead holder's lease runs out."""

    def acquire(self, name: str, token: str, seconds: float) -> bool:
        """Take the lease, or renew it if `token` holds it."""

    def release(self, name: str, token: str) -> None: ...


class WakeUps(Protocol):
    """Hints that an account's calls were just queued (the database is scanned anyway)."""

    def wake(self, account_id: int) -> None: ...

    def take(self) -> list[int]: ...


# What became of a claimed call's dial: types, not strings.
@dataclass(frozen=True)
class RemotelyQueued:
    remote: RemoteCall


@dataclass(frozen=True)
class Refused:
    message: str


@dataclass(frozen=True)
class Retry:
    """Nothing reached the provider (rate limited, unreachable): put back for `retry_in` seconds."""
    retry_in: float
    rate_limited: bool


@dataclass(frozen=True)
class Unknown:
    """The request may have reached the provider: left to the status callback or the reconciliation."""
    reason: str


@dataclass(frozen=True)
class TooLate:
    """The slot came too late after the claim (a reconciliation may be asking already), or the dialing stopped
    while the call waited for another slot: put back unsent."""


@dataclass(frozen=True)
class OutsideWindow:
    """The call's window is closed for its contact: put back, unsent and uncounted, until it opens."""
    opens_at: datetime


@dataclass(frozen=True)
class Expired:
    """The call's plan says not after now: it ends expired, unsent."""
    message: str


DialOutcome = RemotelyQueued | Refused | Retry | Unknown | TooLate | OutsideWindow | Expired

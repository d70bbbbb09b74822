"""The dial queue: queued phone calls waiting for a dialer, and the claims a dialer holds on them.

A call is claimed (its claim committed) before the provider is asked, so it is dialed at most once; what the
provider answered is then recorded, or the claim is put back when nothing reached the provider. A claim
nobody recorded an answer for has an unknown outcome, which the sweeper has reconciled. Every status the
queue reads or writes comes from `scfm.domain.state_machines`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from scfm.domain.model import PhoneCall
from scfm.domain.ports import RemoteCall


class DialQueue(Protocol):
    # -- the dialer
    def accounts_with_due_calls(self) -> list[int]:
        """Accounts with a call due for dialing now (unclaimed, its next attempt due)."""

    def due_exists(self, account_id: int) -> bool:
        """Whether the account has a call due that is not held back (its callout paused or stopped)."""

    def in_flight_count(self, account_id: int) -> int:
        """The account's calls being dialed, queued at the provider or ringing (its max_calls_in_flight)."""

    def claim_next_due(self, account_id: int) -> PhoneCall | None:
        """Claim the account's next due call, in order; concurrent dialers skip each other's."""

    def record_remotely_queued(self, phone_call_id: int, remote: RemoteCall) -> None:
        """The provider made the call. Only a call still dialable moves: a status callback may have taken it
        further already. A sid another phone call holds is a ValidationFailed."""

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


# -- what else a dialer needs
class Clock(Protocol):
    def monotonic(self) -> float: ...

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
    """The slot came too late after the claim: put back unsent (a reconciliation may be asking already)."""


DialOutcome = RemotelyQueued | Refused | Retry | Unknown | TooLate

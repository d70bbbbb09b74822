"""The rules of dialing: how fast, how many at once, how long to wait for news."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from scfm.domain.model import Account
from scfm.domain.ports import RemoteCall

DEFAULT_CALLS_PER_SECOND = 1.0  # Twilio's and Somleng's default per account
# Slots are spaced a little wider than the rate: requests leave a few milliseconds apart from their slots,
# and the provider counts arrivals, so exact spacing would now and then put rate + 1 calls in one second.
SPACING_MARGIN = 1.04
# A dialer claims an account's calls this many seconds ahead, in one statement (at most MAX_CLAIM_BATCH): one
# claim per call costs a statement and its triggers each time and would make claims the bottleneck at 200/s.
CLAIM_AHEAD = 0.1
MAX_CLAIM_BATCH = 50


@dataclass(frozen=True)
class DialingPolicy:
    calls_per_second: float
    max_calls_in_flight: int | None

    @classmethod
    def for_account(cls, account: Account) -> "DialingPolicy":
        return cls(account.calls_per_second or DEFAULT_CALLS_PER_SECOND, account.max_calls_in_flight)

    def within(self, max_rate: float, max_in_flight: int) -> "DialingPolicy":
        """Within the server's ceilings (an account may have been set before they were)."""
        return DialingPolicy(min(self.calls_per_second, max_rate),
                             min(self.max_calls_in_flight or max_in_flight, max_in_flight))

    @property
    def slots_per_second(self) -> float:
        return self.calls_per_second / SPACING_MARGIN

    @property
    def interval(self) -> float:
        """Seconds between two dials: calls are spaced evenly, never in bursts."""
        return 1.0 / self.slots_per_second

    @property
    def concurrency(self) -> int:
        """Dials at once: a thread's claim, request and record may take 200 ms on a busy machine (many accounts
        dialing in one process), and every slot must find a thread waiting for it."""
        return min(32, 1 + math.ceil(self.calls_per_second / 5))

    @property
    def claim_batch(self) -> int:
        """Calls claimed at once: about CLAIM_AHEAD seconds of the rate, so that a pause or a stop leaves few
        claimed calls to be dialed."""
        return max(1, min(MAX_CLAIM_BATCH, math.ceil(self.calls_per_second * CLAIM_AHEAD)))


@dataclass(frozen=True)
class Timings:
    """Bounds the dialer and the sweeper work with (seconds)."""

    retry_after_rate_limit: float = 2.0
    retry_after_unreachable: float = 10.0
    unknown_outcome_grace: float = 15 * 60.0  # a claimed call with no answer: wait for a callback this long
    reconcile_interval: float = 60.0  # then ask the provider about it, and again after this while unanswered
    fetch_after_silence: float = 10 * 60.0  # no news of a remotely queued or ringing call: ask the provider
    expire_after_silence: float = 6 * 3600.0  # still no end: give up on it
    stalled_batch_operation: float = 120.0  # queued but not started, or running with no worker, for this long
    dispatcher_lease: float = 20.0  # a dialer renews its lease on an account; a killed one's runs out after this
    dialer_scan: float = 2.0  # a dialer looks for accounts with due calls this often (and when woken up)


# ---------------------------------------------------------------- unknown outcomes

CLOCK_SKEW = timedelta(minutes=2)  # between our clock and the provider's


@dataclass(frozen=True)
class Settlement:
    """What to do with a claim whose outcome is unknown, from the provider's list of calls to its number."""

    action: str  # adopt, dial_again, ask_again, error
    remote: RemoteCall | None = None
    reason: str = ""


def settle_unknown_outcome(claimed_at: datetime, grace_seconds: float, listed: list[RemoteCall],
                           known_sids: set[str], rival_claims: list[datetime], now: datetime) -> Settlement:
    """`listed`: the provider's calls to the number; `known_sids`: those a phone call here holds;
    `rival_claims`: when the other calls to the number whose outcome is open (unknown, or being dialed) were
    claimed. A claim's request leaves within half the grace (the dialer gives up a later slot), so a call
    it made was created between the claim (less the clocks' skew) and the grace after it.

    Nobody is called twice: a call is dialed again only when the provider made no call that could be its
    own, and a call that could be another open claim's is never adopted."""
    window = timedelta(seconds=grace_seconds)
    unknown = [call for call in listed if call.sid not in known_sids]
    if any(call.created_at is None for call in unknown):
        return Settlement("error", reason="the provider lists a call to this number whose creation time cannot be read")
    mine = [call for call in unknown
            if call.created_at is not None and claimed_at - CLOCK_SKEW <= call.created_at <= claimed_at + window]
    if not mine:
        return Settlement("dial_again")
    rivals = [at for at in rival_claims if abs(at - claimed_at) <= window + CLOCK_SKEW]
    if any(now - at < window for at in rivals):
        return Settlement("ask_again", reason="another call to this number is being dialed")
    if rivals:
        return Settlement("error", reason=f"another call to this number has an unknown outcome too, and the provider "
                                          f"lists {len(mine)} call(s) it cannot tell apart: "
                                          f"{', '.join(call.sid for call in mine)}")
    if len(mine) > 1:
        return Settlement("error", reason=f"the provider lists {len(mine)} calls to this number since, none known "
                                          f"here: {', '.join(call.sid for call in mine)}")
    return Settlement("adopt", mine[0])

"""The dialing rules: the policy, and how a claim whose outcome is unknown is settled."""
from datetime import datetime, timedelta, timezone

import pytest

from scfm.domain.dialing import DialingPolicy, SPACING_MARGIN, settle_unknown_outcome
from scfm.domain.ports import RemoteCall

CLAIMED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
GRACE = 900.0
NOW = CLAIMED + timedelta(seconds=GRACE + 60)


def remote(sid: str, seconds_after_claim: float | None) -> RemoteCall:
    created = None if seconds_after_claim is None else CLAIMED + timedelta(seconds=seconds_after_claim)
    return RemoteCall(sid=sid, status="completed", direction="outbound-api", duration=10, created_at=created)


def settle(listed, known=(), rivals=(), now=NOW):
    return settle_unknown_outcome(CLAIMED, GRACE, list(listed), set(known), list(rivals), now)


def test_the_one_call_no_phone_call_knows_is_adopted():
    settlement = settle([remote("CAknown", 1), remote("CAmine", 2)], known={"CAknown"})
    assert settlement.action == "adopt" and settlement.remote.sid == "CAmine"


@pytest.mark.parametrize("listed", [
    [],
    [remote("CAknown", 1)],  # another phone call's
    [remote("CAold", -3600)],  # an hour before the claim: not this claim's
    [remote("CAlater", GRACE + 200)],  # made after this claim's request could have left
])
def test_no_call_that_could_be_this_claims_means_dial_again(listed):
    assert settle(listed, known={"CAknown"}).action == "dial_again"


def test_the_clocks_may_differ_by_two_minutes():
    assert settle([remote("CAmine", -100)]).action == "adopt"
    assert settle([remote("CAmine", -130)]).action == "dial_again"


def test_two_calls_no_phone_call_knows_cannot_be_told_apart():
    settlement = settle([remote("CAa", 1), remote("CAb", 2)])
    assert settlement.action == "error" and "lists 2 calls" in settlement.reason and "CAa" in settlement.reason


def test_a_call_whose_creation_time_cannot_be_read_is_never_assumed_absent():
    assert settle([remote("CAunreadable", None)]).action == "error"
    assert settle([remote("CAunreadable", None), remote("CAmine", 1)]).action == "error"


def test_a_call_another_open_claim_may_have_made_is_not_adopted():
    # the other claim is being dialed now: its call may be this one; wait for it to settle
    fresh = settle([remote("CAx", 5)], rivals=[NOW - timedelta(seconds=3)])
    assert fresh.action == "ask_again"
    # the other claim's outcome is unknown too: neither can tell which call is whose
    stale = settle([remote("CAx", 5)], rivals=[CLAIMED + timedelta(seconds=1)])
    assert stale.action == "error" and "unknown outcome too" in stale.reason
    # a claim of another day is no rival
    assert settle([remote("CAx", 5)], rivals=[CLAIMED - timedelta(days=1)]).action == "adopt"


def test_with_no_unknown_call_rivals_do_not_hold_a_dial_back():
    assert settle([], rivals=[NOW - timedelta(seconds=3)]).action == "dial_again"


def test_the_policy_spaces_calls_a_little_wider_than_the_rate():
    policy = DialingPolicy(100.0, None)
    assert policy.interval == pytest.approx(SPACING_MARGIN / 100)
    assert policy.concurrency == 21 and DialingPolicy(1.0, None).concurrency == 2

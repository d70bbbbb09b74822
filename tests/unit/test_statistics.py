"""The pure parts of callout statistics: raw states read as states, the median of a histogram, calling windows
and the estimate of when a callout finishes."""
from datetime import datetime, timedelta, timezone

import pytest

from scfm.domain import state_machines as sm
from scfm.domain.model import Account, Callout
from scfm.services.statistics import (
    DONE, IN_FLIGHT, QUEUED_STATE, STATES, TO_CALL, WAITING_FOR_WINDOW, CalloutWork, StateCount, _tally,
    account_rate, classify, finishes_at, median, parse_window,
)

UTC = timezone.utc
ALL_STATUSES = [status.value for status in sm.PhoneCallStatus]


@pytest.mark.parametrize("planned", [False, True])
def test_every_raw_state_is_in_exactly_one_state(planned):
    raws = ["none"] + [f"{kind}:{status}" for kind in ("call", "window", "outcome") for status in ALL_STATUSES]
    for raw in raws:
        state, outcome = classify(raw, planned)
        assert state in STATES
        assert (outcome is not None) == (state == DONE), raw


def test_raw_states_without_and_with_a_call_plan():
    assert classify("none", False) == (TO_CALL, None)
    assert classify("call:created", False) == (TO_CALL, None)
    assert classify("call:queued", False) == (QUEUED_STATE, None)
    assert classify("window:queued", False) == (WAITING_FOR_WINDOW, None)
    assert classify("call:in_progress", False) == (IN_FLIGHT, None)
    assert classify("call:remote_fetch_queued", False) == (IN_FLIGHT, None)
    assert classify("call:busy", False) == (DONE, "busy")
    assert classify("call:busy", True) == (TO_CALL, None)  # the plan may retry it
    assert classify("call:completed", True) == (DONE, "completed")  # answered: done, plan or not
    assert classify("outcome:expired", True) == (DONE, "expired")
    assert classify("window:in_progress", False) == (IN_FLIGHT, None)  # the flag counts on a queued call only


def test_median_of_a_histogram_is_exact():
    assert median({}) is None
    assert median({7: 1}) == 7
    assert median({1: 1, 2: 1}) == 1.5
    assert median({1: 2, 10: 1}) == 1
    values = [3, 3, 5, 8, 8, 8, 13, 40]
    histogram = {value: values.count(value) for value in set(values)}
    assert median(histogram) == (8 + 8) / 2
    assert median({5: 0, 9: 3}) == 9


def _work(status, planned, **counts):
    return CalloutWork(Callout(id=1, status=status), planned,
                       {raw: StateCount(*value) for raw, value in counts.items()})


def test_the_tally_adds_up_and_the_answer_rate_counts_attempts_that_ended():
    work = _work("running", False, **{"none": (2, 0, 0), "call:in_progress": (1, 1, 1),
                                      "call:completed": (3, 4, 4), "call:busy": (1, 2, 2)})
    now = datetime(2026, 1, 5, 10, 30, 15, tzinfo=UTC)
    minute = now.replace(second=0)
    result = _tally([work], {20: 2, 40: 1}, {minute: 4, minute - timedelta(minutes=2): 1}, now, 3)
    assert result.participations == 7 and sum(result.states.values()) == 7
    assert result.states == {TO_CALL: 2, WAITING_FOR_WINDOW: 0, QUEUED_STATE: 0, IN_FLIGHT: 1, DONE: 4}
    assert result.outcomes["completed"] == 3 and result.outcomes["busy"] == 1
    assert (result.attempts, result.answered, result.answer_rate) == (7, 3, 0.5)  # 3 answered of 6 ended
    assert result.duration == {"answered_calls": 3, "median_seconds": 20, "total_seconds": 80}
    assert [entry["calls"] for entry in result.calls_per_minute] == [1, 0, 4]
    assert result.finished is False


def test_what_a_callout_still_dials():
    assert _work("running", False, **{"none": (5, 0, 0), "call:queued": (2, 2, 0)}).calls_left() == 2
    planned = _work("initialized", True, **{"none": (5, 0, 0), "window:queued": (1, 1, 0)})
    assert planned.calls_left() == 6 and not planned.dials_on_its_own()
    assert not _work("paused", False).dials_on_its_own()
    assert _work("initialized", False).dials_on_its_own()


def test_windows_in_their_time_zone():
    window = parse_window({"time_zone": "Asia/Phnom_Penh", "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                           "from": "08:00", "to": "20:00"})
    assert window is not None and window.days == frozenset(range(6))
    # Saturday 19:00 in Phnom Penh (UTC+7): one hour left, then Monday 08:00
    start = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)
    intervals = window.open_intervals(start)
    assert next(intervals) == (start, datetime(2026, 1, 3, 13, 0, tzinfo=UTC))
    assert next(intervals) == (datetime(2026, 1, 5, 1, 0, tzinfo=UTC), datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    # 2 hours of calls at 1 per second: one hour on Saturday, one on Monday morning
    assert finishes_at(start, 7200, 1.0, window, None) == datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    assert finishes_at(start, 7200, 1.0, None, None) == start + timedelta(hours=2)
    # a not_after before then: the rest expires
    not_after = datetime(2026, 1, 4, tzinfo=UTC)
    assert finishes_at(start, 7200, 1.0, window, not_after) == not_after
    assert parse_window(None) is None and parse_window({}) is None
    assert parse_window({"time_zone": "UTC", "from": "8 o'clock", "to": "20:00"}) is None


def test_a_window_across_a_daylight_saving_change():
    # New York springs forward on 2026-03-08: 08:00-20:00 local is 13:00-01:00 UTC on the 7th, 12:00-00:00 on the 8th
    window = parse_window({"time_zone": "America/New_York", "days": ["sat", "sun"], "from": "08:00", "to": "20:00"})
    assert window is not None
    intervals = list(zip(range(2), window.open_intervals(datetime(2026, 3, 7, 0, 0, tzinfo=UTC))))
    assert [interval for _, interval in intervals] == [
        (datetime(2026, 3, 7, 13, 0, tzinfo=UTC), datetime(2026, 3, 8, 1, 0, tzinfo=UTC)),
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 0, 0, tzinfo=UTC))]


def test_the_account_rate_within_the_server_ceilings():
    assert account_rate(Account(id=1), {}) == 1.0
    assert account_rate(Account(id=1, calls_per_second=20), {"SCFM_MAX_CALLS_PER_SECOND": "5"}) == 5.0

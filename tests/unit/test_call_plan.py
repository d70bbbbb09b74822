"""Call plans: parsing with errors naming the field, ladders, the cap, and windows across daylight saving."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from scfm.domain.call_plan import CallPlan, Window, contact_zone
from scfm.domain.errors import ValidationFailed

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WORKDAYS = {"time_zone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
            "from": "08:00", "to": "20:00"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def _error(value, cap=10) -> dict:
    with pytest.raises(ValidationFailed) as raised:
        CallPlan.parse(value, cap)
    return raised.value.errors


def test_a_full_plan_parses():
    plan = CallPlan.parse({"remote_request_params": {"from": "1234", "url": "https://example.com/a.xml"},
                           "max_attempts": 4, "retries": {"busy": [300, 1800, 7200], "not_answered": 600},
                           "window": WORKDAYS, "not_after": "2026-12-01T18:00:00Z"})
    assert plan.max_attempts == 4 and plan.retries == {"busy": (300, 1800, 7200), "not_answered": (600,)}
    assert plan.not_after == utc(2026, 12, 1, 18)
    assert plan.window is not None and plan.window.opens == 8 * 60 and plan.window.closes == 20 * 60


@pytest.mark.parametrize("value, field", [
    ({"retries": {"busy": "soon"}}, "call_plan[retries][busy]"),
    ({"retries": {"busy": [-1]}}, "call_plan[retries][busy]"),
    ({"retries": {"completed": [60]}}, "call_plan[retries][completed]"),
    ({"max_attempts": 11}, "call_plan[max_attempts]"),
    ({"max_attempts": 0}, "call_plan[max_attempts]"),
    ({"max_attempts": True}, "call_plan[max_attempts]"),
    ({"window": {**WORKDAYS, "time_zone": "Mars/Olympus"}}, "call_plan[window][time_zone]"),
    ({"window": {**WORKDAYS, "time_zone": "../../etc/passwd"}}, "call_plan[window][time_zone]"),
    ({"window": {**WORKDAYS, "days": ["someday"]}}, "call_plan[window][days]"),
    ({"window": {**WORKDAYS, "days": []}}, "call_plan[window][days]"),
    ({"window": {**WORKDAYS, "from": "8am"}}, "call_plan[window][from]"),
    ({"window": {**WORKDAYS, "to": "07:00"}}, "call_plan[window][to]"),
    ({"window": {**WORKDAYS, "to": "24:01"}}, "call_plan[window][to]"),
    ({"not_after": "tomorrow"}, "call_plan[not_after]"),
    ({"not_after": "2026-12-01T18:00:00"}, "call_plan[not_after]"),
    ({"remote_request_params": {"to": "+1"}}, "call_plan[remote_request_params]"),
    ({"remote_request_params": {"from": 1}}, "call_plan[remote_request_params][from]"),
    ({"retry": {}}, "call_plan[retry]"),
    ("every day", "call_plan"),
])
def test_a_bad_plan_names_the_field(value, field):
    assert field in _error(value)


def test_the_operator_cap_bounds_the_plan_and_the_runner():
    assert "call_plan[max_attempts]" in _error({"max_attempts": 5}, cap=4)
    plan = CallPlan.parse({"max_attempts": 8})
    assert plan.attempts_allowed(cap=10) == 8
    assert plan.attempts_allowed(cap=3) == 3  # the operator lowered the cap after the plan was stored
    assert CallPlan.parse({}).attempts_allowed(cap=10) == 3 and CallPlan.parse({}).attempts_allowed(cap=2) == 2


def test_the_ladder_steps_and_repeats_its_last_delay():
    plan = CallPlan.parse({"retries": {"busy": [300, 1800, 7200], "failed": []}})
    assert [plan.delay_after("busy", n) for n in (1, 2, 3, 4, 9)] == [300, 1800, 7200, 7200, 7200]
    assert plan.delay_after("failed", 1) is None and plan.delay_after("not_answered", 1) is None


def test_a_window_contains_its_hours_on_its_days_only():
    window = Window.parse(WORKDAYS)
    assert window.contains(utc(2026, 12, 1, 7), BERLIN)  # Tuesday 08:00 in Berlin (UTC+1)
    assert not window.contains(utc(2026, 12, 1, 6, 59), BERLIN)
    assert not window.contains(utc(2026, 12, 1, 19), BERLIN)  # 20:00: closed
    assert not window.contains(utc(2026, 12, 6, 12), BERLIN)  # a Sunday
    assert window.next_opening(utc(2026, 12, 5, 20), BERLIN) == utc(2026, 12, 7, 7)  # Saturday night -> Monday
    assert window.next_opening(utc(2026, 12, 1, 12), BERLIN) == utc(2026, 12, 1, 12)  # open now


def test_the_window_moves_with_daylight_saving_in_berlin():
    window = Window.parse(WORKDAYS)
    # Saturday 28 March 2026 after hours: Monday opens at 08:00 CEST, 06:00 UTC (it was 07:00 UTC the week before)
    assert window.next_opening(utc(2026, 3, 28, 20), BERLIN) == utc(2026, 3, 30, 6)
    assert window.next_opening(utc(2026, 3, 21, 20), BERLIN) == utc(2026, 3, 23, 7)
    # autumn: back to UTC+1 on Sunday 25 October
    assert window.next_opening(utc(2026, 10, 24, 20), BERLIN) == utc(2026, 10, 26, 7)


def test_an_opening_in_the_spring_gap_is_the_transition_and_in_the_autumn_hour_the_first():
    night = Window.parse({"time_zone": "America/New_York", "from": "02:30", "to": "05:00"})
    # 8 March 2026: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never happens, so the window opens at 03:00
    assert night.next_opening(utc(2026, 3, 8, 5), NEW_YORK) == utc(2026, 3, 8, 7)
    # 1 November 2026: 01:00-02:00 comes twice; 02:30 EST is 07:30 UTC
    assert night.next_opening(utc(2026, 11, 1, 4), NEW_YORK) == utc(2026, 11, 1, 7, 30)
    early = Window.parse({"time_zone": "America/New_York", "from": "01:30", "to": "05:00"})
    assert early.next_opening(utc(2026, 11, 1, 4), NEW_YORK) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first


def test_the_contacts_zone_comes_from_its_metadata_then_its_number_then_the_window():
    window = Window.parse({"time_zone": "Europe/Moscow", "from": "09:00", "to": "18:00"})
    assert contact_zone("Asia/Tokyo", "+12125551234", window) == ZoneInfo("Asia/Tokyo")
    assert contact_zone("Not/AZone", "+12125551234", window) == NEW_YORK  # New York's area code
    assert contact_zone(None, "+13105551234", window) == ZoneInfo("America/Los_Angeles")
    assert contact_zone(None, "+74232123456", window) == ZoneInfo("Asia/Vladivostok")  # Russia: by its region
    assert contact_zone(None, "+79161234567", window) == ZoneInfo("Europe/Moscow")  # a mobile: many zones
    assert contact_zone(None, "+61212345678", window) == ZoneInfo("Australia/Sydney")
    assert contact_zone(None, None, window) == ZoneInfo("Europe/Moscow")


def test_a_contact_in_another_zone_is_in_its_own_hours():
    window = Window.parse({"time_zone": "America/New_York", "from": "09:00", "to": "17:00"})
    los_angeles = contact_zone(None, "+13105551234", window)
    noon_in_new_york = utc(2026, 12, 1, 17)  # 09:00 in Los Angeles
    assert window.contains(utc(2026, 12, 1, 14), NEW_YORK) and not window.contains(utc(2026, 12, 1, 14), los_angeles)
    assert not window.contains(utc(2026, 12, 1, 16, 59), los_angeles)
    assert window.next_opening(utc(2026, 12, 1, 14), los_angeles) == noon_in_new_york


def test_what_is_stored_is_one_spelling_of_the_keys_given():
    assert CallPlan.normalize(None) is None
    assert CallPlan.normalize({"max_attempts": "4", "retries": {"busy": ["300", "1800"], "failed": None},
                               "window": None, "not_after": "2026-12-01T18:00:00Z"}) == {
        "max_attempts": 4, "retries": {"busy": [300, 1800], "failed": []}, "window": None,
        "not_after": "2026-12-01T18:00:00+00:00"}
    assert CallPlan.normalize({"window": {**WORKDAYS, "days": ["SAT", "mon"]}})["window"] == {
        "time_zone": "Europe/Berlin", "days": ["mon", "sat"], "from": "08:00", "to": "20:00"}

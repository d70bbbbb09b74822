"""The dialer's guard: a call of a plan is dialed only inside its contact's window and before not_after."""
from datetime import datetime, timezone

import pytest

from scfm.domain.dialing import SPACING_MARGIN

from tests.unit.dialing_fakes import FakeClock, InMemoryDialQueue
from tests.unit.test_dispatcher import World

WINDOW = {"time_zone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00"}
NEW_YORK_NUMBER = "+12125551234"


def world_at(instant: datetime) -> World:
    world = World()
    world.clock = FakeClock(instant)
    world.queue = InMemoryDialQueue(world.clock)
    world.limiter.clock = world.provider.clock = world.clock
    world.account(1, calls_per_second=10)
    return world


def test_a_call_outside_its_contacts_window_is_put_back_to_its_opening_uncounted_and_unslotted():
    # Tuesday 1 December 2026, 14:00 UTC: 15:00 in Berlin, 09:00 in New York, 06:00 in Los Angeles
    world = world_at(datetime(2026, 12, 1, 14, tzinfo=timezone.utc))
    inside = world.queue.queue(1, NEW_YORK_NUMBER, {"window": WINDOW})
    too_early = world.queue.queue(1, "+13105551234", {"window": WINDOW})  # Los Angeles by its number
    named = world.queue.queue(1, "+4930123456", {"window": WINDOW}, contact_time_zone="Asia/Tokyo")  # 23:00
    assert world.dispatcher().drain() == {"RemotelyQueued": 1, "OutsideWindow": 2}
    assert [to for _at, to in world.provider.creates] == [NEW_YORK_NUMBER]
    assert world.queue.calls[inside.id].status == "remotely_queued"
    early = world.queue.calls[too_early.id]
    assert (early.status, early.waiting_for_window, early.dial_attempts) == ("queued", True, 0)
    assert early.next_attempt_at == datetime(2026, 12, 1, 16, tzinfo=timezone.utc)  # 08:00 in Los Angeles
    assert world.queue.calls[named.id].next_attempt_at == datetime(2026, 12, 1, 23, tzinfo=timezone.utc)
    assert world.limiter.next["AC" + "1" * 32] == pytest.approx(SPACING_MARGIN / 10)  # one slot taken in all
    world.clock.sleep(2 * 3600)  # 16:00 UTC: the window opens in Los Angeles
    assert world.dispatcher().drain() == {"RemotelyQueued": 1}
    assert (early.status, early.waiting_for_window, early.dial_attempts) == ("remotely_queued", False, 1)


def test_a_call_past_its_plans_not_after_ends_expired_undialed():
    world = world_at(datetime(2026, 12, 1, 14, tzinfo=timezone.utc))
    late = world.queue.queue(1, NEW_YORK_NUMBER, {"not_after": "2026-12-01T13:00:00Z"})
    on_time = world.queue.queue(1, "+13105551234", {"not_after": "2026-12-01T15:00:00Z"})
    assert world.dispatcher().drain() == {"Expired": 1, "RemotelyQueued": 1}
    call = world.queue.calls[late.id]
    assert (call.status, call.dial_attempts) == ("expired", 0) and "not_after" in call.remote_error_message
    assert world.queue.calls[on_time.id].status == "remotely_queued"
    assert [to for _at, to in world.provider.creates] == ["+13105551234"]


def test_a_window_that_closes_while_the_call_waits_for_its_slot_puts_it_back():
    # 19:59:59.5 in Berlin, and a slow rate: the second call's slot comes after 20:00
    world = world_at(datetime(2026, 12, 1, 18, 59, 59, 500000, tzinfo=timezone.utc))
    world.account(1, calls_per_second=1)
    first = world.queue.queue(1, "+4930123456", {"window": WINDOW})
    second = world.queue.queue(1, "+4930123457", {"window": WINDOW})
    outcomes = world.dispatcher().drain()
    assert outcomes == {"RemotelyQueued": 1, "OutsideWindow": 1}
    assert world.queue.calls[first.id].status == "remotely_queued"
    assert world.queue.calls[second.id].waiting_for_window
    assert world.queue.calls[second.id].next_attempt_at == datetime(2026, 12, 2, 7, tzinfo=timezone.utc)

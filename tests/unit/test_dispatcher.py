"""The dispatcher on an in-memory dial queue, a fake clock, limiter, leases and provider: no server, no sleep."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from scfm.domain.dialing import SPACING_MARGIN, Timings
from scfm.domain.model import Account
from scfm.domain.ports import OutcomeUnknown, ProviderRateLimited, ProviderRefused, RemoteCall
from scfm.services.dispatcher import MAX_SLOT_LATENESS, NO_CREDENTIALS, Dispatcher, DispatcherSettings, Recorder
from tests.unit.dialing_fakes import (
    Accounts, FakeClock, FakeLeases, FakeLimiter, FakeProvider, FakeUnitOfWork, InMemoryDialQueue,
)

SID = "AC" + "1" * 32


class World:
    def __init__(self, timings: Timings = Timings()):
        self.clock = FakeClock()
        self.queue = InMemoryDialQueue(self.clock)
        self.accounts = Accounts()
        self.limiter = FakeLimiter(self.clock)
        self.leases = FakeLeases()
        self.provider = FakeProvider(self.clock)
        self.timings = timings

    def account(self, id_: int, **fields) -> Account:
        fields = {"twilio_account_sid": SID, "twilio_auth_token": "token", **fields}
        self.accounts.by_id[id_] = Account(id=id_, **fields)
        return self.accounts.by_id[id_]

    def dispatcher(self, defaults: dict | None = None, **timings) -> Dispatcher:
        settings = DispatcherSettings(defaults or {}, "https://scfm.example", replace(self.timings, **timings))
        return Dispatcher(lambda: FakeUnitOfWork(self.accounts, self.queue), self.provider, self.limiter,
                          self.leases, self.clock, settings)


@pytest.fixture
def world() -> World:
    return World()


def test_every_due_call_is_dialed_once_at_the_accounts_rate(world):
    world.account(1, calls_per_second=2)
    calls = [world.queue.queue(1, f"+25266234567{n}") for n in range(5)]
    assert world.dispatcher().drain() == {"RemotelyQueued": 5}
    assert sorted(to for _at, to in world.provider.creates) == sorted(call.msisdn for call in calls)
    stamps = [at for at, _to in world.provider.creates]
    assert all(b - a >= SPACING_MARGIN / 2 - 1e-9 for a, b in zip(stamps, stamps[1:]))
    assert {call.status for call in world.queue.calls.values()} == {"remotely_queued"}
    assert world.dispatcher().drain() == {}  # nothing dialed twice
    assert world.leases.holders == {}  # the lease is given back


def test_a_request_that_would_leave_too_late_for_its_slot_is_not_sent_and_its_call_takes_the_next_slot(world):
    world.account(1, calls_per_second=1)
    calls = [world.queue.queue(1, f"+25266234567{n}") for n in range(2)]
    world.provider.slow = [MAX_SLOT_LATENESS + 0.005, MAX_SLOT_LATENESS - 0.005]
    assert world.dispatcher().drain() == {"RemotelyQueued": 2}
    assert len(world.provider.missed) == 1  # the first request: nothing sent
    assert sorted(to for _at, to in world.provider.creates) == sorted(call.msisdn for call in calls)
    stamps = sorted(at for at, _to in world.provider.creates + world.provider.missed)
    assert all(b - a >= SPACING_MARGIN - MAX_SLOT_LATENESS for a, b in zip(stamps, stamps[1:]))
    assert {call.status for call in world.queue.calls.values()} == {"remotely_queued"}
    assert [call.dial_attempts for call in calls] == [1, 1]


def test_a_request_that_missed_its_slot_once_the_dialing_stopped_is_put_back_unsent_and_uncounted(world):
    world.account(1)
    call = world.queue.queue(1, "+252662345678")
    dispatcher = world.dispatcher()
    create_call = world.provider.create_call

    def stopped_while_late(credentials, to, params, on_time=None):
        dispatcher.dialing[1].stop.set()  # the lease lost, or the dialer told to stop, meanwhile
        return create_call(credentials, to, params, on_time=lambda: False)

    world.provider.create_call = stopped_while_late
    assert dispatcher.drain() == {"TooLate": 1}
    assert world.provider.creates == [] and len(world.provider.missed) == 1
    assert call.status == "queued" and call.dial_claimed_at is None and call.dial_attempts == 0


def test_a_rate_limited_dial_is_put_back_uncounted_and_slows_the_provider_account_down(world):
    world.account(1)

    def answer(n: int) -> None:
        if n == 1:
            raise ProviderRateLimited("429")

    world.provider.answer = answer
    call = world.queue.queue(1, "+252662345678")
    assert world.dispatcher().drain() == {"Retry": 1}
    assert call.status == "queued" and call.dial_claimed_at is None and call.dial_attempts == 0
    assert world.limiter.penalties == [(SID, Timings().retry_after_rate_limit)]
    world.clock.sleep(Timings().retry_after_rate_limit)
    assert world.dispatcher().drain() == {"RemotelyQueued": 1}
    assert call.dial_attempts == 1


def test_an_unknown_outcome_keeps_the_claim_and_is_never_dialed_blindly_again(world):
    world.account(1)
    world.provider.answer = lambda n: (_ for _ in ()).throw(OutcomeUnknown("timeout"))
    call = world.queue.queue(1, "+252662345678")
    assert world.dispatcher().drain() == {"Unknown": 1}
    assert call.status == "queued" and call.dial_claimed_at is not None
    world.clock.sleep(3600)
    assert world.dispatcher().drain() == {} and len(world.provider.creates) == 1


def test_a_refusal_or_no_credentials_errors_the_call_saying_why(world):
    world.account(1)
    world.account(2, twilio_account_sid=None, twilio_auth_token=None)
    world.provider.answer = lambda n: (_ for _ in ()).throw(ProviderRefused("Invalid 'To' Phone Number"))
    refused, uncredentialed = world.queue.queue(1, "+252662345678"), world.queue.queue(2, "+252662345679")
    assert world.dispatcher().drain() == {"Refused": 2}
    assert (refused.status, refused.remote_error_message) == ("errored", "Invalid 'To' Phone Number")
    assert (uncredentialed.status, uncredentialed.remote_error_message) == ("errored", NO_CREDENTIALS)
    assert [to for _at, to in world.provider.creates] == ["+252662345678"]


def test_a_claim_whose_slot_comes_after_half_the_grace_is_put_back_unsent(world):
    world.account(1)
    world.limiter.next[SID] = 100.0  # another dialer took the slots of the next 100 seconds
    call = world.queue.queue(1, "+252662345678")
    assert world.dispatcher(unknown_outcome_grace=60.0).drain() == {"TooLate": 1}
    assert world.provider.creates == [] and call.dial_claimed_at is None and call.dial_attempts == 0


def test_max_calls_in_flight_holds_the_rest(world):
    world.account(1, max_calls_in_flight=2)
    for n in range(5):
        world.queue.queue(1, f"+25266234567{n}")
    assert world.dispatcher().drain() == {"RemotelyQueued": 2}
    assert [call.status for call in world.queue.calls.values()].count("queued") == 3


def test_an_account_another_dialer_holds_is_left_to_it(world):
    world.account(1)
    world.queue.queue(1, "+252662345678")
    assert world.leases.acquire("scfm:dialer:1", "another dialer", 20)
    assert world.dispatcher().drain() == {} and world.provider.creates == []
    world.leases.release("scfm:dialer:1", "another dialer")  # it stopped, or its lease ran out
    assert world.dispatcher().drain() == {"RemotelyQueued": 1}


def test_a_dispatcher_serves_several_accounts_at_once(world):
    for account_id in (1, 2, 3):
        world.account(account_id, twilio_account_sid=f"AC{account_id:032d}", calls_per_second=1)
        world.queue.queue(account_id, f"+25266234567{account_id}")
    dispatcher = world.dispatcher()
    dispatcher.step({1, 2, 3})
    assert sorted(dispatcher.dialing) == [1, 2, 3]  # each its own lease and threads, none waiting for another
    dispatcher.stop()
    assert dispatcher.dialing == {} and world.leases.holders == {}
    # stopped: a call is dialed, or back in the queue unclaimed (nothing is lost or left claimed)
    assert all(call.status == "remotely_queued" or call.dial_claimed_at is None for call in world.queue.calls.values())


def test_tenants_of_the_servers_provider_account_share_its_rate_as_they_asked(world):
    defaults = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "server", "SCFM_SERVER_CALLS_PER_SECOND": 6.0}
    world.account(1, twilio_account_sid=None, twilio_auth_token=None, calls_per_second=6)
    world.account(2, twilio_account_sid=None, twilio_auth_token=None, calls_per_second=3)
    world.limiter.reserve_share(SID, "2", 3 / SPACING_MARGIN, 6 / SPACING_MARGIN)  # account 2 dials already
    for n in range(4):
        world.queue.queue(1, f"+25266234567{n}")
    assert world.dispatcher(defaults).drain() == {"RemotelyQueued": 4}
    stamps = [at for at, _to in world.provider.creates]
    # account 1 asked for two thirds of what the two ask together: it gets two thirds of the 6 calls/s
    assert all(abs((b - a) - SPACING_MARGIN / 4) < 1e-6 for a, b in zip(stamps, stamps[1:])), stamps


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_limiter_out_of_reach_puts_the_claim_back_unsent(world):
    world.account(1)

    def unreachable(name: str, per_second: float) -> float:
        raise ConnectionError("Redis went away")

    world.limiter.reserve = unreachable
    call = world.queue.queue(1, "+252662345678")
    assert world.dispatcher().drain() == {}
    assert world.provider.creates == [] and call.dial_claimed_at is None and call.dial_attempts == 0
    assert world.leases.holders == {}


def test_a_dialer_that_lost_its_lease_stops_dialing_the_account_and_leaves_the_new_holders_lease(world):
    world.account(1)
    calls = [world.queue.queue(1, f"+25266234567{n}") for n in range(5)]
    answering = threading.Event()
    world.provider.answer = lambda n: answering.wait(10)  # the dials under way hang a while
    dispatcher = world.dispatcher()
    dialing = dispatcher.start(1)
    world.leases.holders["scfm:dialer:1"] = "another dialer"  # this one stalled past its lease
    world.clock.sleep(Timings().dispatcher_lease)
    dispatcher.step(set())
    assert dialing.stop.is_set()
    answering.set()
    dispatcher.stop()
    # the dials under way ended; no other call was claimed, and the new holder keeps its lease
    assert len(world.provider.creates) <= dialing.policy.concurrency
    assert sum(call.dial_claimed_at is None for call in calls) >= len(calls) - dialing.policy.concurrency
    assert world.leases.holders == {"scfm:dialer:1": "another dialer"}


def test_calls_are_claimed_a_tenth_of_a_second_ahead_and_a_stop_gives_back_the_claims_not_dialed(world):
    world.account(1, calls_per_second=100)
    calls = [world.queue.queue(1, f"+2526623{n:05d}") for n in range(60)]
    limits: list[int] = []
    claim_due = world.queue.claim_due
    world.queue.claim_due = lambda account_id, now, limit: limits.append(limit) or claim_due(account_id, now, limit)
    answering = threading.Event()
    world.provider.answer = lambda n: answering.wait(10)  # every dial under way hangs
    dispatcher = world.dispatcher()
    dialing = dispatcher.start(1)
    assert dialing is not None
    for _ in range(1000):
        if len(world.provider.creates) == dialing.policy.concurrency:
            break
        threading.Event().wait(0.005)
    claimed = sum(call.dial_claimed_at is not None for call in calls)
    assert len(world.provider.creates) == dialing.policy.concurrency == 21
    assert set(limits) == {10} and claimed == 10 * len(limits) > 21  # claimed in batches, some not yet dialed
    dialing.stop.set()
    answering.set()
    dispatcher.stop()
    dialed = [call for call in calls if call.status == "remotely_queued"]
    assert len(dialed) == 21 and all(call.dial_attempts == 1 for call in dialed)
    # the claims no thread took went back as they were: unclaimed, no attempt counted, still first in line
    rest = [call for call in calls if call.status == "queued"]
    assert len(rest) == 39 and all(call.dial_claimed_at is None and call.dial_attempts == 0 for call in rest)
    assert world.dispatcher().drain() == {"RemotelyQueued": 39}


class GatheringClock:
    """The recorder's wait for a group lasts until the test says so."""

    def __init__(self):
        self.gathered = threading.Event()

    def sleep(self, seconds: float) -> None:
        assert self.gathered.wait(10)


def _recorded_at_once(world, calls, sids) -> dict[int, object]:
    """Each call recorded with its sid by a thread of its own, all in one group: what each thread got (True,
    False, or the error it raised)."""
    clock = GatheringClock()
    recorder = Recorder(lambda: FakeUnitOfWork(world.accounts, world.queue), clock)
    results: dict[int, object] = {}

    def record(call, sid):
        try:
            results[call.id] = recorder.record(call.id, RemoteCall(sid=sid, status="queued",
                                                                   direction="outbound-api", duration=None))
        except ConnectionError as error:
            results[call.id] = error

    threads = [threading.Thread(target=record, args=(call, sid)) for call, sid in zip(calls, sids)]
    for thread in threads:
        thread.start()
    for _ in range(1000):
        if len(recorder.pending) == len(calls):
            break
        threading.Event().wait(0.005)
    clock.gathered.set()
    for thread in threads:
        thread.join(10)
    return results


@pytest.mark.parametrize("sids, recorded", [
    (["CA1", "CA2", "CA3", "CA4"], [True, True, True, True]),
    (["CA1", "CA2", "CA2", "CA4"], [True, True, False, True]),  # one sid answered twice: one call refused
])
def test_calls_recorded_together_are_written_at_once_and_a_taken_sid_refuses_only_its_call(world, sids, recorded):
    world.account(1)
    calls = [world.queue.queue(1, f"+25266234567{n}") for n in range(len(sids))]
    world.queue.claim_due(1, world.clock.now(), len(calls))
    results = _recorded_at_once(world, calls, sids)
    # which of two calls answered with one sid came first is the threads' race
    assert sorted(results[call.id] for call in calls) == sorted(recorded)
    assert world.queue.recorded_at_once == ([4] if all(recorded) else [])  # else one at a time
    assert sorted(filter(None, (call.remote_call_id for call in calls))) == sorted(set(sids))
    assert all((call.remote_call_id is not None) == results[call.id] for call in calls)


def test_the_database_failing_while_a_group_is_recorded_one_at_a_time_fails_only_the_calls_not_recorded(world):
    world.account(1)
    sids = ["CA1", "CA2", "CA2", "CA4"]  # the group fails on the taken sid, then goes one call at a time
    calls = [world.queue.queue(1, f"+25266234567{n}") for n in range(len(sids))]
    world.queue.claim_due(1, world.clock.now(), len(calls))
    one_at_a_time, asked = world.queue.record_remotely_queued, []

    def the_last_one_fails(phone_call_id, remote):
        asked.append(phone_call_id)
        if len(asked) == len(sids):  # the last of the group's calls, one at a time
            raise ConnectionError("the database is away")
        one_at_a_time(phone_call_id, remote)

    world.queue.record_remotely_queued = the_last_one_fails
    results = _recorded_at_once(world, calls, sids)
    assert all(results[call.id] is True for call in calls if call.remote_call_id is not None)  # records stand
    assert sum(isinstance(result, ConnectionError) for result in results.values()) == 1


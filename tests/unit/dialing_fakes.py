"""In-memory stand-ins for what the dispatcher works with: the dial queue, a clock, the rate limiter, leases
and a provider. One clock drives them all, so tests run in no time and never sleep."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from scfm.domain import state_machines as sm
from scfm.domain.dial_queue import Claim, DialQueue
from scfm.domain.errors import NotFound, ValidationFailed
from scfm.domain.model import Account, PhoneCall
from scfm.domain.ports import ProviderCredentials, RemoteCall, SlotMissed

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
QUEUED, ERRORED, REMOTELY_QUEUED = (sm.PhoneCallStatus.QUEUED.value, sm.PhoneCallStatus.ERRORED.value,
                                    sm.PhoneCallStatus.REMOTELY_QUEUED.value)


class FakeClock:
    """Monotonic seconds that move only when someone sleeps, and the wall clock that moves with them."""

    def __init__(self, epoch: datetime = EPOCH) -> None:
        self.seconds = 0.0
        self.epoch = epoch
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.seconds)


class InMemoryDialQueue:
    """The dial queue's rules over a dict of phone calls (statuses from the state machines)."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls: dict[int, PhoneCall] = {}
        self.plans: dict[int, tuple[dict[str, Any] | None, Any]] = {}  # call id: its plan, its contact's zone
        self.recorded_at_once: list[int] = []  # how many calls each record_many_remotely_queued recorded
        self._lock = threading.Lock()

    def queue(self, account_id: int, msisdn: str, call_plan: dict[str, Any] | None = None,
              contact_time_zone: Any = None) -> PhoneCall:
        call = PhoneCall(id=len(self.calls) + 1, account_id=account_id, msisdn=msisdn, status=QUEUED,
                         next_attempt_at=self.clock.now())
        self.calls[call.id] = call
        self.plans[call.id] = (call_plan, contact_time_zone)
        return call

    def _is_due(self, call: PhoneCall, now: datetime) -> bool:
        return (sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES and call.dial_claimed_at is None
                and call.next_attempt_at is not None and call.next_attempt_at <= now)

    def accounts_with_due_calls(self, now: datetime) -> list[int]:
        return sorted({call.account_id for call in self.calls.values() if self._is_due(call, now) and call.account_id})

    def due_exists(self, account_id: int, now: datetime) -> bool:
        return any(self._is_due(call, now) and call.account_id == account_id for call in self.calls.values())

    def in_flight_count(self, account_id: int) -> int:
        return sum(1 for call in self.calls.values() if call.account_id == account_id and (
            sm.PhoneCallStatus(call.status) in sm.AT_PROVIDER_PHONE_CALL_STATUSES
            or (sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES and call.dial_claimed_at)))

    def claim_due(self, account_id: int, now: datetime, limit: int) -> list[Claim]:
        with self._lock:
            due = sorted((call for call in self.calls.values()
                          if call.account_id == account_id and self._is_due(call, now)),
                         key=lambda call: (call.next_attempt_at, call.id))[:limit]
            claims = []
            for call in due:
                call.dial_claimed_at = self.clock.now()
                call.dial_attempts += 1
                call.waiting_for_window = False
                plan, zone = self.plans.get(call.id or 0, (None, None))
                claims.append(Claim(PhoneCall(**vars(call)), plan, zone))
            return claims

    def release(self, phone_call_ids: list[int]) -> None:
        for phone_call_id in phone_call_ids:
            call = self.calls[phone_call_id]
            if (sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES and call.dial_claimed_at
                    and not call.remote_call_id):
                call.dial_claimed_at, call.dial_attempts = None, call.dial_attempts - 1

    def put_back_until(self, phone_call_id: int, at: datetime) -> None:
        call = self.calls[phone_call_id]
        if sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES:
            call.dial_claimed_at, call.next_attempt_at, call.waiting_for_window = None, at, True
            call.dial_attempts -= 1

    def end_expired(self, phone_call_id: int, message: str) -> None:
        call = self.calls[phone_call_id]
        if sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES:
            call.status, call.remote_error_message = sm.PhoneCallStatus.EXPIRED.value, message
            call.dial_claimed_at, call.dial_attempts = None, call.dial_attempts - 1

    def record_remotely_queued(self, phone_call_id: int, remote: RemoteCall) -> None:
        if any(call.remote_call_id == remote.sid for call in self.calls.values()):
            raise ValidationFailed.on("remote_call_id", "has already been taken")
        self._record(phone_call_id, REMOTELY_QUEUED, remote_call_id=remote.sid, remote_status=remote.status)

    def record_many_remotely_queued(self, records: list[tuple[int, RemoteCall]]) -> None:
        sids = [remote.sid for _, remote in records]
        if len(set(sids)) < len(sids) or any(call.remote_call_id in sids for call in self.calls.values()):
            raise ValidationFailed.on("remote_call_id", "has already been taken")
        self.recorded_at_once.append(len(records))
        for phone_call_id, remote in records:
            self.record_remotely_queued(phone_call_id, remote)

    def record_refusal(self, phone_call_id: int, message: str) -> None:
        self._record(phone_call_id, ERRORED, remote_error_message=message)

    def _record(self, phone_call_id: int, status: str, **values: Any) -> None:
        call = self.calls[phone_call_id]
        if sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES:
            call.status = status
        call.remotely_queued_at = call.remotely_queued_at or self.clock.now()
        for name, value in values.items():
            setattr(call, name, value)

    def put_back(self, phone_call_id: int, retry_in_seconds: float, count_attempt: bool = True) -> None:
        call = self.calls[phone_call_id]
        if sm.PhoneCallStatus(call.status) in sm.DIALABLE_PHONE_CALL_STATUSES:
            call.dial_claimed_at = None
            call.next_attempt_at = self.clock.now() + timedelta(seconds=retry_in_seconds)
            call.dial_attempts -= 0 if count_attempt else 1

    # the sweeper's side is not what these tests are about
    def claims_to_reconcile(self, older_than_seconds: float, ask_again_in_seconds: float,
                            limit: int = 1000) -> list[int]:
        return []

    def open_claims_to(self, msisdn: str, excluding: int) -> list[datetime]:
        return []

    def known_remote_call_ids(self, sids: list[str]) -> set[str]:
        return {call.remote_call_id for call in self.calls.values() if call.remote_call_id in sids}

    def silent_calls(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        return []

    def expire(self, ids: list[int], message: str) -> int:
        return 0

    def queue_remote_fetches(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        return []


_: type[DialQueue] = InMemoryDialQueue  # it is a DialQueue


class Accounts:
    def __init__(self) -> None:
        self.by_id: dict[int, Account] = {}

    def get(self, id_: Any, for_update: bool = False) -> Account:
        if id_ not in self.by_id:
            raise NotFound("account")
        return self.by_id[id_]


@dataclass
class FakeUnitOfWork:
    accounts: Accounts
    dial_queue: InMemoryDialQueue

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        pass


class FakeLimiter:
    """Evenly spaced slots per name on the fake clock, as the Redis limiter hands them out."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.next: dict[str, float] = {}
        self.penalties: list[tuple[str, float]] = []
        self.shares: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def reserve(self, name: str, per_second: float) -> float:
        with self._lock:
            slot = max(self.next.get(name, 0.0), self.clock.seconds)
            self.next[name] = slot + 1 / per_second
            return slot - self.clock.seconds

    def penalize(self, name: str, seconds: float) -> None:
        self.penalties.append((name, seconds))
        self.next[name] = max(self.next.get(name, 0.0), self.clock.seconds + seconds)

    def reserve_share(self, name: str, tenant: str, asked_per_second: float, allowed_per_second: float) -> float:
        tenants = self.shares.setdefault(name, {})
        tenants[tenant] = asked_per_second
        total = sum(tenants.values())
        share = asked_per_second * min(1.0, allowed_per_second / total)
        return self.reserve(f"{name}:{tenant}", share)

    def leave_share(self, name: str, tenant: str) -> None:
        self.shares.get(name, {}).pop(tenant, None)


class FakeLeases:
    def __init__(self) -> None:
        self.holders: dict[str, str] = {}

    def acquire(self, name: str, token: str, seconds: float) -> bool:
        if self.holders.setdefault(name, token) != token:
            return False
        return True

    def release(self, name: str, token: str) -> None:
        if self.holders.get(name) == token:
            del self.holders[name]


@dataclass
class FakeProvider:
    """Makes every call it is asked for, unless `answer` (given the request number) raises. The next requests take
    `slow`'s seconds each to be ready to leave (a busy CPU); one no longer on time is not sent (`missed`)."""
    clock: FakeClock
    answer: Callable[[int], None] = lambda n: None
    creates: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    slow: list[float] = field(default_factory=list)
    missed: list[tuple[float, str]] = field(default_factory=list)

    def create_call(self, credentials: ProviderCredentials, to: str, params: dict[str, Any],
                    on_time: Callable[[], bool] | None = None) -> RemoteCall:
        with self.lock:
            way = self.slow.pop(0) if self.slow else 0.0
        self.clock.sleep(way)
        if on_time is not None and not on_time():
            with self.lock:
                self.missed.append((self.clock.seconds, to))
            raise SlotMissed("the request would have left too late for its slot")
        with self.lock:  # the request's number, and so its sid, taken together with its place in `creates`
            self.creates.append((self.clock.seconds, to))
            n = len(self.creates)
        self.answer(n)
        return RemoteCall(sid=f"CA{n:032d}", status="queued", direction="outbound-api", duration=None)

    def fetch_call(self, credentials: ProviderCredentials, sid: str) -> RemoteCall:
        raise NotImplementedError

    def find_calls(self, credentials: ProviderCredentials, to: str) -> list[RemoteCall]:
        return []

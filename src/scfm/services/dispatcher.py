"""The dispatcher: one per dialer process, dialing for every account with due calls at once.

Queued calls wait in PostgreSQL (the dial queue). The dispatcher scans it for accounts with due calls every
`dialer_scan` seconds, and looks at once at the accounts it is woken up for. It takes an account's lease in
Redis (so that several dialer processes share the accounts, one dialer per account at a time) and dials the
account's calls with `policy.concurrency` threads until none is due, renewing the lease meanwhile; then it
gives the lease back. A dialer that dies stops renewing: another takes the account over once the lease has
run out, and nothing is lost, since every claim is in the database.

Each thread takes the next claimed call (the claims committed: a call is dialed at most once; a thread that
finds none left claims the next batch, a tenth of a second of the rate, for all), takes the next slot of the
shared rate limiter (keyed by the provider account, so every dialer together keeps its rate; on
the server's provider account each tenant first waits for a slot of its share), asks the provider, and
records the outcome. A request that would leave too late for its slot is not sent (the provider adapter asks at
the last moment) and the call takes the next slot. A claim whose slot comes more than half the unknown-outcome
grace later is put back unsent: the sweeper may be asking the provider about it already.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from scfm.domain.call_plan import CallPlan, contact_zone
from scfm.domain.dial_queue import (
    Claim, Clock, DialOutcome, DialQueue, Expired, Leases, OutsideWindow, RateLimiter, Refused, RemotelyQueued,
    Retry, TooLate, Unknown, WakeUps,
)
from scfm.domain.dialing import SPACING_MARGIN, DialingPolicy, Timings
from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Account, PhoneCall
from scfm.domain.ports import (
    CallProvider, OutcomeUnknown, ProviderCredentials, ProviderRateLimited, ProviderRefused, ProviderUnreachable,
    RemoteCall, SlotMissed,
)
from scfm.domain.provider import credentials_for, dialing_ceilings, server_account_rate

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/remote_phone_call_events"
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]
NO_CREDENTIALS = (
    "Unable to create record: no provider credentials are configured for this account "
    "(set its twilio_account_sid/twilio_auth_token or somleng_* fields, or the server's defaults)"
)
DUPLICATE_SID = "The provider answered with the sid of a call that another phone call already holds"
# A request that would leave more than this after its slot (a busy CPU) is not sent: its call takes the next
# slot. Asked by the connection right before it sends the request, once connected, so that the way from there to
# the provider's edge is all that is not counted. Slots are spaced by SPACING_MARGIN / rate, so a 1-second window
# at the provider holds the requests of slots from at most 1 + lateness seconds: below 40 ms of lateness, at the
# provider, no second ever holds more than the rate, at any rate. 25 ms leaves 15 ms for the way.
MAX_SLOT_LATENESS = 0.025
RECORD_GATHER = 0.02  # seconds the first record of a group waits for others
MAX_RECORD_GROUP = 100
IN_FLIGHT_RECOUNT = 1.0  # seconds: how old the count of an account's calls in flight may be
WAKE_UP_POLL = 0.2  # seconds between two looks at the wake-ups (and the leases to renew)


class AccountReader(Protocol):
    def get(self, id_: Any, for_update: bool = False) -> Account: ...


class DialingUnitOfWork(Protocol):
    @property
    def accounts(self) -> AccountReader: ...

    @property
    def dial_queue(self) -> DialQueue: ...

    def __enter__(self) -> DialingUnitOfWork: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class DispatcherSettings:
    provider_defaults: dict[str, Any]
    public_url: str | None
    timings: Timings = Timings()
    lease_prefix: str = "scfm"
    max_accounts: int = 100  # accounts one dispatcher dials for at once; more dialers share the rest


@dataclass
class AccountDialing:
    """One account being dialed: its lease, its threads and what they dialed."""
    account_id: int
    policy: DialingPolicy
    credentials: ProviderCredentials | None
    unusable: str | None  # why there are no credentials
    shared_rate: float | None  # the server's provider account's rate, when the account dials on it
    lease: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)  # of `outcomes`
    claiming: threading.Lock = field(default_factory=threading.Lock)  # of `claimed`, and the claims made
    claimed: deque[tuple[Claim, float]] = field(default_factory=deque)  # claims not yet taken, and when made
    in_flight: int = 0  # see Dispatcher._in_flight
    in_flight_counted_at: float = float("-inf")
    renewed_at: float = 0.0

    @property
    def tenant(self) -> str:
        return str(self.account_id)


def outgoing_params(call: PhoneCall, public_url: str | None) -> dict[str, Any]:
    """The create-call parameters: the call's own, plus a status callback that names our call."""
    params = dict(call.remote_request_params or {})
    if public_url and not params.get("status_callback"):
        params["status_callback"] = f"{public_url}{WEBHOOK_PATH}?phone_call_id={call.id}"
        params.setdefault("status_callback_event", STATUS_CALLBACK_EVENTS)
    return params


@dataclass
class _Record:
    call_id: int
    remote: RemoteCall
    done: threading.Event = field(default_factory=threading.Event)
    recorded: bool = False  # False: the call is refused (its sid is another's), once decided
    decided: bool = False
    error: BaseException | None = None


class Recorder:
    """Records the calls the provider made in groups, one transaction each (group commit): the first thread with
    a record to make waits RECORD_GATHER seconds for the others' (a thread is free again when its request is
    answered, so no slot waits for this), then records them all, and again while more came meanwhile; each
    thread returns once its own is recorded. A sid another phone call holds fails its group, which is then
    recorded one call at a time, so that only that call is refused."""

    def __init__(self, uow_for: Callable[[], DialingUnitOfWork], clock: Clock):
        self.uow_for = uow_for
        self.clock = clock
        self.lock = threading.Lock()
        self.pending: list[_Record] = []
        self.leading = False

    def record(self, call_id: int, remote: RemoteCall) -> bool:
        """Record that the provider made the call; False when its sid is another phone call's."""
        mine = _Record(call_id, remote)
        with self.lock:
            self.pending.append(mine)
            lead, self.leading = not self.leading, True
        if lead:
            self.clock.sleep(RECORD_GATHER)
            self._lead()
        mine.done.wait()
        if mine.error is not None:
            raise mine.error
        return mine.recorded

    def _lead(self) -> None:
        while True:
            with self.lock:
                group, self.pending = self.pending[:MAX_RECORD_GROUP], self.pending[MAX_RECORD_GROUP:]
                if not group:
                    self.leading = False
                    return
            try:
                self._write(group)
            except BaseException as error:  # the database away: every thread whose call is undecided learns it
                for each in group:
                    if not each.decided:
                        each.error = error
            for each in group:
                each.done.set()

    def _write(self, group: list[_Record]) -> None:
        try:
            with self.uow_for() as uow:
                uow.dial_queue.record_many_remotely_queued([(each.call_id, each.remote) for each in group])
                uow.commit()
            for each in group:
                each.recorded = each.decided = True
            return
        except ValidationFailed:
            if len(group) == 1:
                group[0].decided = True
                return
        for each in group:
            try:
                with self.uow_for() as uow:
                    uow.dial_queue.record_remotely_queued(each.call_id, each.remote)
                    uow.commit()
                each.recorded = True
            except ValidationFailed:
                pass
            each.decided = True


class Dispatcher:
    def __init__(self, uow_for: Callable[[], DialingUnitOfWork], provider: CallProvider, limiter: RateLimiter,
                 leases: Leases, clock: Clock, settings: DispatcherSettings, wake_ups: WakeUps | None = None):
        self.uow_for = uow_for
        self.provider = provider
        self.limiter = limiter
        self.leases = leases
        self.clock = clock
        self.settings = settings
        self.timings = settings.timings
        self.wake_ups = wake_ups
        self.dialing: dict[int, AccountDialing] = {}
        self.recorder = Recorder(uow_for, clock)

    # ---------------------------------------------------------------- the process
    def serve(self, stopping: threading.Event) -> None:
        """Dial for every account with due calls until `stopping`; then let the dials under way end and give
        the leases back (a dialer killed instead leaves them to run out)."""
        next_scan = 0.0
        try:
            while not stopping.is_set():
                try:
                    woken = set(self.wake_ups.take()) if self.wake_ups else set()
                    if self.clock.monotonic() >= next_scan:
                        next_scan = self.clock.monotonic() + self.timings.dialer_scan
                        woken |= set(self._due_accounts())
                    self.step(woken)
                except Exception as error:  # a database or Redis outage: look again at the next turn
                    log.warning("dialer: %s: %s", type(error).__name__, error)
                stopping.wait(WAKE_UP_POLL)
        finally:
            self.stop()

    def step(self, accounts: set[int]) -> None:
        """Give back the accounts whose dialing ended, renew the others' leases, start on `accounts`."""
        self._end_finished()
        self._renew_leases()
        for account_id in sorted(accounts - set(self.dialing)):
            if len(self.dialing) >= self.settings.max_accounts:
                break
            self.start(account_id)

    def drain(self) -> Counter[str]:
        """Dial every due call there is, and return what became of them (tests, benchmarks, `--once`)."""
        outcomes: Counter[str] = Counter()
        while accounts := set(self._due_accounts()):
            started = [dialing for account_id in sorted(accounts) if (dialing := self.start(account_id))]
            dialed: Counter[str] = Counter()
            for dialing in started:
                dialed += self.finish(dialing)
            if not dialed:
                break  # held by other dialers, or capped by max_calls_in_flight
            outcomes += dialed
        return outcomes

    def stop(self) -> None:
        for dialing in list(self.dialing.values()):
            dialing.stop.set()
        for dialing in list(self.dialing.values()):
            try:
                self.finish(dialing)
            except Exception as error:  # Redis away: the lease runs out instead
                log.warning("dialer: account %s: %s: %s", dialing.account_id, type(error).__name__, error)
                self.dialing.pop(dialing.account_id, None)

    def _due_accounts(self) -> list[int]:
        with self.uow_for() as uow:
            return uow.dial_queue.accounts_with_due_calls(self.clock.now())

    # ---------------------------------------------------------------- an account: lease and threads
    def start(self, account_id: int) -> AccountDialing | None:
        """Take the account's lease and start dialing its due calls; None if another dialer has it, or
        nothing is due."""
        dialing = self._prepare(account_id)
        if not self.leases.acquire(dialing.lease, dialing.token, self.timings.dispatcher_lease):
            return None
        dialing.renewed_at = self.clock.monotonic()
        with self.uow_for() as uow:
            due = uow.dial_queue.due_exists(account_id, self.clock.now())
        if not due:  # dialed meanwhile, or held (a paused callout)
            self.leases.release(dialing.lease, dialing.token)
            return None
        dialing.threads = [threading.Thread(target=self._dial_loop, args=(dialing,), daemon=True,
                                            name=f"dialer-{account_id}-{n}")
                           for n in range(dialing.policy.concurrency)]
        self.dialing[account_id] = dialing
        for thread in dialing.threads:
            thread.start()
        return dialing

    def _prepare(self, account_id: int) -> AccountDialing:
        with self.uow_for() as uow:
            account = uow.accounts.get(account_id)
        defaults = self.settings.provider_defaults
        policy = DialingPolicy.for_account(account).within(*dialing_ceilings(defaults))
        try:
            credentials = credentials_for(account, defaults)
            unusable = None if credentials else NO_CREDENTIALS
        except ProviderRefused as refusal:  # an endpoint the server does not (or no longer) allow
            credentials, unusable = None, refusal.message
        shared_rate = server_account_rate(credentials, defaults) if credentials else None
        return AccountDialing(account_id, policy, credentials, unusable, shared_rate,
                              lease=f"{self.settings.lease_prefix}:dialer:{account_id}")

    def _renew_leases(self) -> None:
        for dialing in list(self.dialing.values()):
            if self.clock.monotonic() - dialing.renewed_at < self.timings.dispatcher_lease / 4:
                continue
            if self.leases.acquire(dialing.lease, dialing.token, self.timings.dispatcher_lease):
                dialing.renewed_at = self.clock.monotonic()
            else:  # this dialer stalled past its lease, and another took the account over
                log.warning("account %s: the dialer lease was lost; stopping its dials", dialing.account_id)
                dialing.stop.set()

    def _end_finished(self) -> None:
        for dialing in list(self.dialing.values()):
            if not any(thread.is_alive() for thread in dialing.threads):
                self.finish(dialing)

    def finish(self, dialing: AccountDialing) -> Counter[str]:
        """Wait for the account's threads to end, give its lease and its share of the rate back."""
        for thread in dialing.threads:
            thread.join()
        self._release_claims(dialing)
        if dialing.shared_rate is not None and dialing.credentials is not None:
            self.limiter.leave_share(dialing.credentials.account_sid, dialing.tenant)
        self.leases.release(dialing.lease, dialing.token)
        self.dialing.pop(dialing.account_id, None)
        return dialing.outcomes

    # ---------------------------------------------------------------- a thread: claim, slot, dial, record
    def _dial_loop(self, dialing: AccountDialing) -> None:
        if dialing.credentials is not None and hasattr(self.provider, "warm"):
            self.provider.warm(dialing.credentials)  # first-use costs must not fall between slot and send
        while not dialing.stop.is_set():
            outcome = self.dial_next(dialing)
            if outcome is None:
                return
            with dialing.lock:
                dialing.outcomes[type(outcome).__name__] += 1

    def dial_next(self, dialing: AccountDialing) -> DialOutcome | None:
        """Claim, wait for the slot, dial and record one call; None when none is due (or the cap is met). A
        call whose plan's window is closed for its contact, or past its not_after, is not dialed: it is
        checked before the slot is taken (so it uses none) and again after."""
        taken = self._next_claim(dialing)
        if taken is None:
            return None
        (claim, claimed) = taken
        assert claim.call.id is not None
        call, call_id = claim.call, claim.call.id
        plan = self._plan(claim)
        if plan is not None and (held := self._held_by_plan(plan, claim)) is not None:
            return self._record(dialing, call_id, held)
        while True:
            slot = self._slot(dialing, call_id)
            if self.clock.monotonic() - claimed > self.timings.unknown_outcome_grace / 2:
                outcome: DialOutcome = TooLate()
            elif plan is not None and (held := self._held_by_plan(plan, claim)) is not None:
                outcome = held  # the window closed (or the plan expired) while the call waited for its slot
            else:
                try:
                    outcome = self._dial(dialing, call, slot)
                except SlotMissed:  # nothing was sent: the call takes the next slot, unless the dialing stopped
                    if not dialing.stop.is_set():
                        continue
                    outcome = TooLate()
            return self._record(dialing, call_id, outcome)

    def _slot(self, dialing: AccountDialing, call_id: int) -> float | None:
        """Wait for the call's slot and answer its time (None: the account has no credentials to dial with)."""
        if dialing.credentials is None:
            return None
        try:
            return self._wait_for_slot(dialing)
        except Exception:  # the limiter is away (Redis): nothing was sent, so the call goes back at once
            with self.uow_for() as uow:
                uow.dial_queue.put_back(call_id, self.timings.retry_after_unreachable, count_attempt=False)
                uow.commit()
            raise

    def _next_claim(self, dialing: AccountDialing) -> tuple[Claim, float] | None:
        """The account's next claimed call, and when it was claimed; None when none is due (or the cap is met).
        A thread that finds no claim left claims the next batch (`policy.claim_batch`) for every thread: the
        account's threads count and claim one at a time, so that together they never pass the cap."""
        with dialing.claiming:
            if not dialing.claimed and not dialing.stop.is_set():
                limit, cap = dialing.policy.claim_batch, dialing.policy.max_calls_in_flight
                with self.uow_for() as uow:
                    if cap:
                        limit = min(limit, cap - self._in_flight(dialing, uow, limit))
                    claims = uow.dial_queue.claim_due(dialing.account_id, self.clock.now(), limit) \
                        if limit > 0 else []
                    uow.commit()
                claimed = self.clock.monotonic()
                dialing.in_flight += len(claims)
                dialing.claimed.extend((claim, claimed) for claim in claims)
            return dialing.claimed.popleft() if dialing.claimed else None

    def _in_flight(self, dialing: AccountDialing, uow: DialingUnitOfWork, wanted: int) -> int:
        """The account's calls in flight, at most IN_FLIGHT_RECOUNT old: counted in the database, plus what this
        dialer (the account's only one, by its lease) claimed since. Calls only leave flight meanwhile, so the
        figure errs high: counted again at once when `wanted` more would pass the cap by it."""
        cap = dialing.policy.max_calls_in_flight or 0
        if (self.clock.monotonic() - dialing.in_flight_counted_at > IN_FLIGHT_RECOUNT
                or dialing.in_flight + wanted > cap):
            dialing.in_flight = uow.dial_queue.in_flight_count(dialing.account_id)
            dialing.in_flight_counted_at = self.clock.monotonic()
        return dialing.in_flight

    def _release_claims(self, dialing: AccountDialing) -> None:
        """Give back the claims no thread took (the account's dialing stopped)."""
        with dialing.claiming:
            ids = [claim.call.id for claim, _ in dialing.claimed if claim.call.id is not None]
            dialing.claimed.clear()
        if ids:
            with self.uow_for() as uow:
                uow.dial_queue.release(ids)
                uow.commit()

    def _plan(self, claim: Claim) -> CallPlan | None:
        if not claim.call_plan:
            return None
        try:
            return CallPlan.parse(claim.call_plan, cap=None)
        except ValidationFailed as error:  # stored before a rule was added: dialed as a call without a plan
            log.warning("phone call %s: its call plan cannot be read: %s", claim.call.id, error)
            return None

    def _held_by_plan(self, plan: CallPlan, claim: Claim) -> DialOutcome | None:
        """Expired past the plan's not_after, outside its window for the contact's time zone, or None."""
        now = self.clock.now()
        if plan.expired(now):
            return Expired(plan.expiry_message)
        if plan.window is not None:
            zone = contact_zone(claim.contact_time_zone, claim.call.msisdn, plan.window)
            if not plan.window.contains(now, zone):
                return OutsideWindow(plan.window.next_opening(now, zone))
        return None

    def _wait_for_slot(self, dialing: AccountDialing) -> float:
        """Sleep until this call's slot, and answer its time (the earliest it can be). The slot is taken after the
        claim, so that only the request itself comes between the slot and the provider; one woken up too late
        for it is given up for the next at once."""
        assert dialing.credentials is not None
        name = dialing.credentials.account_sid
        rate = dialing.policy.calls_per_second
        if dialing.shared_rate is not None:  # first the tenant's share, then a slot of the provider account
            self._sleep(self.limiter.reserve_share(name, dialing.tenant, rate / SPACING_MARGIN,
                                                   dialing.shared_rate / SPACING_MARGIN))
            rate = dialing.shared_rate
        while True:
            asked = self.clock.monotonic()
            wait = self.limiter.reserve(name, rate / SPACING_MARGIN)
            answered = self.clock.monotonic()
            # the limiter's now lies between `asked` and `answered`: wake no earlier than the latest the slot
            # can be, and count lateness from the earliest, so that both errors err on the side of the rate
            self._sleep(answered + wait - self.clock.monotonic())
            if self.clock.monotonic() - (asked + wait) <= MAX_SLOT_LATENESS:
                return asked + wait

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.sleep(seconds)

    def _dial(self, dialing: AccountDialing, call: PhoneCall, slot: float | None) -> DialOutcome:
        """The provider's answer to the call's create; SlotMissed if the request would have left too late."""
        if dialing.credentials is None or slot is None:
            return Refused(dialing.unusable or NO_CREDENTIALS)
        try:
            remote = self.provider.create_call(dialing.credentials, call.msisdn or "",
                                               outgoing_params(call, self.settings.public_url),
                                               on_time=lambda: self.clock.monotonic() - slot <= MAX_SLOT_LATENESS)
        except SlotMissed:
            raise
        except ProviderRefused as refusal:
            return Refused(refusal.message)
        except ProviderRateLimited:
            return Retry(self.timings.retry_after_rate_limit, rate_limited=True)
        except ProviderUnreachable:
            return Retry(self.timings.retry_after_unreachable, rate_limited=False)
        except OutcomeUnknown as error:
            return Unknown(str(error))
        except Exception as error:  # whatever else a provider adapter lets through
            log.exception("phone call %s: the dial failed unexpectedly", call.id)
            return Unknown(f"unexpected {type(error).__name__}")
        return RemotelyQueued(remote)

    def _record(self, dialing: AccountDialing, call_id: int, outcome: DialOutcome) -> DialOutcome:
        if isinstance(outcome, RemotelyQueued):
            if self.recorder.record(call_id, outcome.remote):
                return outcome
            outcome = Refused(DUPLICATE_SID)  # the provider answered with the sid of a call another one holds
        with self.uow_for() as uow:
            if isinstance(outcome, Refused):
                uow.dial_queue.record_refusal(call_id, outcome.message)
            elif isinstance(outcome, Retry):
                log.info("phone call %s not dialed; retrying in %ss", call_id, outcome.retry_in)
                uow.dial_queue.put_back(call_id, outcome.retry_in, count_attempt=False)
            elif isinstance(outcome, TooLate):
                uow.dial_queue.put_back(call_id, self.timings.retry_after_rate_limit, count_attempt=False)
            elif isinstance(outcome, OutsideWindow):
                uow.dial_queue.put_back_until(call_id, outcome.opens_at)
            elif isinstance(outcome, Expired):
                uow.dial_queue.end_expired(call_id, outcome.message)
            else:
                log.warning("phone call %s: the outcome of the dial is unknown: %s", call_id, outcome.reason)
            uow.commit()
        if isinstance(outcome, Retry) and dialing.credentials is not None:
            self.limiter.penalize(dialing.credentials.account_sid, outcome.retry_in)
        return outcome

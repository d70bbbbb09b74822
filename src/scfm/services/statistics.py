"""Use cases of callout statistics and results.

The database keeps counters per callout and raw state (migration 0008): the participation's outcome once it
has one, else its latest call's status (and whether that call waits for its calling window), else none. This
module reads them as the states a user sees, each participation in exactly one:

- `to_call`: nothing in progress: no call yet, a call created but not queued, or (under a call plan) a call
  that ended unanswered and may be retried;
- `waiting_for_window`: its call is queued but put back until its calling window opens;
- `queued`: its call waits in the dial queue (or is being dialed);
- `in_flight`: its call is at the provider;
- `done`: it has an outcome (a call plan's), or, without a call plan, its latest call ended; under a call plan
  a participation whose latest call was answered is done too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator

from scfm.domain import state_machines as sm
from scfm.domain.call_plan import CallPlan, Window
from scfm.domain.contact_import import export_row, metadata_column_names
from scfm.domain.dialing import DialingPolicy
from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Account, Callout, stored
from scfm.domain.ports import ProviderRefused, StatisticsStore, UnitOfWork, UnitsOfWork
from scfm.domain.provider import credentials_for, dialing_ceilings, server_account_rate

TERMINAL = frozenset(sm.status_values(sm.TERMINAL_PHONE_CALL_STATUSES))
OUTCOMES = tuple(sorted(TERMINAL))
ANSWERED = sm.PhoneCallStatus.COMPLETED.value
QUEUED = sm.PhoneCallStatus.QUEUED.value
CREATED = sm.PhoneCallStatus.CREATED.value
AT_PROVIDER = frozenset(sm.status_values(sm.AT_PROVIDER_PHONE_CALL_STATUSES))

TO_CALL, WAITING_FOR_WINDOW, QUEUED_STATE, IN_FLIGHT, DONE = (
    "to_call", "waiting_for_window", "queued", "in_flight", "done")
STATES = (TO_CALL, WAITING_FOR_WINDOW, QUEUED_STATE, IN_FLIGHT, DONE)
DEFAULT_MINUTES = 10
MAX_MINUTES = 60


RESULT_COLUMNS = ("callout_participation_id", "contact_id", "msisdn", "calls", "attempts", "last_status", "outcome",
                  "finished_at", "duration")


@dataclass(frozen=True)
class StateCount:
    participations: int = 0
    calls: int = 0
    attempts: int = 0


def classify(raw_state: str, planned: bool) -> tuple[str, str | None]:
    """A raw state as (state, outcome): every raw state lands in exactly one state."""
    kind, _, status = raw_state.partition(":")
    if kind == "outcome":
        return DONE, status
    if kind == "none" or status == CREATED:
        return TO_CALL, None
    if status == QUEUED:
        return (WAITING_FOR_WINDOW if kind == "window" else QUEUED_STATE), None
    if status in TERMINAL:
        if not planned or status == ANSWERED:
            return DONE, status
        return TO_CALL, None  # its call plan retries it, or settles its outcome
    return IN_FLIGHT, None


def median(histogram: dict[int, int]) -> float | None:
    """The exact median of values counted in a histogram {value: how many}."""
    total = sum(histogram.values())
    if total == 0:
        return None
    ordered = sorted((value, count) for value, count in histogram.items() if count)
    low_rank, high_rank = (total - 1) // 2, total // 2
    low = high = None
    seen = 0
    for value, count in ordered:
        if low is None and low_rank < seen + count:
            low = value
        if high_rank < seen + count:
            high = value
            break
        seen += count
    assert low is not None and high is not None
    return (low + high) / 2


# ---------------------------------------------------------------- calling windows and the estimate

def parse_window(document: Any) -> Window | None:
    """A stored call plan's window, None when it has none (or one no longer valid)."""
    if not document:
        return None
    try:
        return Window.parse(document)
    except ValidationFailed:
        return None


def finishes_at(now: datetime, calls_left: int, calls_per_second: float, window: Window | None,
                not_after: datetime | None) -> datetime | None:
    """When `calls_left` calls at `calls_per_second` are dialed, inside the window's open hours, and no later
    than not_after (when the call plan's calls expire); None when the window never opens (or, at that rate, no
    date holds the end)."""
    seconds = calls_left / calls_per_second
    finish: datetime | None
    if window is None:
        try:
            finish = now + timedelta(seconds=seconds)
        except OverflowError:  # a rate so slow (the API takes 1e-300 calls/s) that it never finishes
            finish = None
    else:
        finish = None
        for opens, closes in window.open_intervals(now):
            open_seconds = (closes - opens).total_seconds()
            if seconds <= open_seconds:
                finish = opens + timedelta(seconds=seconds)
                break
            seconds -= open_seconds
    if not_after is not None and (finish is None or finish > not_after):
        return max(now, not_after)
    return finish


def _not_after(value: Any) -> datetime | None:
    try:
        return CallPlan.parse({"not_after": value}, cap=None).not_after
    except ValidationFailed:
        return None


def effective_plan(account: Account, callout: Callout) -> dict[str, Any]:
    """The account's call plan with the callout's keys on top (empty: the callout has none)."""
    return {**(account.call_plan or {}), **(callout.call_plan or {})}


def account_rate(account: Account, provider_defaults: dict[str, Any]) -> float:
    """The rate the account dials at: its own (else the default), within the server's ceilings, and within the
    server's provider account's when it dials on that one."""
    rate = DialingPolicy.for_account(account).within(*dialing_ceilings(provider_defaults)).calls_per_second
    try:
        credentials = credentials_for(account, provider_defaults)
    except ProviderRefused:
        return rate
    shared = server_account_rate(credentials, provider_defaults) if credentials else None
    return min(rate, shared) if shared is not None else rate


# ---------------------------------------------------------------- statistics

@dataclass
class Statistics:
    participations: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    finished: bool = False
    calls: int = 0
    attempts: int = 0
    answered: int = 0
    answer_rate: float | None = None
    duration: dict[str, Any] = field(default_factory=dict)
    calls_per_minute: list[dict[str, Any]] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalloutWork:
    """What one callout's counters say, and what it will still dial on its own."""
    callout: Callout
    planned: bool
    counts: dict[str, StateCount]

    def states(self) -> Iterator[tuple[str, str | None, StateCount]]:
        for raw, count in self.counts.items():
            state, outcome = classify(raw, self.planned)
            yield state, outcome, count

    def calls_left(self) -> int:
        """The calls it will still make without another batch operation (with a call plan: at least one for
        each participation not done nor at the provider)."""
        dialed_states = {QUEUED_STATE, WAITING_FOR_WINDOW} | ({TO_CALL} if self.planned else set())
        return sum(count.participations for state, _outcome, count in self.states() if state in dialed_states)

    def dials_on_its_own(self) -> bool:
        """False when paused or stopped, or when its call plan has not been started."""
        status = sm.CalloutStatus(self.callout.status)
        return not (status in sm.HELD_CALLOUT_STATUSES or (self.planned and status is sm.CalloutStatus.INITIALIZED))


def is_finished(states: dict[str, int]) -> bool:
    """Finished: it has participations and every one is done."""
    return sum(states.values()) > 0 and states[DONE] == sum(states.values())


def _tally(works: list[CalloutWork], durations: dict[int, int], minutes: dict[datetime, int], now: datetime,
           minute_count: int) -> Statistics:
    result = Statistics()
    in_provider = 0
    for work in works:
        for state, outcome, count in work.states():
            result.states[state] += count.participations
            result.calls += count.calls
            result.attempts += count.attempts
            if outcome is not None:
                result.outcomes[outcome] = result.outcomes.get(outcome, 0) + count.participations
                if outcome == ANSWERED:
                    result.answered += count.participations
            if state == IN_FLIGHT:
                in_provider += count.participations
    result.participations = sum(result.states.values())
    result.finished = is_finished(result.states)
    ended = result.attempts - in_provider  # a participation at the provider has one attempt not yet ended
    result.answer_rate = round(result.answered / ended, 4) if ended > 0 else None
    result.duration = {
        "answered_calls": sum(durations.values()),
        "median_seconds": median(durations),
        "total_seconds": sum(seconds * count for seconds, count in durations.items()),
    }
    this_minute = now.replace(second=0, microsecond=0)
    result.calls_per_minute = [
        {"minute": minute, "calls": minutes.get(minute, 0)}
        for minute in (this_minute - timedelta(minutes=back) for back in range(minute_count - 1, -1, -1))]
    return result


def estimate(works: list[CalloutWork], account: Account, provider_defaults: dict[str, Any],
              now: datetime) -> dict[str, Any]:
    """Calls left and when they will have been dialed at the account's rate, inside the calling window (when
    every callout with work left has the same one) and before not_after."""
    rate = account_rate(account, provider_defaults)
    lefts = [(work, work.calls_left()) for work in works]
    calls_left = sum(left for _work, left in lefts)
    dialing = [work for work, left in lefts if left]
    figures: dict[str, Any] = {"calls_left": calls_left, "calls_per_second": rate, "seconds_left": None,
                                "finishes_at": None}
    if calls_left == 0:
        figures.update(seconds_left=0, finishes_at=now)
        return figures
    if not all(work.dials_on_its_own() for work in dialing):
        return figures
    plans = [effective_plan(account, work.callout) for work in dialing]
    windows = {repr(plan.get("window")) for plan in plans}
    window = parse_window(plans[0].get("window")) if len(windows) == 1 else None
    expiries = [_not_after(plan.get("not_after")) for plan in plans]
    not_after = max(expiry for expiry in expiries if expiry is not None) if None not in expiries else None
    finish = finishes_at(now, calls_left, rate, window, not_after)
    if finish is not None:
        figures.update(seconds_left=round((finish - now).total_seconds(), 1), finishes_at=finish)
    return figures


def _minutes(minutes: Any) -> int:
    return max(1, min(int(minutes or DEFAULT_MINUTES), MAX_MINUTES))


def _works(store: StatisticsStore, account: Account, callouts: list[Callout]) -> list[CalloutWork]:
    counts: dict[int, dict[str, StateCount]] = {stored(callout.id): {} for callout in callouts}
    for callout_id, raw, participations, calls, attempts in store.state_counts(list(counts)):
        counts[callout_id][raw] = StateCount(participations, calls, attempts)
    return [CalloutWork(callout, bool(effective_plan(account, callout)), counts[stored(callout.id)])
            for callout in callouts]


def _statistics(uow: UnitOfWork, account: Account, callouts: list[Callout], provider_defaults: dict[str, Any],
                minutes: Any) -> Statistics:
    store = uow.statistics
    minute_count = _minutes(minutes)
    now = store.now()
    ids = [stored(callout.id) for callout in callouts]
    works = _works(store, account, callouts)
    durations: dict[int, int] = {}
    for _callout_id, seconds, count in store.duration_counts(ids):
        durations[seconds] = durations.get(seconds, 0) + count
    per_minute: dict[datetime, int] = {}
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=minute_count - 1)
    for _callout_id, minute, count in store.minute_counts(ids, since):
        per_minute[minute] = per_minute.get(minute, 0) + count
    result = _tally(works, durations, per_minute, now, minute_count)
    result.estimate = estimate(works, account, provider_defaults, now)
    return result


def callout_statistics(uow: UnitOfWork, callout_id: int, provider_defaults: dict[str, Any],
                       minutes: Any = None) -> Statistics:
    """A callout's statistics (404 for one the account does not have)."""
    with uow:
        callout = uow.callouts.get(callout_id)
        account = uow.accounts.get(uow.account_id)
        return _statistics(uow, account, [callout], provider_defaults, minutes)


def account_statistics(uow: UnitOfWork, provider_defaults: dict[str, Any], minutes: Any = None) -> Statistics:
    """The statistics of all the account's callouts together."""
    with uow:
        account = uow.accounts.get(uow.account_id)
        callouts = uow.statistics.callouts(stored(account.id))
        return _statistics(uow, account, callouts, provider_defaults, minutes)


def finished(uow: UnitOfWork, callouts: list[Callout]) -> dict[int, bool]:
    """Whether each of the account's callouts is finished, read together."""
    if not callouts:
        return {}
    with uow:
        account = uow.accounts.get(uow.account_id)
        works = _works(uow.statistics, account, callouts)
    found = {}
    for work in works:
        states = dict.fromkeys(STATES, 0)
        for state, _outcome, count in work.states():
            states[state] += count.participations
        found[stored(work.callout.id)] = is_finished(states)
    return found


# ---------------------------------------------------------------- results

def results(uow_for: UnitsOfWork, account_id: int, callout_id: int) -> Iterator[list[str]]:
    """A callout's participations as CSV rows, the header first: RESULT_COLUMNS, the contact's metadata as
    metadata.* columns, and the metadata of the latest answered call (where call flow logic keeps what it
    gathered, e.g. CapomShort's capom.q1) as call.metadata.* columns. 404 before the first row."""
    with uow_for(account_id) as uow:
        uow.callouts.get(callout_id)

    def rows() -> Iterator[list[str]]:
        with uow_for(account_id) as uow:
            uow.exports.snapshot()
            store = uow.statistics
            contact_names = metadata_column_names(store.contact_paths(callout_id))
            call_names = metadata_column_names(store.answer_paths(callout_id))
            yield [*RESULT_COLUMNS, *(f"metadata.{name}" for name in contact_names),
                   *(f"call.metadata.{name}" for name in call_names)]
            for *values, contact_metadata, call_metadata in store.results(callout_id):
                yield export_row(values, contact_metadata, contact_names) + export_row((), call_metadata, call_names)

    return rows()

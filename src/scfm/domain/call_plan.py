"""Call plans (issue 12): what a callout's calls send, when a participation is called again, in which hours
and until when. Pure: parsed from the stored JSON, validated with errors naming the field, and the window's
arithmetic on aware datetimes (zoneinfo), right across daylight-saving changes.

A callout's effective plan is its account's plan with the callout's keys on top (a shallow merge), so every
key is optional here and a partial document is valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_time_zones

from scfm.domain import state_machines as sm
from scfm.domain.errors import ValidationFailed
from scfm.domain.provider import validate_remote_request_params

FIELD = "call_plan"
DEFAULT_MAX_ATTEMPTS_CAP = 10  # SCFM_MAX_ATTEMPTS: what no plan may exceed
DEFAULT_MAX_ATTEMPTS = 3  # a plan that retries but does not say how often (SCFM's own later default)
MAX_LADDER_STEPS = 20
MAX_DELAY_SECONDS = 7 * 24 * 3600
# The outcomes a plan may retry: a participation's last call ended so (completed is done, never retried).
RETRYABLE_OUTCOMES = tuple(status.value for status in (
    sm.PhoneCallStatus.BUSY, sm.PhoneCallStatus.NOT_ANSWERED, sm.PhoneCallStatus.FAILED,
    sm.PhoneCallStatus.ERRORED, sm.PhoneCallStatus.CANCELED, sm.PhoneCallStatus.EXPIRED,
))
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday()'s order
KEYS = frozenset({"remote_request_params", "max_attempts", "retries", "window", "not_after"})
END_OF_DAY = 24 * 60
# not_after's range: an instant in it can be read in any time zone (a day from the ends of what a datetime
# holds), as the dashboard reads it in the window's
FIRST_YEAR, LAST_YEAR = 2, 9998


def _zone(name: Any) -> ZoneInfo | None:
    """The IANA zone of that name, or None (not a string, unknown, or a path trick)."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith("/") or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _integer(value: Any) -> Any:
    """An integer as JSON or a form gives it ("300" from `call_plan[retries][busy][]=300`); else as it was."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return int(value)
    return value


def _minutes(value: Any, where: str, allow_end_of_day: bool) -> int:
    """"HH:MM" as minutes since midnight ("24:00", the end of the day, only for `to`)."""
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and (value[:2] + value[3:]).isdigit():
        hours, minutes = int(value[:2]), int(value[3:])
        total = hours * 60 + minutes
        if minutes < 60 and (total < END_OF_DAY or (allow_end_of_day and total == END_OF_DAY)):
            return total
    raise ValidationFailed.on(where, "is invalid (HH:MM, 24-hour)")


def _clock_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """Calling hours on some weekdays, in a time zone: [from, to) local time on each of `days`."""
    time_zone: str
    days: frozenset[int]  # date.weekday() numbers
    opens: int  # minutes since midnight
    closes: int  # minutes since midnight, after `opens`; END_OF_DAY is midnight

    @classmethod
    def parse(cls, value: Any, where: str = f"{FIELD}[window]") -> Window:
        if not isinstance(value, dict):
            raise ValidationFailed.on(where, "is invalid")
        unknown = sorted(set(value) - {"time_zone", "days", "from", "to"})
        if unknown:
            raise ValidationFailed.on(f"{where}[{unknown[0]}]", "is not a known parameter")
        if _zone(value.get("time_zone")) is None:
            raise ValidationFailed.on(f"{where}[time_zone]", "is not a known IANA time zone")
        days = value.get("days", list(DAYS))
        if not isinstance(days, list) or not days or not all(isinstance(d, str) and d.lower() in DAYS for d in days):
            raise ValidationFailed.on(f"{where}[days]", f"is invalid (some of {', '.join(DAYS)})")
        if "from" not in value or "to" not in value:
            raise ValidationFailed.on(f"{where}[{'from' if 'from' not in value else 'to'}]", "can't be blank")
        opens = _minutes(value["from"], f"{where}[from]", allow_end_of_day=False)
        closes = _minutes(value["to"], f"{where}[to]", allow_end_of_day=True)
        if closes <= opens:
            raise ValidationFailed.on(f"{where}[to]", "must be later than from")
        return cls(value["time_zone"], frozenset(DAYS.index(d.lower()) for d in days), opens, closes)

    def to_json(self) -> dict[str, Any]:
        return {"time_zone": self.time_zone, "days": [DAYS[day] for day in sorted(self.days)],
                "from": _clock_time(self.opens), "to": _clock_time(self.closes)}

    def zone(self) -> ZoneInfo:
        zone = _zone(self.time_zone)
        assert zone is not None  # checked by parse
        return zone

    def contains(self, instant: datetime, zone: ZoneInfo) -> bool:
        local = instant.astimezone(zone)
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.opens <= minute < self.closes

    def next_opening(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """`instant` itself when the window is open then, else the first instant after it when it opens."""
        if self.contains(instant, zone):
            return instant
        today = instant.astimezone(zone).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = _first_instant_at(day, self.opens, zone)
            if opening > instant and self.contains(opening, zone):
                return opening
        raise AssertionError("a window with a day opens within a week")  # parse guarantees one day at least

    def open_intervals(self, start: datetime, days_ahead: int = 400) -> Iterator[tuple[datetime, datetime]]:
        """The open hours from `start` on, in order, the first clipped to `start`."""
        zone = self.zone()
        today = start.astimezone(zone).date()
        for offset in range(-1, days_ahead):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = _first_instant_at(day, self.opens, zone)
            closes = (_first_instant_at(day + timedelta(days=1), 0, zone) if self.closes == END_OF_DAY
                      else _first_instant_at(day, self.closes, zone))
            if closes > start:
                yield max(opens, start), closes


def _first_instant_at(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The first instant whose local time on `day` is `minute` or later: the wall time itself, or the end of a
    daylight-saving gap that swallowed it (02:30 on a spring-forward night opens at 03:00); an hour that
    comes twice opens the first time."""
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    readings = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc) for fold in (0, 1)})
    real = [instant for instant in readings if instant.astimezone(zone).replace(tzinfo=None) == wall]
    if real:
        return real[0]
    # a gap: the opening is the transition, between the two readings; found to the second
    low, high = 0, int((readings[-1] - readings[0]).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (readings[0] + timedelta(seconds=middle)).astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return readings[0] + timedelta(seconds=high)


@dataclass(frozen=True)
class CallPlan:
    remote_request_params: dict[str, Any] | None = None
    max_attempts: int | None = None
    retries: dict[str, tuple[int, ...]] = field(default_factory=dict)  # outcome -> ladder of delays (seconds)
    window: Window | None = None
    not_after: datetime | None = None

    @classmethod
    def parse(cls, value: Any, cap: int | None = DEFAULT_MAX_ATTEMPTS_CAP, where: str = FIELD) -> CallPlan:
        """A stored or submitted plan (or a part of one), or ValidationFailed naming the field; `cap` None
        for a stored one (the operator may have lowered the cap since: `attempts_allowed` bounds it)."""
        if not isinstance(value, dict):
            raise ValidationFailed.on(where, "is invalid")
        unknown = sorted(set(value) - KEYS)
        if unknown:
            raise ValidationFailed.on(f"{where}[{unknown[0]}]", "is not a known parameter")
        params = None
        if value.get("remote_request_params") is not None:
            params = validate_remote_request_params(value["remote_request_params"], f"{where}[remote_request_params]")
        max_attempts = _integer(value.get("max_attempts"))
        if max_attempts is not None:
            if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
                raise ValidationFailed.on(f"{where}[max_attempts]", "must be an integer greater than 0")
            if cap is not None and max_attempts > cap:
                raise ValidationFailed.on(f"{where}[max_attempts]", f"must be less than or equal to {cap}")
        window = None if value.get("window") is None else Window.parse(value["window"], f"{where}[window]")
        return cls(params, max_attempts, _retries(value.get("retries"), f"{where}[retries]"), window,
                   _instant(value.get("not_after"), f"{where}[not_after]"))

    @classmethod
    def normalize(cls, value: Any, cap: int = DEFAULT_MAX_ATTEMPTS_CAP) -> dict[str, Any] | None:
        """What is stored of a submitted plan: its keys, each in one spelling (a key set to null stays, so that
        a callout can say "no window" over its account's); None clears the plan."""
        if value is None:
            return None
        plan = cls.parse(value, cap)
        stored: dict[str, Any] = {}
        for key in value:
            if value[key] is None:
                stored[key] = None
            elif key == "remote_request_params":
                stored[key] = plan.remote_request_params
            elif key == "max_attempts":
                stored[key] = plan.max_attempts
            elif key == "retries":
                stored[key] = {outcome: list(plan.retries.get(outcome, ())) for outcome in value[key]}
            elif key == "window" and plan.window is not None:
                stored[key] = plan.window.to_json()
            elif key == "not_after" and plan.not_after is not None:
                stored[key] = plan.not_after.isoformat()
        return stored

    def attempts_allowed(self, cap: int) -> int:
        """The most calls that reach the provider for one participation: the plan's, never above the cap."""
        return max(1, min(self.max_attempts or DEFAULT_MAX_ATTEMPTS, cap))

    def delay_after(self, outcome: str, calls_made: int) -> int | None:
        """Seconds to wait before calling again after a call that ended `outcome`, the participation's
        `calls_made`-th; None when that outcome is not retried. The ladder's last step repeats."""
        ladder = self.retries.get(outcome)
        if not ladder:
            return None
        return ladder[min(max(calls_made, 1), len(ladder)) - 1]

    def expired(self, now: datetime) -> bool:
        return self.not_after is not None and now >= self.not_after

    @property
    def expiry_message(self) -> str:
        """The reason an expired call gives (its remote_error_message)."""
        assert self.not_after is not None
        return f"Not dialed before the call plan's not_after ({self.not_after.isoformat()})"


def _retries(value: Any, where: str) -> dict[str, tuple[int, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed.on(where, "is invalid")
    ladders: dict[str, tuple[int, ...]] = {}
    for outcome, ladder in value.items():
        if outcome not in RETRYABLE_OUTCOMES:
            raise ValidationFailed.on(f"{where}[{outcome}]", f"is not one of {', '.join(RETRYABLE_OUTCOMES)}")
        if ladder is None:
            continue
        ladder = _integer(ladder)
        if isinstance(ladder, int) and not isinstance(ladder, bool):
            ladder = [ladder]
        if isinstance(ladder, list):
            ladder = [_integer(delay) for delay in ladder]
        if (not isinstance(ladder, list) or len(ladder) > MAX_LADDER_STEPS
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DELAY_SECONDS
                           for d in ladder)):
            raise ValidationFailed.on(f"{where}[{outcome}]", (
                f"is invalid (a list of at most {MAX_LADDER_STEPS} delays in seconds, "
                f"each from 0 to {MAX_DELAY_SECONDS})"))
        if ladder:
            ladders[outcome] = tuple(ladder)
    return ladders


def _instant(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationFailed.on(where, "is invalid (an ISO 8601 timestamp with its offset)")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValidationFailed.on(where, "is invalid (an ISO 8601 timestamp with its offset)") from None
    if instant.tzinfo is None:
        raise ValidationFailed.on(where, "must name its offset (e.g. 2026-12-01T18:00:00Z)")
    try:
        utc = instant.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first instant a datetime holds
        utc = None
    if utc is None or not FIRST_YEAR <= utc.year <= LAST_YEAR:
        raise ValidationFailed.on(where, f"is out of range (years {FIRST_YEAR} to {LAST_YEAR})")
    return instant


def contact_zone(metadata_time_zone: Any, msisdn: str | None, window: Window) -> ZoneInfo:
    """The time zone a contact's window is judged in: its metadata's `time_zone` when an IANA name, else its
    number's when the number has exactly one, else the window's."""
    zone = _zone(metadata_time_zone)
    if zone is not None:
        return zone
    if msisdn:
        try:
            names = number_time_zones.time_zones_for_number(phonenumbers.parse(msisdn, None))
        except phonenumbers.NumberParseException:
            names = ()
        if len(names) == 1 and (zone := _zone(names[0])) is not None:
            return zone
    return window.zone()

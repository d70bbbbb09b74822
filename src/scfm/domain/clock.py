"""Time, as something passed in: services take a `Clock` so that tests can set the time instead of waiting."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)

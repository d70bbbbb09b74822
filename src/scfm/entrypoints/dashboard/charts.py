"""Charts drawn on the server as SVG: no script and no library, and they print and scale as the page does.

A chart is a row of bars, one per minute (oldest first), each a stack of parts (an outcome each, or one part);
the template draws the rectangles these give and writes the same figures in a table beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 600, 150  # the drawing's own units (the SVG scales to the page)
LEFT, BOTTOM, TOP = 36, 20, 8  # room for the scale, the time labels and the top value


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    part: str  # the CSS class's suffix: an outcome, or "calls"
    value: int
    minute: datetime


@dataclass(frozen=True)
class Chart:
    rects: list[Rect]
    top: int  # the value at the top of the scale
    minutes: list[datetime]  # each bar's minute
    parts: list[str]  # the parts present, in drawing order
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM
    plot_top: int = TOP

    @property
    def baseline(self) -> int:
        return self.height - self.bottom

    def x_of(self, index: int) -> float:
        return self.left + index * (self.width - self.left) / max(1, len(self.minutes))


def _scale_top(highest: int) -> int:
    """A round value at or above the highest bar: 1, 2, 5, 10, 20, 50, ..."""
    power = 1
    while True:
        for step in (1, 2, 5):
            if power * step >= highest:
                return power * step
        power *= 10


def stacked(minutes: list[datetime], values: dict[datetime, dict[str, int]], order: list[str]) -> Chart:
    """A bar per minute of `minutes`, each the stack of its parts (in `order`) from `values`."""
    parts = [part for part in order if any(values.get(minute, {}).get(part) for minute in minutes)]
    highest = max([sum(values.get(minute, {}).values()) for minute in minutes] + [0])
    top = _scale_top(highest)
    chart = Chart([], top, minutes, parts)
    slot = (WIDTH - LEFT) / max(1, len(minutes))
    plot = chart.baseline - TOP
    for index, minute in enumerate(minutes):
        y = float(chart.baseline)
        for part in parts:
            value = values.get(minute, {}).get(part, 0)
            if value:
                height = plot * value / top
                y -= height
                chart.rects.append(Rect(round(chart.x_of(index) + slot * 0.1, 1), round(y, 1),
                                        round(slot * 0.8, 1), round(height, 1), part, value, minute))
    return chart

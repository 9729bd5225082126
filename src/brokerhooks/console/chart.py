"""A bar chart drawn on the server, as numbers for an inline SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

WIDTH = 720
HEIGHT = 200
TOP = 12
BOTTOM = 28  # room for the hour labels
LEFT = 36  # room for the scale
GAP = 4


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str
    """The hour, in the console's time zone (``14:00``)."""
    show_label: bool


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    baseline: int = HEIGHT - BOTTOM

    @property
    def summary(self) -> str:
        """The chart in one sentence, for people who cannot see it."""
        if not self.total:
            return "No events in the last 24 hours."
        busiest = max(self.bars, key=lambda bar: bar.count)
        return (
            f"{self.total} event(s) in the last 24 hours; the busiest hour was "
            f"{busiest.label} with {busiest.count}."
        )


def hourly_chart(counts: list[tuple[datetime, int]], zone: str) -> Chart:
    """Bars for ``(hour, count)`` pairs, oldest first; labels every 3 hours."""
    tz = ZoneInfo(zone)
    peak = max((count for _, count in counts), default=0)
    scale = _nice_ceiling(peak)
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(counts), 1)
    bars = []
    for position, (hour, count) in enumerate(counts):
        height = plot_height * count / scale if scale else 0.0
        bars.append(
            Bar(
                x=round(LEFT + position * slot + GAP / 2, 1),
                y=round(HEIGHT - BOTTOM - height, 1),
                width=round(slot - GAP, 1),
                height=round(height, 1),
                count=count,
                label=hour.astimezone(tz).strftime("%H:00"),
                show_label=position % 3 == 0,
            )
        )
    return Chart(bars=bars, peak=scale, total=sum(count for _, count in counts))


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``value``."""
    if value <= 0:
        return 0
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10

"""Durations as people write them: ``90s``, ``30m``, ``2h``, ``2d``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``2d`` → two days; ValueError naming the accepted forms otherwise."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, "
            "e.g. 90s, 30m, 2h, 2d or 1w"
        )
    return timedelta(**{_UNITS[match[2]]: float(match[1])})

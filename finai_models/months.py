"""Snapshot months are calendar months written ``YYYY-MM``; month t holds everything dated in it."""

from __future__ import annotations

import datetime as dt


def parse(month: str) -> tuple[int, int]:
    year, mon = month.split("-")
    return int(year), int(mon)


def shift(month: str, offset: int) -> str:
    year, mon = parse(month)
    index = year * 12 + (mon - 1) + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(start: str, end: str) -> list[str]:
    """Inclusive list of months from start to end."""
    count = diff(end, start) + 1
    return [shift(start, i) for i in range(max(count, 0))]


def diff(a: str, b: str) -> int:
    """Months from b to a."""
    (ya, ma), (yb, mb) = parse(a), parse(b)
    return (ya - yb) * 12 + (ma - mb)


def first_day(month: str) -> dt.date:
    year, mon = parse(month)
    return dt.date(year, mon, 1)


def days_in(month: str) -> int:
    return (first_day(shift(month, 1)) - first_day(month)).days

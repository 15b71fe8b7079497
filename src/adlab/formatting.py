"""The one way a number is written for people: study report cells, `adlab table` and the run summary line."""

from __future__ import annotations

import numbers


def format_number(value, key: str = "") -> str:
    """`value` as text: None as '-'; a fractional number (Python or NumPy float) with 4 decimals,
    or 1 decimal when it is 100 or more in size or `key` (its metric or column name) ends in
    'seconds' (timings: a tenth of a second is plenty); anything else (ints, text) as str() writes it."""
    if value is None:
        return "-"
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if key.endswith("seconds") or not abs(value) < 100:
            return f"{value:.1f}"
        return f"{value:.4f}"
    return str(value)


def clock(seconds: float) -> str:
    """A duration as people read it on a progress line: 0m09s, 12m30s, 2h05m."""
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"

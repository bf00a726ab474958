"""Small helpers that keep log lines, messages and artifacts readable: plurals and plain numbers."""

from __future__ import annotations

from collections.abc import Iterable


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 item', '3 items', '0 items' (`many` for irregular plurals: plural(2, 'window', 'windows'))."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def plain(value: float) -> str:
    """A coordinate as people write it: 3149984 or 123.25, never 3.14998e+06 (up to 10 decimals)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".") if abs(value) >= 1e-4 else f"{value:.10g}"


def plain_numbers(values: Iterable[float], sep: str = ", ") -> str:
    """Several coordinates, each `plain`: '650000, 3150000, 690000, 3190000'."""
    return sep.join(plain(v) for v in values)

"""Parsing of the sizes, rates and delays given on the `torswitch testbed` command line.

Sizes are binary (``8m`` is 8 MiB, as in Hadoop's ``dfs.blocksize``), rates are decimal bits per
second (``1gbit`` is 10**9 bit/s, as in tc), delays are milliseconds. Every parser raises
`BadValue` (a `ValueError`) with the offending text, so the CLI can print it unchanged.
"""

from __future__ import annotations

import re

from torswitch.testbed.errors import BadValue

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}

# tc(8) spells rates as bit, kbit, mbit, gbit (decimal); "bps" in tc means bytes per second,
# which is a classic trap, so only the unambiguous bit spellings are accepted.
_RATE_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
}

_DELAY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}

_NUMBER = r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*"


def parse_size(text: str) -> int:
    """Parse a byte size such as ``4m``, ``8MiB``, ``512k`` or ``1048576``.

    Returns the size in bytes. Raises `BadValue` for anything else, including fractions of a
    byte and zero.
    """
    m = re.fullmatch(_NUMBER, text)
    unit = m[2].lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise BadValue(f"bad size {text!r}: expected a number with k, m, g or t (binary units)")
    value = float(m[1]) * _SIZE_UNITS[unit]
    if value != int(value) or value <= 0:
        raise BadValue(f"bad size {text!r}: must be a positive whole number of bytes")
    return int(value)


def parse_rate(text: str) -> int:
    """Parse a link rate such as ``1gbit`` or ``40mbit``; returns bits per second.

    Raises `BadValue` for unknown units (``mbps`` is refused on purpose, see the module comment)
    or for rates below 8 kbit/s, which tc cannot shape usefully.
    """
    m = re.fullmatch(_NUMBER, text)
    unit = m[2].lower() if m else ""
    if not m or unit not in _RATE_UNITS:
        raise BadValue(f"bad rate {text!r}: expected e.g. 1gbit, 100mbit or 500kbit")
    value = float(m[1]) * _RATE_UNITS[unit]
    if value < 8000:
        raise BadValue(f"bad rate {text!r}: must be at least 8kbit")
    return int(value)


def parse_delay(text: str) -> float:
    """Parse a one-way delay such as ``0.2ms``, ``200us`` or ``0``; returns milliseconds.

    Raises `BadValue` for a missing or unknown unit (except a bare ``0``) and for delays above
    10 s, which would only make every test time out.
    """
    m = re.fullmatch(_NUMBER, text)
    if m and m[2] == "" and float(m[1]) == 0:
        return 0.0
    unit = m[2].lower() if m else ""
    if not m or unit not in _DELAY_UNITS:
        raise BadValue(f"bad delay {text!r}: expected e.g. 0.2ms, 200us or 0")
    value = float(m[1]) * _DELAY_UNITS[unit]
    if value > 10_000:
        raise BadValue(f"bad delay {text!r}: must be at most 10s")
    return value


def format_size(n: int) -> str:
    """Render a byte count for people: ``8.0 MiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_rate(bits_per_second: int) -> str:
    """Render a rate the way tc(8) accepts it back: ``1gbit``, ``40mbit``, ``1500kbit``."""
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits_per_second % factor == 0:
            return f"{bits_per_second // factor}{unit}"
    return f"{bits_per_second}bit"


def format_delay(ms: float) -> str:
    """Render a delay the way tc(8) accepts it back, in microseconds: ``200us``."""
    return f"{round(ms * 1000)}us"

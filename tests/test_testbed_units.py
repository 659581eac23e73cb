"""torswitch.testbed.units: command-line sizes, rates and delays."""

from __future__ import annotations

import pytest

from torswitch.testbed.errors import BadValue
from torswitch.testbed.units import (
    format_delay,
    format_rate,
    format_size,
    parse_delay,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4m", 4 << 20),
        ("8MiB", 8 << 20),
        ("512k", 512 << 10),
        ("1048576", 1 << 20),
        ("1.5g", 3 << 29),
        (" 2 MB ", 2 << 20),
        ("1t", 1 << 40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "m", "0", "-4m", "4x", "0.3", "1.5", "4 m b"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(BadValue, match="bad size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1gbit", 10**9), ("40mbit", 40 * 10**6), ("500kbit", 500_000), ("2.5Gbit", 25 * 10**8)],
)
def test_parse_rate(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["1gbps", "100mbps", "100", "fast", "1kbit", ""])
def test_parse_rate_rejects(text: str) -> None:
    # "bps" is bytes per second in tc: refused rather than silently 8x off.
    with pytest.raises(BadValue, match="bad rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("0.2ms", 0.2), ("200us", 0.2), ("1s", 1000.0), ("0", 0.0)]
)
def test_parse_delay(text: str, expected: float) -> None:
    assert parse_delay(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["5", "1h", "11s", "ms", "-1ms"])
def test_parse_delay_rejects(text: str) -> None:
    with pytest.raises(BadValue, match="bad delay"):
        parse_delay(text)


def test_bad_values_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_size("nope")


def test_formatting_round_trips_through_tc_spellings() -> None:
    assert format_rate(10**9) == "1gbit"
    assert format_rate(40 * 10**6) == "40mbit"
    assert format_rate(1_500_000) == "1500kbit"
    assert format_rate(1234) == "1234bit"
    for rate in (10**9, 40 * 10**6, 1_500_000):
        assert parse_rate(format_rate(rate)) == rate
    assert format_delay(0.2) == "200us"
    assert parse_delay(format_delay(0.2)) == pytest.approx(0.2)
    assert format_size(8 << 20) == "8.0 MiB"
    assert format_size(512) == "512 B"
    assert format_size(3 << 30) == "3.0 GiB"

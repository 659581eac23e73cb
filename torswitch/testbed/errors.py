"""Errors of the HDFS testbed. All are `TorswitchError`s, so the CLI prints them as one line."""

from __future__ import annotations

from torswitch.errors import TorswitchError


class TestbedError(TorswitchError):
    """Base of the testbed's errors."""

    # Keep pytest from collecting these classes when a test module imports them.
    __test__ = False


class BadValue(TestbedError, ValueError):
    """A command-line value (size, rate, delay, host or instance name) is malformed."""


class NotReady(TestbedError):
    """Something the testbed needs is missing: root, iproute2, Java, or the Hadoop jars."""


class AlreadyUp(TestbedError):
    """`up` was asked for an instance that is already up (or half up: run `down` first)."""


class NotUp(TestbedError):
    """The instance is not up, or not completely: a namespace or daemon is missing."""


class StartupFailed(TestbedError):
    """A step of `up` failed; the message says which and where its log is."""


class InUse(TestbedError):
    """Another process holds the instance's lock or owns the instance."""

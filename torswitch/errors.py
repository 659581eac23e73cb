"""The exception hierarchy, and the native status -> exception table.

One base (TorswitchError). Where callers expect a builtin, the subclass is also that builtin (a
bad config is a ValueError, a missing file a FileNotFoundError). Native statuses come from the
X-macro table in native/include/tsw/tsw_status.h; `_native` checks at import that every C status
has a class here, so the two lists cannot drift.
"""

from __future__ import annotations


class TorswitchError(Exception):
    """Base of every error torswitch raises on purpose."""


class ConfigError(TorswitchError, ValueError):
    """A configuration file or value is invalid. The message names file, pool and line."""


class NativeError(TorswitchError):
    """A status other than success returned by the native core."""

    status: str = "UNKNOWN"
    code: int = 0

    def __init__(self, operation: str, detail: str = "") -> None:
        self.operation = operation
        msg = f"{operation}: {self.status}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class NeedMore(NativeError):
    status = "NEED_MORE"


class NativeInvalidArgument(NativeError, ValueError):
    status = "EINVAL"


class NativeNoMemory(NativeError, MemoryError):
    status = "ENOMEM"


class NativeProtocolError(NativeError):
    status = "EPROTO"


class NativeNoSpace(NativeError):
    status = "ENOSPC"


class NativeNotFound(NativeError, LookupError):
    status = "ENOENT"


class NativeRangeError(NativeError, OverflowError):
    status = "ERANGE"


NATIVE_ERRORS: dict[str, type[NativeError]] = {
    cls.status: cls
    for cls in (
        NeedMore,
        NativeInvalidArgument,
        NativeNoMemory,
        NativeProtocolError,
        NativeNoSpace,
        NativeNotFound,
        NativeRangeError,
    )
}

"""Which failures are the input's or the environment's fault, and which may heal if retried."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Faults that no retry can heal: the path is wrong, forbidden, read-only or full.
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.EFBIG,
    }
)
ADVICE = {
    errno.ENOSPC: "free some space or choose another --data-dir",
    errno.EDQUOT: "free some space or choose another --data-dir",
    errno.EROFS: "choose a writable --data-dir",
    errno.EACCES: "choose a --data-dir this user may write, or fix its permissions",
    errno.EPERM: "choose a --data-dir this user may write, or fix its permissions",
}


class InvalidInputError(ValueError):
    """Bad configuration or bad data; the message is one line a person can act on."""


def is_transient(error: BaseException) -> bool:
    """Retry timeouts, resets, busy or interrupted I/O; never bad input, a bug or a full disk."""
    if isinstance(error, InvalidInputError) or not isinstance(error, OSError):
        return False
    return error.errno not in PERMANENT_ERRNOS


def environment_problem(error: BaseException | None) -> str | None:
    """One line naming a permanent storage fault and what to do, or None for anything else."""
    if not isinstance(error, OSError) or is_transient(error):
        return None
    where = f": {error.filename}" if error.filename else ""
    advice = ADVICE.get(error.errno or 0, "check the path")
    return f"{error.strerror or error}{where} ({advice})"


def or_bad_input(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | InvalidInputError:
    """`work`'s result, or the bad input that refused it: in a batch, one item's own problem."""
    try:
        return work(*args, **kwargs)
    except InvalidInputError as exc:
        return exc


def is_expected_failure(error: BaseException | None) -> bool:
    """Bad input or a permanent storage fault: the person needs one line, not a traceback."""
    return isinstance(error, InvalidInputError) or environment_problem(error) is not None


class UnusableVersionError(InvalidInputError):
    """A version that cannot serve forecasts; as a champion it counts as none."""


def unusable(version: str, why: str) -> UnusableVersionError:
    return UnusableVersionError(f"version {version} cannot serve: {why}")

"""What a run may touch and what it may cost, as the operator of the machine decides.

A run's own parameters cannot widen any of this: a deployment takes its whole config from
an event or an API call, which anyone who can reach the Prefect API can forge. So the rules
come from the environment of the process that runs the flow (the worker's, for deployments):

- ``WAVECAST_ALLOWED_ROOTS``: comma-separated directories or URI prefixes that every data
  dir and source must lie inside (symlinks resolved, as the path fsspec opens; '..' in a
  remote URI refused however it is percent-encoded). Unset: anywhere this user may reach,
  except in a run a worker started for a deployment, which its flow confines to its working
  directory and the data dir and source its deployment names (tasks.prefect_support), and
  which a run's own job variables may not set.
  A chained URL (``a::b``), which fsspec opens link by link, is refused whatever the roots.
- ``WAVECAST_ALLOWED_SCHEMES``: the URI schemes a location may use.
- ``WAVECAST_MAX_EPOCHS``, ``WAVECAST_MAX_UNITS``, ``WAVECAST_MAX_POINTS``,
  ``WAVECAST_MAX_SERIES``: ceilings on what costs compute, which an operator can raise.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wavecast.errors import InvalidInputError

ENV_PREFIX = "WAVECAST_"
ROOTS_VARIABLE = f"{ENV_PREFIX}ALLOWED_ROOTS"
# The validation context of a record read back from a data dir (a manifest, a completion
# record): the ceilings judged the run that wrote it, and lowering one later must not make
# the stored champion unreadable.
STORED_RECORD = {"stored_record": True}
# Local files and the object stores and web sources wavecast has extras for; nothing that
# opens archives, caches or other protocols (zip://, ftp://, simplecache::...).
DEFAULT_SCHEMES = (
    "file",
    "local",
    "memory",
    "s3",
    "s3a",
    "gs",
    "gcs",
    "az",
    "abfs",
    "abfss",
    "http",
    "https",
)


def comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaSeparated = Annotated[tuple[str, ...], NoDecode, BeforeValidator(comma_separated)]


class OperatorLimits(BaseSettings):
    """Read from the environment on every check, so a worker's settings apply to its runs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    allowed_roots: CommaSeparated = ()
    allowed_schemes: CommaSeparated = DEFAULT_SCHEMES
    max_epochs: int = Field(10_000, ge=1)
    max_units: int = Field(4_096, ge=1)
    max_points: int = Field(10_000_000, ge=2)
    max_series: int = Field(100_000, ge=1)


def operator_limits() -> OperatorLimits:
    """The limits the environment sets now; parsed once per distinct set of WAVECAST_
    variables, since a panel checks them thousands of times (~1 ms a parse)."""
    prefix = len(ENV_PREFIX)
    names = sorted(name for name in os.environ if name[:prefix].upper() == ENV_PREFIX)
    return parsed_limits(tuple((name, os.environ[name]) for name in names))


@functools.lru_cache(maxsize=16)
def parsed_limits(environment: tuple[tuple[str, str], ...]) -> OperatorLimits:
    """OperatorLimits read from the environment, which `environment` (the cache key) mirrors."""
    try:
        return OperatorLimits()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}"
        raise InvalidInputError(f"{name}: {error['msg']}") from None


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def local_path(uri: str) -> Path:
    """The resolved local path of a plain path or file:// URI: symlinks followed, as the OS
    would follow them when the file is opened."""
    path = uri.split("://", 1)[1] if "://" in uri else uri
    return Path(os.path.realpath(Path(path).expanduser()))


def fully_unquoted(uri: str) -> str:
    """`uri` percent-decoded until nothing changes: what a server that decodes it (once, or
    again after a proxy did) may take it for."""
    while (decoded := unquote(uri)) != uri:
        uri = decoded
    return uri


def is_inside(uri: str, root: str) -> bool:
    if scheme_of(root) in ("file", "local") and scheme_of(uri) in ("file", "local"):
        return local_path(uri).is_relative_to(local_path(root))
    # A remote store may resolve '..' (spelled %2e%2e, even twice encoded) where the prefix
    # does not hold.
    if ".." in fully_unquoted(uri).replace("\\", "/").split("/"):
        return False
    prefix = unquote(root).rstrip("/")
    return unquote(uri) == prefix or unquote(uri).startswith(f"{prefix}/")


def check_location(uri: str, flag: str) -> None:
    """Refuse a location whose scheme or place the operator did not allow, naming the rule."""
    if "::" in uri:  # fsspec opens every link of a chain: one location is judged, one opened
        raise InvalidInputError(f"{flag} {uri}: a chained URL (::) is not allowed: give one place")
    limits = operator_limits()
    scheme = scheme_of(uri)
    if scheme not in limits.allowed_schemes:
        raise InvalidInputError(
            f"{flag} {uri}: the {scheme}:// scheme is not allowed (allowed: "
            f"{', '.join(limits.allowed_schemes)}; the operator's {ENV_PREFIX}ALLOWED_SCHEMES)"
        )
    check_inside(uri, uri, flag)


def check_inside(opened: str, uri: str, flag: str) -> None:
    """Refuse `uri` when `opened` (itself, or the path a filesystem resolved it to) lies
    outside every allowed root; with no roots set, everywhere is allowed."""
    roots = operator_limits().allowed_roots
    if roots and not any(is_inside(opened, root) for root in roots):
        raise InvalidInputError(
            f"{flag} {uri}: outside the allowed roots ({', '.join(roots)}), "
            f"which the operator sets in {ROOTS_VARIABLE}"
        )


def field_within(value: int, limit_name: str, info: ValidationInfo) -> int:
    """check_within for a config field, except in a stored record (STORED_RECORD)."""
    if info.context and info.context.get("stored_record"):
        return value
    return check_within(value, limit_name)


def check_within(value: int, limit_name: str, what: str | None = None) -> int:
    """`value`, if it is within the operator's ceiling `limit_name` (e.g. "max_epochs");
    `what` names it, unless the caller (a config field's validation) already does."""
    limit = int(getattr(operator_limits(), limit_name))
    if value > limit:
        named = f"{what} is {value}," if what else f"{value} is"
        raise InvalidInputError(
            f"{named} above this machine's limit of {limit} "
            f"(the operator can raise {ENV_PREFIX}{limit_name.upper()})"
        )
    return value

"""Series dirs: how a panel data dir names each series' own data dir, and reads the ids back.

Series `key` keeps its data under <panel>/series/<series_slug(key)>; the same slug names its
hive partition in the forecasts dataset (forecasts_store).
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote, unquote

from wavecast.errors import InvalidInputError
from wavecast.storage import DataDir

SERIES_DIR = "series"  # a panel's data dir holds each series' own data dir under it
ID_FILE = "series-id.json"  # beside a hashed directory name: the id it stands for
MAX_NAME = 128  # characters of a directory name that is the id itself, percent-encoded
HASHED_PREFIX = 48  # characters of the id kept, encoded, before a hashed name's hash


def encoded_id(key: str) -> str:
    """The id percent-encoded, dots too, so it is never a path trick: ASCII, no `/`, no `.`."""
    return quote(key, safe="", errors="surrogatepass").replace(".", "%2E")


def series_slug(key: str) -> str:
    """A directory name for any id, the same in every series dir and hive partition.

    An id whose encoding is 1-128 characters is named by it, as it always was, so existing
    data dirs keep their names. A longer (or empty) one would exceed what file systems allow
    (255 bytes, a CJK character encodes to 9): it is named by its first characters, a dot and
    32 hex digits of its SHA-256. An encoding never holds a dot, so the two kinds never meet.
    """
    encoded = encoded_id(key)
    if 0 < len(encoded) <= MAX_NAME:
        return encoded
    prefix = ""
    for char in key:  # whole characters: a partition's decoded value stays valid UTF-8
        piece = encoded_id(char)
        if len(prefix) + len(piece) > HASHED_PREFIX:
            break
        prefix += piece
    digest = hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()[:32]
    return f"{prefix or '_'}.{digest}"


def slug_key(slug: str) -> str | None:
    """The id a directory name spells, or None for a hashed name (its id is stored beside)."""
    return None if "." in slug else unquote(slug, errors="surrogatepass")


def claim_series_dir(own: DataDir, key: str) -> DataDir:
    """Series `key`'s own data dir, with its id stored beside a hashed name so listing the
    panel gives the ids back; refused when that directory is another id's."""
    if slug_key(series_slug(key)) is None:
        if not own.exists(ID_FILE):
            own.write_bytes(json.dumps({"id": key}).encode(), ID_FILE)
        elif stored_key(own) != key:
            raise InvalidInputError(
                f"{own.uri()}: its {ID_FILE} does not name this series: move that directory away"
            )
    return own


def stored_key(series_dir: DataDir) -> str | None:
    """The id in a series dir's ID_FILE; None when it is missing or damaged."""
    try:
        key = series_dir.read_json(ID_FILE).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def series_dir_keys(store: DataDir) -> list[str]:
    """The ids of the series a panel data dir holds, in their directories' order; a hashed
    directory without its id (a series stored while this ran, or damaged) is left out."""
    keys = []
    for name in store.list_dir(SERIES_DIR):
        key = slug_key(name)
        if key is None:
            key = stored_key(DataDir(store.uri(SERIES_DIR, name)))
        if key is not None and series_slug(key) == name:
            keys.append(key)
    return keys


def panel_root_of(own: DataDir, key: str) -> str | None:
    """The panel data dir in which `own` is series `key`'s own data dir, if it is one. Told
    from the path's last two names alone: opening the candidate root would be refused when it
    lies outside the operator's allowed roots (any data dir directly inside one, such as a
    worker's data/), and every caller asks about a data dir that may not be a series'."""
    root, *names = own.uri().rsplit("/", 2)
    return root if root and names == [SERIES_DIR, series_slug(key)] else None

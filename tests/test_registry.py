"""The model registry's names, listing, name checks and champion log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from wavecast import registry
from wavecast.errors import InvalidInputError
from wavecast.evaluate import Metrics
from wavecast.registry import (
    checked_version,
    list_versions,
    record_champion,
    version_name,
)
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit

UTC = timezone.utc
METRICS = Metrics(mse=0.5, rmse=0.5**0.5, mae=0.4)
V1, V2, V3 = "20240102T030405Z-aaaaaaaa", "20240102T030406Z-bbbbbbbb", "20250101T000000Z-cccccccc"


def make_dir(root: Path, name: str, complete: bool = True) -> None:
    (root / "models" / name).mkdir(parents=True)
    if complete:
        (root / "models" / name / "_COMPLETE").write_text("complete\n")


def test_version_name_format() -> None:
    """UTC timestamp to the second, 'Z', then the first 8 characters of the training id."""
    when = datetime(2024, 1, 2, 3, 4, 5, 999, tzinfo=UTC)
    assert version_name(when, "0123456789abcdef") == "20240102T030405Z-01234567"
    assert registry.VERSION_PATTERN.match(version_name(when, "0123456789abcdef"))


def test_version_name_converts_to_utc() -> None:
    """A +02:00 clock at 01:30 on Jan 1 is 23:30 UTC the day before."""
    when = datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert version_name(when, "ffffffffffff") == "20231231T233000Z-ffffffff"


def test_version_names_sort_chronologically() -> None:
    """String order is time order, across seconds, days, months and years."""
    base = datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC)
    steps = [timedelta(seconds=s) for s in (0, 1, 2, 3600, 86400 * 40, 86400 * 400)]
    names = [version_name(base + step, f"{9 - i:x}" * 8) for i, step in enumerate(steps)]
    assert sorted(names) == names


def test_list_versions_only_complete_well_named_dirs(tmp_path: Path) -> None:
    """Staging leftovers, incomplete dirs, stray names and files are ignored; oldest first."""
    for name in (V3, V1, V2):
        make_dir(tmp_path, name)
    make_dir(tmp_path, V1 + ".staging-0123abcd")
    make_dir(tmp_path, V1 + ".staging-retired-0123abcd")
    make_dir(tmp_path, "20240102T030407Z-dddddddd", complete=False)
    make_dir(tmp_path, "not-a-version")
    (tmp_path / "models" / "champion.json").write_text("{}")
    assert list_versions(DataDir(str(tmp_path))) == [V1, V2, V3]


def test_list_versions_of_an_empty_registry(tmp_path: Path) -> None:
    """No models directory yet: no versions, no error."""
    assert list_versions(DataDir(str(tmp_path))) == []


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        f"../models/{V1}",
        f"/{V1}",
        "/etc/passwd",
        f"{V1}/..",
        f"{V1}\n",
        "20240102T030407Z-dddddddd",  # incomplete
        "20240102T030408Z-eeeeeeee",  # unknown
        "latest",
        "",
    ],
)
def test_checked_version_rejects_anything_but_a_complete_version(tmp_path: Path, name: str) -> None:
    """Path tricks, bad names and unknown or incomplete versions are InvalidInputError."""
    make_dir(tmp_path, V1)
    make_dir(tmp_path, "20240102T030407Z-dddddddd", complete=False)
    with pytest.raises(InvalidInputError, match="no model version"):
        checked_version(DataDir(str(tmp_path)), name)


def test_checked_version_accepts_a_complete_version(tmp_path: Path) -> None:
    """A complete, well-named version comes back unchanged."""
    make_dir(tmp_path, V1)
    assert checked_version(DataDir(str(tmp_path)), V1) == V1


def test_record_champion_writes_champion_and_appends_one_line(tmp_path: Path) -> None:
    """Each call: champion.json names the version; exactly one new log line names the previous."""
    store = DataDir(str(tmp_path))
    log = tmp_path / "models" / "promotions.jsonl"
    for count, (version, previous) in enumerate([(V1, None), (V2, V1), (V3, V2)], start=1):
        record_champion(store, version, METRICS, "promote", f"because {count}")
        champion = json.loads((tmp_path / "models" / "champion.json").read_text())
        assert champion["version"] == version and champion["metrics"] == METRICS.model_dump(
            mode="json"
        )
        lines = log.read_text().splitlines()
        assert len(lines) == count
        event = json.loads(lines[-1])
        assert (event["version"], event["replaced"]) == (version, previous)
        assert (event["action"], event["reason"]) == ("promote", f"because {count}")
    assert [json.loads(line)["version"] for line in log.read_text().splitlines()] == [V1, V2, V3]

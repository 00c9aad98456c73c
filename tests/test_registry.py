"""The model registry's names, listing, name checks and champion log; which versions can
serve, and promote and rollback refusing the ones that cannot.

The helpers here build complete versions by hand (a naive forecaster needs no TensorFlow),
for the forecast and command-line tests too.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavecast import registry
from wavecast.config import RetrainConfig, SeriesSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.evaluate import ERRORS_FILE, SPEC_FILE, Published
from wavecast.forecasters.forecaster import ForecasterSpec
from wavecast.forecasters.network import NetworkForecaster
from wavecast.generate import SeriesRef
from wavecast.metrics import Metrics
from wavecast.records import Manifest
from wavecast.registry import (
    UnusableVersionError,
    checked_version,
    list_versions,
    record_champion,
    servable,
    version_name,
)
from wavecast.storage import DataDir
from wavecast.windows import DatasetInfo

pytestmark = pytest.mark.unit

UTC = timezone.utc
METRICS = Metrics(mse=0.5, rmse=0.5**0.5, mae=0.4)
V1, V2, V3 = "20240102T030405Z-aaaaaaaa", "20240102T030406Z-bbbbbbbb", "20250101T000000Z-cccccccc"


SECRET = "aws_secret_access_key = AKIDSECRET"  # what a damaged file holds; never quoted
HELD_OUT_ERRORS = np.arange(1.0, 21.0)  # 20 windows: 80 % -> the 17th smallest, 95 % -> 20th


def manifest_for(windows: WindowSpec, series: SeriesSpec, forecaster: str) -> Manifest:
    """The smallest honest manifest: the config, window geometry and what the version serves."""
    return Manifest(
        created=datetime(2024, 1, 2, tzinfo=UTC),
        config=RetrainConfig(series=series, windows=windows),
        series=SeriesRef(
            series_id="s",
            uri="u",
            source=series.source,
            column=None,
            n_points=100,
            content_hash="h",
        ),
        dataset=DatasetInfo(
            dataset_id="d", uri="u", spec=windows, n_windows=90, n_train=70, n_test=20
        ),
        seed=0,
        metrics=METRICS,
        baselines={"persistence": METRICS},
        published=Published(forecaster=forecaster, mse=METRICS.mse),
    )


def version_with(
    data_dir: Path,
    name: str,
    files: dict[str, bytes],
    windows: WindowSpec | None = None,
    series: SeriesSpec | None = None,
    forecaster: str = "naive",
) -> str:
    """A complete version: its manifest, held-out errors and `files` (what it serves)."""
    windows, series = windows or WindowSpec(), series or SeriesSpec()
    folder = data_dir / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    manifest = manifest_for(windows, series, forecaster)
    (folder / "manifest.json").write_text(manifest.model_dump_json())
    errors = io.BytesIO()
    np.save(errors, np.repeat(HELD_OUT_ERRORS[:, None], windows.steps, axis=1))
    (folder / ERRORS_FILE).write_bytes(errors.getvalue())
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content)
    (folder / "_COMPLETE").write_text("complete\n")
    return name


LOG_FILES = ("champion.json", "promotions.jsonl")


def linear_spec(weights: list[list[float]]) -> bytes:
    """A linear AR's forecaster.json (json writes infinity and NaN as pydantic reads them)."""
    spec = {"forecaster": "linear", "season": 1, "members": ["linear"], "weights": weights}
    return json.dumps(spec).encode()


NAIVE = ForecasterSpec(forecaster="naive", season=1, members=("naive",))


def naive_version(data_dir: Path, name: str, **manifest: Any) -> str:
    """A version serving the naive forecast (the last value, at every step)."""
    return version_with(data_dir, name, {SPEC_FILE: NAIVE.model_dump_json().encode()}, **manifest)


def keras_file(
    tmp_path: Path, input_len: int, steps: int, code: bool = False, fill: float | None = None
) -> bytes:
    """A saved window model: `input_len` values in, `steps` out; with `code`, a Lambda layer
    that safe_mode refuses to deserialize; with `fill`, every weight that value."""
    import keras

    window = keras.Input(shape=(input_len,))
    hidden = keras.layers.Lambda(lambda x: x * 2)(window) if code else window
    path = tmp_path / f"model-{input_len}-{steps}-{code}-{fill}.keras"
    model = keras.Model(window, keras.layers.Dense(steps)(hidden))
    if fill is not None:
        with np.errstate(over="ignore"):  # 1e308 is infinite in float32
            model.set_weights([np.full_like(weight, fill) for weight in model.get_weights()])
    model.save(path)
    return path.read_bytes()


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


# --- which versions can serve ------------------------------------------------------------


def test_a_naive_version_serves_its_spec(tmp_path: Path) -> None:
    naive_version(tmp_path, V1)
    served = servable(DataDir(str(tmp_path)), V1).forecaster
    assert served.forecast(np.array([1.0, 3.0]), horizon=1, steps=2).tolist() == [3.0, 3.0]


def combined_spec(members: str, weights: str) -> bytes:
    spec = f'"forecaster": "combination", "season": 1, "members": [{members}]'
    return ("{" + spec + f', "member_weights": [{weights}]' + "}").encode()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (SECRET.encode(), "forecaster.json is not a forecaster spec"),
        (b"", "forecaster.json is not a forecaster spec"),
        (b"\xff\xfe", "forecaster.json is not a forecaster spec"),
        (b'{"forecaster": "naive", "season": 1}', "forecaster.json is not a forecaster spec"),
        (b'{"forecaster": "x", "season": 1, "members": ["os.system"]}', "names no known"),
        (b'{"forecaster": "x", "season": 1, "members": []}', "names no known"),
        (b'{"forecaster": "naive", "season": 0, "members": ["naive"]}', "names no known"),
        (linear_spec([[1.0]] * 5), "no finite linear AR weights of shape (6, 1)"),
        (linear_spec([[1.0, 2.0]] * 6), "no finite linear AR weights of shape (6, 1)"),
        (linear_spec([[1.0]] * 5 + [[1.0, 2.0]]), "no finite linear AR weights"),
        (linear_spec([[1.0]] * 5 + [[math.inf]]), "no finite linear AR weights"),
        (linear_spec([[math.nan]] * 6), "no finite linear AR weights"),
        (linear_spec([]), "no finite linear AR weights"),
        (combined_spec('"naive", "linear"', "0.5, 0.5"), "no finite linear AR weights"),
        (combined_spec('"naive", "ets"', "0.5"), "no finite weight per combined member"),
        (combined_spec('"naive", "ets"', "0.5, NaN"), "no finite weight per combined member"),
        (combined_spec('"naive", "ets"', "1.5, -0.5"), "no finite weight per combined member"),
        (combined_spec('"naive", "ets"', "1e308, 1e308"), "no finite weight per combined member"),
        (combined_spec('"naive", "ets"', "0.5, 0.6"), "no finite weight per combined member"),
        (linear_spec([[1e308]] * 6), "or weights whose forecasts overflow"),
        (linear_spec([[1e300]] * 5 + [[1.0]]), "or weights whose forecasts overflow"),
    ],
)
def test_a_damaged_forecaster_spec_cannot_serve(tmp_path: Path, content: bytes, why: str) -> None:
    version_with(tmp_path, V1, {SPEC_FILE: content})
    with pytest.raises(UnusableVersionError) as raised:
        servable(DataDir(str(tmp_path)), V1)
    assert str(raised.value).startswith(f"version {V1} cannot serve: ")
    assert why in str(raised.value) and "AKID" not in str(raised.value)


def test_an_edited_spec_does_not_serve_under_its_manifest_s_label(tmp_path: Path) -> None:
    """The manifest records naive (season 1): a spec edited to ETS, or to season 12, would be
    shown as naive; a spec written before seasons were recorded still serves."""
    store = DataDir(str(tmp_path))
    for name, spec in ((V1, '"ets", "season": 1'), (V2, '"naive", "season": 12')):
        content = f'{{"forecaster": {spec}, "members": [{spec.split(",")[0]}]}}'.encode()
        version_with(tmp_path, name, {SPEC_FILE: content})
        with pytest.raises(UnusableVersionError) as raised:
            servable(store, name)
        assert str(raised.value) == (
            f"version {name} cannot serve: forecaster.json is not the forecaster or season its "
            "manifest.json records"
        )
    manifest = json.loads((tmp_path / "models" / V2 / "manifest.json").read_text())
    del manifest["published"]["season"]
    (tmp_path / "models" / V2 / "manifest.json").write_text(json.dumps(manifest))
    assert servable(store, V2).forecaster.forecast(np.array([1.0, 3.0]), 1, 1).tolist() == [3.0]


def test_a_version_without_manifest_or_forecaster_cannot_serve(tmp_path: Path) -> None:
    store = DataDir(str(tmp_path))
    version_with(tmp_path, V1, {})
    make_dir(tmp_path, V2)
    with pytest.raises(UnusableVersionError, match=r"neither model\.keras nor forecaster\.json"):
        servable(store, V1)
    with pytest.raises(UnusableVersionError, match=r"manifest\.json missing or damaged"):
        servable(store, V2)


def test_a_linear_ar_serves_its_weights_on_the_last_window(tmp_path: Path) -> None:
    """Input 5, 2 steps: step 1 is the last value + 0.5, step 2 the mean of the first two."""
    weights = [[0.0, 0.5], [0.0, 0.5], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]
    windows = WindowSpec(steps=2)
    version_with(
        tmp_path, V1, {SPEC_FILE: linear_spec(weights)}, windows=windows, forecaster="linear"
    )
    served = servable(DataDir(str(tmp_path)), V1).forecaster
    values = np.array([9.0, 1.0, 3.0, 5.0, 7.0, 8.0])  # the window is its last five
    assert served.forecast(values, horizon=1, steps=2).tolist() == [8.5, 2.0]


def test_a_keras_model_of_the_version_s_geometry_serves(tmp_path: Path) -> None:
    """Input 5 points, 3 steps out: the geometry the manifest names."""
    windows = WindowSpec(steps=3)
    model = keras_file(tmp_path, 5, 3)
    version_with(tmp_path, V1, {"model.keras": model}, windows=windows, forecaster="linear")
    served = servable(DataDir(str(tmp_path)), V1).forecaster
    assert isinstance(served, NetworkForecaster)
    assert served.model.input_shape == (None, 5) and served.model.output_shape == (None, 3)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("garbage", "model.keras does not load with safe_mode (ValueError)"),
        ("truncated", "model.keras does not load with safe_mode (ValueError)"),
        ("lambda", "model.keras does not load with safe_mode (ValueError)"),
        ("other input", "model.keras does not forecast 1 step(s) from a window of 5 point(s)"),
        ("other steps", "model.keras does not forecast 1 step(s) from a window of 5 point(s)"),
        ("nan weights", "model.keras holds weights that are not finite"),
        ("1e308 weights", "model.keras holds weights that are not finite"),
    ],
)
def test_a_damaged_keras_model_cannot_serve_and_is_never_promoted(
    tmp_path: Path, damage: str, why: str
) -> None:
    """Garbage, a cut-off archive, code safe_mode refuses, or a model of other windows:
    promote refuses it in one line and the champion and its log stay as they were."""
    data_dir = tmp_path / "data"
    good = keras_file(tmp_path, 5, 1)
    content = {
        "garbage": SECRET.encode(),
        "truncated": good[: len(good) // 2],
        "lambda": keras_file(tmp_path, 5, 1, code=True),
        "other input": keras_file(tmp_path, 7, 1),
        "other steps": keras_file(tmp_path, 5, 2),
        "nan weights": keras_file(tmp_path, 5, 1, fill=math.nan),
        "1e308 weights": keras_file(tmp_path, 5, 1, fill=1e308),  # float32: infinite
    }[damage]
    store = DataDir(str(data_dir))
    naive_version(data_dir, V1)
    version_with(data_dir, V2, {"model.keras": content}, forecaster="network")
    record_champion(store, V1, METRICS, "promote", "first")
    before = {name: (data_dir / "models" / name).read_bytes() for name in LOG_FILES}

    with pytest.raises(UnusableVersionError) as raised:
        registry.promote_manually(store, V2, "try it")

    assert str(raised.value) == f"not promoted: version {V2} cannot serve: {why}"
    assert {name: (data_dir / "models" / name).read_bytes() for name in LOG_FILES} == before


def test_rollback_refuses_a_previous_champion_that_can_no_longer_serve(tmp_path: Path) -> None:
    store = DataDir(str(tmp_path))
    naive_version(tmp_path, V1)
    naive_version(tmp_path, V2)
    naive_version(tmp_path, V3)
    for version in (V1, V2, V3):
        record_champion(store, version, METRICS, "promote", "better")
    (tmp_path / "models" / V2 / SPEC_FILE).write_text(SECRET)
    before = {name: (tmp_path / "models" / name).read_bytes() for name in LOG_FILES}

    with pytest.raises(UnusableVersionError) as raised:
        registry.roll_back(store, "bad release")

    assert str(raised.value) == (
        f"not rolled back: version {V2} cannot serve: forecaster.json is not a forecaster spec; "
        "promote a version that can (wavecast models list)"
    )
    assert {name: (tmp_path / "models" / name).read_bytes() for name in LOG_FILES} == before
    (tmp_path / "models" / V2 / SPEC_FILE).write_text(NAIVE.model_dump_json())
    assert registry.roll_back(store, "bad release").version == V2


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=256), name=st.sampled_from([SPEC_FILE, "model.keras"]))
def test_whatever_a_served_file_holds_it_serves_or_says_why_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, name: str
) -> None:
    """Any bytes: UnusableVersionError naming the file (never another exception, never the
    bytes), or a forecaster."""
    data_dir = tmp_path_factory.mktemp("registry")
    version_with(data_dir, V1, {name: content})
    try:
        servable(DataDir(str(data_dir)), V1)
    except UnusableVersionError as exc:
        message = str(exc)
        assert message.startswith(f"version {V1} cannot serve: {name} ")
        assert len(message.splitlines()) == 1
        shown = content.decode(errors="ignore").strip()
        assert len(shown) < 8 or shown not in message

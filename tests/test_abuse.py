"""Faults and abuse, one class at a time: damaged registry files, numbers the math refuses,
permanent storage faults, URIs and compressed sources, staging leftovers.

The command-line promises (exit 2, one line, nothing written) are checked end to end in
test_cli_abuse.py; here each mechanism is checked where it lives.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import json
import lzma
import math
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.test_registry import naive_version
from wavecast import registry
from wavecast.config import RetrainConfig, SeriesSpec
from wavecast.errors import InvalidInputError, environment_problem, is_transient
from wavecast.generate import MAX_MAGNITUDE, load_series
from wavecast.metrics import Metrics
from wavecast.records import PromotionEvent
from wavecast.staging import STAGING_TAG
from wavecast.storage import DataDir
from wavecast.validate import check_data_dir, training_bytes, validate_inputs

pytestmark = pytest.mark.unit

V1, V2, V3 = "20240102T030405Z-aaaaaaaa", "20240102T030406Z-bbbbbbbb", "20250101T000000Z-cccccccc"
METRICS = Metrics(mse=0.25, rmse=0.5, mae=0.4)
GIB = 2**30


def complete_versions(root: Path, *names: str) -> DataDir:
    """Complete version directories with no manifest: enough for champion bookkeeping."""
    for name in names:
        (root / "models" / name).mkdir(parents=True, exist_ok=True)
        (root / "models" / name / "_COMPLETE").write_text("complete\n")
    return DataDir(str(root))


def promoted_twice(root: Path) -> DataDir:
    store = complete_versions(root, V1, V2, V3)
    registry.record_champion(store, V1, METRICS, "promote", "first")
    registry.record_champion(store, V2, METRICS, "promote", "second")
    return store


# --- 1. damaged registry files ----------------------------------------------------------

damaged_json = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{", b"", b"null", b"[]", b'{"version": 3}', b"\xff\xfe", b'{"version":']),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=damaged_json)
def test_a_damaged_champion_file_falls_back_to_the_log_and_heals(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    """Whatever champion.json holds, the champion is the log's, and promote rewrites it."""
    store = promoted_twice(tmp_path_factory.mktemp("registry"))
    (Path(store.root) / "models" / "champion.json").write_bytes(garbage)

    champion = registry.read_champion(store)
    assert champion is not None and champion.version == V2
    assert [row.version for row in registry.version_rows(store)] == [V1, V2, V3]
    naive_version(Path(store.root), V3)  # promote takes only a version that can serve
    registry.promote_manually(store, V3, "repair")
    assert json.loads((Path(store.root) / "models" / "champion.json").read_text())["version"] == V3


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=damaged_json.filter(lambda b: b"\n" not in b))
def test_a_damaged_log_line_is_skipped_and_dropped_on_the_next_write(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    """A torn or edited line costs that line only; rollback still walks back; writes heal."""
    store = promoted_twice(tmp_path_factory.mktemp("registry"))
    log = Path(store.root) / "models" / "promotions.jsonl"
    log.write_bytes(log.read_bytes() + garbage + b"\n")

    assert [e.version for e in registry.read_promotions(store)] == [V1, V2]
    naive_version(Path(store.root), V1)  # rollback returns only to a version that can serve
    assert registry.roll_back(store, "bad release").version == V1
    for line in log.read_text().splitlines():  # every line is a record again
        PromotionEvent.model_validate_json(line)


def test_both_champion_and_log_damaged_means_no_champion(tmp_path: Path) -> None:
    store = promoted_twice(tmp_path)
    (tmp_path / "models" / "champion.json").write_text("{")
    (tmp_path / "models" / "promotions.jsonl").write_text("{\n")
    assert registry.read_champion(store) is None
    naive_version(tmp_path, V1)
    assert registry.promote_manually(store, V1, "start over").version == V1


def test_a_version_without_manifest_is_listed_as_damaged(tmp_path: Path) -> None:
    store = promoted_twice(tmp_path)
    rows = registry.version_rows(store)
    assert [(row.version, row.champion) for row in rows] == [(V1, False), (V2, True), (V3, False)]
    assert all(row.problem and "manifest.json" in row.problem for row in rows)
    details = registry.describe_version(store, V2)
    assert details["champion"] is True and "missing or damaged" in details["manifest"]


def test_removing_a_rolled_back_version_works_with_a_damaged_champion_file(
    tmp_path: Path,
) -> None:
    """The transaction's rollback hook must not crash on the file it protects."""
    store = promoted_twice(tmp_path)
    (tmp_path / "models" / "champion.json").write_text("{")
    assert registry.remove_version(store, V3) and not (tmp_path / "models" / V3).exists()
    assert not registry.remove_version(store, V2)  # the log's champion is still protected


def test_non_finite_metrics_are_written_as_standard_json(tmp_path: Path) -> None:
    """NaN and infinity become strings, which strict JSON parsers accept, and read back."""
    store = complete_versions(tmp_path, V1)
    nan = Metrics(mse=math.nan, rmse=math.inf, mae=-math.inf)
    registry.record_champion(store, V1, nan, "manual", "by hand")
    for name in ("champion.json", "promotions.jsonl"):
        text = (tmp_path / "models" / name).read_text()
        json.loads(text.splitlines()[0] if name.endswith("l") else text, parse_constant=reject)
    champion = registry.read_champion(store)
    assert champion is not None and math.isnan(champion.metrics.mse)


def reject(constant: str) -> None:
    raise AssertionError(f"non-standard JSON constant {constant}")


# --- 3. numbers the math refuses --------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("train", "learning_rate", math.inf),
        ("train", "learning_rate", math.nan),
        ("train", "seed", -1),
        ("train", "seed", 2**32),
        ("series", "noise_seed", -1),
        ("series", "noise", math.inf),
        ("series", "start", -math.inf),
        ("series", "stop", math.nan),
        ("gate", "tolerance", math.inf),
        ("windows", "train_fraction", math.nan),
    ],
)
def test_the_schema_refuses_non_finite_numbers_and_seeds_out_of_range(
    section: str, field: str, value: float
) -> None:
    with pytest.raises(ValidationError, match=field):
        RetrainConfig.model_validate({section: {field: value}})


def numpy_takes(seed: int) -> bool:
    """Whether np.random.seed, which keras.utils.set_random_seed calls, takes `seed` (its
    method on a fresh generator: NumPy's global one is left alone)."""
    try:
        np.random.RandomState().seed(seed)
    except ValueError:
        return False
    return True


@given(seed=st.integers(min_value=-(2**34), max_value=2**34))
@example(seed=-1)
@example(seed=0)
@example(seed=2**32 - 1)
@example(seed=2**32)
def test_the_config_takes_exactly_the_seeds_numpy_and_keras_take(seed: int) -> None:
    """keras.utils.set_random_seed wants an int and hands it to np.random.seed: the schema
    takes a seed exactly when NumPy does, and passes it on unchanged, an int."""
    try:
        taken: int | None = RetrainConfig.model_validate({"train": {"seed": seed}}).train.seed
    except ValidationError:
        taken = None
    assert (taken is not None) == numpy_takes(seed)
    assert taken is None or (type(taken) is int and taken == seed)


def test_a_model_too_big_for_memory_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVECAST_MAX_UNITS", "1000000")  # an operator who raised the ceiling
    config = RetrainConfig.model_validate({"model": {"units": 100_000}, "data_dir": str(tmp_path)})
    assert training_bytes(config, 795) > 100 * GIB  # 100,000^2 weights and their copies
    with pytest.raises(InvalidInputError, match=r"--units 100000 \(simple\).*GiB"):
        validate_inputs(config, available=24 * GIB)
    assert list(tmp_path.iterdir()) == []
    validate_inputs(RetrainConfig(data_dir=str(tmp_path)), available=24 * GIB)  # the default fits


def test_a_generated_series_too_long_for_memory_is_refused_before_it_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAVECAST_MAX_POINTS", str(10**13))
    config = RetrainConfig.model_validate({"series": {"length": 10**12}})
    with pytest.raises(InvalidInputError, match="--length 1000000000000"):
        validate_inputs(config, available=24 * GIB)


@pytest.mark.parametrize("value", [1e19, -3e30, 1.7e308])
def test_values_whose_squares_overflow_float32_are_refused(tmp_path: Path, value: float) -> None:
    source = tmp_path / "big.csv"
    source.write_text("value\n" + "".join(f"{v!r}\n" for v in [1.0] * 20 + [value] + [2.0] * 20))
    with pytest.raises(InvalidInputError, match="overflow float32"):
        load_series(SeriesSpec(source=str(source)))
    values = [1.0] * 20 + [MAX_MAGNITUDE] + [2.0] * 20  # the largest allowed magnitude
    source.write_text("value\n" + "".join(f"{v!r}\n" for v in values))
    assert load_series(SeriesSpec(source=str(source))).values.max() == MAX_MAGNITUDE


def test_noise_that_overflows_float32_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="overflow float32"):
        load_series(SeriesSpec(noise=1e30))


# --- 4. permanent faults are not retried --------------------------------------------------


@pytest.mark.parametrize(
    "code", [errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EISDIR]
)
def test_permanent_storage_faults_are_not_transient_and_say_what_to_do(code: int) -> None:
    error = OSError(code, "injected", "/data/x")
    assert not is_transient(error)
    problem = environment_problem(error)
    assert problem is not None and "/data/x" in problem and "\n" not in problem


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("slow"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        BlockingIOError(errno.EAGAIN, "again"),
        OSError(errno.EBUSY, "busy"),
        OSError(errno.EIO, "io"),
        OSError("no errno at all"),
    ],
)
def test_faults_that_may_heal_are_transient(error: OSError) -> None:
    assert is_transient(error) and environment_problem(error) is None


def test_bad_input_and_bugs_are_never_transient() -> None:
    assert not is_transient(InvalidInputError("bad"))
    assert not is_transient(ValueError("bug"))
    assert not is_transient(KeyError("bug"))


def test_a_data_dir_that_is_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for uri in (afile, afile / "sub" / "data"):
        with pytest.raises(InvalidInputError, match="is not a directory"):
            check_data_dir(str(uri))
    check_data_dir(str(tmp_path / "new" / "data"))  # creatable: fine
    assert not (tmp_path / "new").exists()  # and checking created nothing


# --- 5. sources and URIs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("s3://bucket/x.csv", "s3"),
        ("gs://bucket/x.csv", "gcs"),
        ("http://127.0.0.1:9/x.csv", "http"),
    ],
)
def test_a_uri_without_its_backend_names_the_extra_to_install(uri: str, extra: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"pip install 'wavecast\[{extra}\]'"):
        load_series(SeriesSpec(source=uri))
    with pytest.raises(InvalidInputError, match="--data-dir"):
        DataDir(uri.rsplit("/", 1)[0])


@pytest.mark.parametrize(
    ("uri", "refusal"),
    [
        ("nosuchscheme://x/y.csv", r"scheme is not allowed .*ALLOWED_SCHEMES"),
        ("ftp://127.0.0.1:1/y.csv", r"scheme is not allowed .*ALLOWED_SCHEMES"),
        ("zip://y.csv::/tmp/a.zip", r"a chained URL \(::\) is not allowed"),
    ],
)
def test_a_scheme_outside_the_allow_list_is_bad_input_before_any_connection(
    uri: str, refusal: str
) -> None:
    with pytest.raises(InvalidInputError, match=refusal):
        load_series(SeriesSpec(source=uri))


def test_an_allowed_scheme_fsspec_does_not_know_is_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAVECAST_ALLOWED_SCHEMES", "file,nosuchscheme")
    with pytest.raises(InvalidInputError, match="Protocol not known"):
        load_series(SeriesSpec(source="nosuchscheme://x/y.csv"))


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".gz", gzip.compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".zst", zstandard.ZstdCompressor().compress),
    ],
)
def test_compressed_csv_is_read(tmp_path: Path, suffix: str, compress: object) -> None:
    text = "value\n" + "".join(f"{i * 0.5}\n" for i in range(30))
    plain = tmp_path / "series.csv"
    plain.write_text(text)
    packed = tmp_path / f"series.csv{suffix}"
    packed.write_bytes(compress(text.encode()))  # type: ignore[operator]
    values = load_series(SeriesSpec(source=str(packed))).values
    np.testing.assert_array_equal(values, load_series(SeriesSpec(source=str(plain))).values)


def test_a_memory_data_dir_holds_a_series_in_this_process() -> None:
    """One execution path: every stage sees the same process's memory:// filesystem."""
    from tests.conftest import raw_series
    from wavecast.generate import read_series

    series = raw_series(SeriesSpec(length=50), DataDir("memory://wavecast-test"))
    np.testing.assert_array_equal(
        read_series(series, DataDir("memory://wavecast-test")),
        load_series(SeriesSpec(length=50)).values,
    )


# --- 7. no staging leftovers ----------------------------------------------------------------


def test_a_failed_file_write_leaves_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DataDir(str(tmp_path))
    store.write_bytes(b"old", "models", "champion.json")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "replace", full_disk)  # the staging file's rename
    with pytest.raises(OSError, match="No space"):
        store.write_bytes(b"new", "models", "champion.json")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["champion.json"]
    assert (tmp_path / "models" / "champion.json").read_bytes() == b"old"


def test_a_failed_directory_build_leaves_no_staging_directory(tmp_path: Path) -> None:
    store = DataDir(str(tmp_path))
    with pytest.raises(RuntimeError), store.staged_dir("windows", "abc") as staging:
        (staging / "part.parquet").write_bytes(b"half")
        raise RuntimeError("crash mid-build")
    assert not [p for p in (tmp_path / "windows").iterdir() if STAGING_TAG in p.name]

"""Publishing through the flow: the champion gate, the promotion log, and rollback on failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.conftest import tiny_config
from wavecast import publish
from wavecast.evaluate import SPEC_FILE
from wavecast.flows.retrain import retrain
from wavecast.forecasters.forecaster import ForecasterSpec
from wavecast.records import RetrainSummary
from wavecast.registry import list_versions, read_champion
from wavecast.storage import DataDir

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def promotions(data_dir: Path) -> list[dict[str, object]]:
    lines = (data_dir / "models" / "promotions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def trained_once(
    prefect_server: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RetrainSummary]:
    """tiny_config's first retrain, run once for the module: its data dir (one version, the
    champion) and summary. Tests work on copies of it (first_retrain)."""
    data_dir = tmp_path_factory.mktemp("trained-once") / "data"
    return data_dir, retrain(tiny_config(data_dir)).only()


def first_retrain(trained_once: tuple[Path, RetrainSummary], data_dir: Path) -> RetrainSummary:
    """What `retrain(tiny_config(data_dir))` leaves in a fresh data_dir, without training
    again: a copy of trained_once's data dir, and its summary with data_dir's paths. (The
    cache records copied along are keyed on the other data dir's location: a later retrain
    here finds none of them and runs each stage, as it would after a first run of its own
    with other parameters.)"""
    source, summary = trained_once
    shutil.copytree(source, data_dir)
    return summary.model_copy(
        update={
            "model_dir": str(data_dir / Path(summary.model_dir).relative_to(source)),
            "dataset_dir": str(data_dir / Path(summary.dataset_dir).relative_to(source)),
        }
    )


def test_weak_candidate_is_kept_out_and_champion_reproduces_its_mse(tmp_path: Path) -> None:
    """On a clean sine the linear AR is exact and is what the first version serves; a
    candidate that sees one point per window cannot match it and is kept out. The champion
    file stands on its own."""
    data_dir = tmp_path / "data"
    first = retrain(tiny_config(data_dir, epochs=30)).only()
    one_point = tiny_config(data_dir, epochs=1, seed=7)
    one_point = one_point.model_copy(
        update={"windows": one_point.windows.model_copy(update={"input_len": 1})}
    )
    weak = retrain(one_point).only()

    assert first.published.forecaster == "linear"
    assert first.published.mse <= min(first.metrics.mse, first.baselines["persistence"].mse)
    assert first.promoted and not weak.promoted and not weak.unchanged
    assert weak.champion == first.version
    assert (
        json.loads((data_dir / "models" / "champion.json").read_text())["version"] == first.version
    )
    assert [p["version"] for p in promotions(data_dir)] == [first.version]
    # Windows of one point, the same targets: the champion is re-scored at the candidate's
    # test origins on windows of its own length, and the reason says so.
    assert weak.champion_rescored is not None and weak.compared_with == first.version
    assert weak.champion_rescored.mse <= first.baselines["persistence"].mse
    assert any(
        "worse than champion" in reason and "on the same" in reason for reason in weak.reasons
    )

    champion_dir = Path(first.model_dir)
    spec = ForecasterSpec.model_validate_json((champion_dir / SPEC_FILE).read_text())
    weights = np.asarray(spec.weights)  # the linear AR by hand: window @ weights + intercept
    windows = ds.dataset(first.dataset_dir, format="parquet", partitioning="hive")
    test = windows.to_table(filter=ds.field("split") == "test").sort_by("start")
    test_x = np.stack(test.column("x").to_pylist())
    test_y = test.column("y").to_numpy()
    mse = float(np.mean((test_x @ weights[:-1, 0] + weights[-1, 0] - test_y) ** 2))
    recorded = json.loads((champion_dir / "metrics.json").read_text())["published"]["mse"]
    # Forecasts agree to float32 rounding of the series' scale (batching changes the order of
    # sums); an MSE moves by at most 2 * RMSE * that.
    forecast_tolerance = 1e-5 * float(np.max(np.abs(test_y)))
    assert abs(mse - recorded) <= 2 * recorded**0.5 * forecast_tolerance
    assert (champion_dir / "report.html").read_text().count("data:image/png;base64") == 3


def test_failed_promotion_rolls_back_the_staged_version(
    trained_once: tuple[Path, RetrainSummary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash in the gate leaves no new version and the champion untouched."""
    data_dir = tmp_path / "data"
    first = first_retrain(trained_once, data_dir)
    champion_before = (data_dir / "models" / "champion.json").read_bytes()

    def broken_gate(*args: object, **kwargs: object) -> None:
        raise RuntimeError("gate exploded")

    monkeypatch.setattr(publish, "decide_promotion", broken_gate)
    state = retrain(tiny_config(data_dir, seed=3), return_state=True)

    assert state.is_failed()
    assert list_versions(DataDir(str(data_dir))) == [first.version]
    assert (data_dir / "models" / "champion.json").read_bytes() == champion_before
    assert len(promotions(data_dir)) == 1


def test_grown_file_source_retrains_and_says_what_changed(tmp_path: Path) -> None:
    """30 rows appended to the CSV: a new version whose report names the rows and new hash."""
    source = tmp_path / "series.csv"
    values = np.sin(np.linspace(0, 12 * np.pi, 150))
    source.write_text("value\n" + "".join(f"{v:.17g}\n" for v in values[:120]))
    base = tiny_config(tmp_path / "data")
    config = base.model_copy(
        update={"series": base.series.model_copy(update={"source": str(source)})}
    )
    first = retrain(config).only()
    source.write_text(source.read_text() + "".join(f"{v:.17g}\n" for v in values[120:]))
    second = retrain(config).only()

    assert not second.unchanged and second.version != first.version
    (change,) = second.changes
    assert "+30 rows (120 -> 150)" in change
    manifest = json.loads((Path(second.model_dir) / "manifest.json").read_text())
    assert manifest["series"]["content_hash"] in change
    assert (
        manifest["series"]["content_hash"]
        != json.loads((Path(first.model_dir) / "manifest.json").read_text())["series"][
            "content_hash"
        ]
    )
    assert change in (Path(second.model_dir) / "report.md").read_text()


# Every kind of damage is judged by registry.servable (tests/test_registry.py); here, that the
# gate asks it, for a deleted champion file and for weights built for other windows.
@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("delete", "it has neither model.keras nor forecaster.json"),
        (
            "other windows",
            "forecaster.json holds no finite linear AR weights of shape (6, 1) "
            "(or weights whose forecasts overflow)",
        ),
    ],
)
def test_an_unloadable_champion_is_no_champion(
    trained_once: tuple[Path, RetrainSummary], tmp_path: Path, damage: str, why: str
) -> None:
    """The gate asks registry.servable, as forecast does; if the champion's file is gone,
    refused or built for other windows, the run carries on, judging the candidate as a first
    model, and says so."""
    data_dir = tmp_path / "data"
    first = first_retrain(trained_once, data_dir)
    spec_file = Path(first.model_dir) / SPEC_FILE  # tiny_config's champion: the linear AR
    if damage == "delete":
        spec_file.unlink()
    else:  # the weights of a linear AR on 7 points
        spec = ForecasterSpec.model_validate_json(spec_file.read_text())
        spec_file.write_text(spec.model_copy(update={"weights": ((0.1,),) * 8}).model_dump_json())

    second = retrain(tiny_config(data_dir, seed=3)).only()

    assert second.version != first.version and second.promoted
    assert second.champion_rescored is None
    note = f"champion ignored: version {first.version} cannot serve: {why}"
    assert note in second.reasons
    assert note in (Path(second.model_dir) / "report.md").read_text()
    assert [p["version"] for p in promotions(data_dir)] == [first.version, second.version]


def test_a_damaged_champion_file_does_not_stop_a_retrain(
    trained_once: tuple[Path, RetrainSummary], tmp_path: Path
) -> None:
    """champion.json torn: the promotion log names the champion, the run gates against it."""
    data_dir = tmp_path / "data"
    first = first_retrain(trained_once, data_dir)
    (data_dir / "models" / "champion.json").write_text("{")

    second = retrain(tiny_config(data_dir, seed=3)).only()

    assert second.champion_rescored is not None  # the log's champion was found and scored
    store = DataDir(str(data_dir))
    champion = read_champion(store)
    assert champion is not None
    assert champion.version == (second.version if second.promoted else first.version)
    assert list_versions(store)[-1] == second.version

"""The Dagster layer on tiny data: materialize with a test instance, the landing sensor, bad films."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import SensorResult, SkipReason, build_sensor_context, instance_for_test, materialize
from mlflow.tracking import MlflowClient

from assets_defs.definitions import build_definitions
from assets_defs.ingestion import INGESTION_ASSETS
from assets_defs.partitions import FILMS_PARTITION
from assets_defs.resources import CinepipeHome, MlflowTracking
from assets_defs.runner import QUIET
from assets_defs.sensors import SOURCE_TAG, landing_sensor
from cinepipe.home import FilmPaths
from cinepipe.media import film_id_for
from cinepipe.tracking import TAG_ASSET_KEY, TAG_DAGSTER_RUN, TAG_PARTITION, Tracker
from conftest import leftovers


@pytest.fixture()
def instance(home):
    (home / "dagster").mkdir()
    with instance_for_test(temp_dir=str(home / "dagster")) as inst:
        yield inst


def resources(home: Path, landing: Path) -> dict:
    return {"home": CinepipeHome(home=str(home), landing=str(landing), settle_seconds=0),
            "mlflow": MlflowTracking(home=str(home))}


def test_materialize_one_film(home, instance, odd_films, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(odd_films["anamorphic"], landing / "film.mp4")
    film_id = film_id_for(landing / "film.mp4")
    instance.add_dynamic_partitions(FILMS_PARTITION, [film_id])
    result = materialize(INGESTION_ASSETS, partition_key=film_id, instance=instance,
                         resources=resources(home, landing))
    assert result.success
    paths = FilmPaths(home, film_id)
    shots = pd.read_parquet(paths.shots)
    assert list(shots["transition_in"]) == ["start", "cut", "cut"]
    clips = pd.read_parquet(paths.clips)
    assert len(clips) == 3 and all(Path(p).exists() for p in clips["clip_path"])
    checks = [e for e in result.get_asset_check_evaluations()]
    assert {c.check_name for c in checks} == {"covers_film", "min_shot_length", "has_shots"}
    assert all(c.passed for c in checks)
    # every MLflow run carries the Dagster tags; the asset metadata links to it
    meta = result.asset_materializations_for_node("shots")[0].metadata
    run = MlflowClient(Tracker.for_home(home).tracking_uri).get_run(meta["mlflow_run_id"].value)
    assert run.data.tags[TAG_ASSET_KEY] == "shots"
    assert run.data.tags[TAG_PARTITION] == film_id
    assert run.data.tags[TAG_DAGSTER_RUN] == result.run_id
    assert run.data.metrics["shots"] == 3 and run.data.params["probe.width"] == "640"
    assert leftovers(home / "films") == []


def test_sensor_adds_new_films_once(home, instance, odd_films, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("base", "matroska"):
        shutil.copy(odd_films[name], landing / odd_films[name].name)
    res = resources(home, landing)
    result = landing_sensor(build_sensor_context(instance=instance, resources=res))
    assert isinstance(result, SensorResult)
    ids = sorted(film_id_for(p) for p in landing.iterdir())
    assert sorted(r.partition_key for r in result.run_requests) == ids
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == ids
    assert all(Path(r.tags[SOURCE_TAG]).exists() for r in result.run_requests)
    cursor = result.cursor
    # a renamed file is the same film: nothing new
    (landing / "base.mp4").rename(landing / "renamed.mp4")
    again = landing_sensor(build_sensor_context(instance=instance, resources=res, cursor=cursor))
    assert isinstance(again, SkipReason)
    # a new film is requested, alone
    shutil.copy(odd_films["rotated"], landing / "rotated.mp4")
    third = landing_sensor(build_sensor_context(instance=instance, resources=res, cursor=cursor))
    assert [r.partition_key for r in third.run_requests] == [film_id_for(landing / "rotated.mp4")]
    # a film that is already a partition (as after `cinepipe run`) is not requested by a fresh cursor
    instance.add_dynamic_partitions(FILMS_PARTITION, ids)
    fresh = landing_sensor(build_sensor_context(instance=instance, resources=res))
    assert [r.partition_key for r in fresh.run_requests] == [film_id_for(landing / "rotated.mp4")]


def test_sensor_waits_for_files_still_being_copied(home, instance, odd_films, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(odd_films["base"], landing / "fresh.mp4")
    res = {"home": CinepipeHome(home=str(home), landing=str(landing), settle_seconds=3600),
           "mlflow": MlflowTracking(home=str(home))}
    assert isinstance(landing_sensor(build_sensor_context(instance=instance, resources=res)), SkipReason)


def test_bad_films_through_sensor_and_assets(home, instance, odd_films, bad_files, tmp_path):
    """Every kind of bad file next to good films: each bad one fails with one clear line, the others materialize,
    nothing half-written remains."""
    landing = tmp_path / "landing"
    landing.mkdir()
    for path in [odd_films["base"], odd_films["vfr"], *bad_files.values()]:
        shutil.copy(path, landing / path.name)
    res = resources(home, landing)
    sensed = landing_sensor(build_sensor_context(instance=instance, resources=res))
    instance.add_dynamic_partitions(FILMS_PARTITION, sensed.dynamic_partitions_requests[0].partition_keys)
    job = build_definitions(home=str(home), landing=str(landing)).resolve_job_def("ingest_films")
    outcomes = {}
    for request in sensed.run_requests:
        result = job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                        raise_on_error=False, tags=request.tags, run_config=QUIET)
        name = Path(request.tags[SOURCE_TAG]).name
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        outcomes[name] = (result.success, [f.event_specific_data.error.message for f in failures])
    assert outcomes.pop(odd_films["base"].name)[0] and outcomes.pop(odd_films["vfr"].name)[0]
    assert len(outcomes) == len(bad_files)
    for name, (success, messages) in outcomes.items():
        assert not success and len(messages) == 1, (name, messages)
        first = messages[0].strip().splitlines()[0]
        assert name in first, first
        film_id = film_id_for(landing / name)
        error = json.loads(FilmPaths(home, film_id).error.read_text())
        assert error["path"].endswith(name) and error["reason"]
    assert leftovers(home / "films") == []
    for film in (home / "films").iterdir():
        assert not (film / "proxy.mp4").exists() or (film / "proxy.json").exists()

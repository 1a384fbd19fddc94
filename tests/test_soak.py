"""Soak: twenty films dropped into the landing folder at once, six of them bad, with `dagster dev` (webserver and
daemon) doing the rest on its own: the landing sensor's runs (two at a time), then the dataset automation. Every
good film ends materialized, every bad one has a failed run whose reason names the file, no MLflow run is left
running, and the dataset version changes exactly once for the batch."""

import json
import os
import shutil
import time

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from mlflow.tracking import MlflowClient

from assets_defs.runner import DAGSTER_YAML
from cinepipe import dataset as c2k
from cinepipe.media import film_id_for
from cinepipe.reel import generate_reel
from cinepipe.tracking import Tracker
from media_fixtures import make_bad_files
from servers import Server, dagster_location_loaded, free_port, python_env, servers, venv_bin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _failure_reason(instance, run_id: str) -> str:
    failures = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    if not failures:
        return ""
    error = failures[0].dagster_event.step_failure_data.error
    return error.message or ""


def test_twenty_films_at_once_some_bad(tmp_path):
    home, landing, staging = tmp_path / "home", tmp_path / "landing", tmp_path / "staging"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML)  # two runs at a time, as `cinepipe run` writes
    landing.mkdir()
    good = generate_reel(staging / "reel", seed=5, films=14, shots_per_film=2, width=160, height=90,
                         shot_seconds=(1.0, 1.5), workers=2)
    bad = list(make_bad_files(staging / "bad", good[0]).values())
    assert len(good) + len(bad) == 20
    good_ids = {film_id_for(f) for f in good}
    bad_ids = {film_id_for(f): f.name for f in bad}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # each run's steps in its one process (the per-film steps are short); the models' automation off, so the
    # batch ends with the dataset (the test is about ingestion at scale, not training)
    env = python_env(CINEPIPE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), CINEPIPE_LANDING=str(landing),
                     CINEPIPE_EXECUTOR="in_process", CINEPIPE_AUTO_RETRAIN="0")
    with servers() as started:
        dev = Server("dagster-dev", [venv_bin("dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                                     "-p", str(port)], tmp_path, env)
        started.append(dev)
        dev.wait_http(f"{url}/server_info", timeout=90)
        dev.wait_for(lambda: dagster_location_loaded(url, "cinepipe"), 90, "the code location loaded")

        # all twenty appear at once: copied under hidden names (which the sensor skips), dated a minute back (as
        # if they had finished copying), then renamed into place
        old = time.time() - 60
        for source in [*good, *bad]:
            hidden = landing / f".{source.name}"
            shutil.copy(source, hidden)
            os.utime(hidden, (old, old))
        for source in [*good, *bad]:
            os.rename(landing / f".{source.name}", landing / source.name)
        dropped = time.time()

        instance = DagsterInstance.from_config(str(home / "dagster"))
        state = {}

        def batch_done() -> bool:
            runs = instance.get_runs(RunsFilter(job_name="ingest_films"))
            dataset = instance.fetch_materializations(AssetKey("cinematic2k"), limit=10).records
            state.update(runs=runs, dataset=dataset)
            return len(runs) == 20 and all(r.status in FINISHED for r in runs) and len(dataset) >= 1
        dev.wait_for(batch_done, 600, "twenty ingestion runs and the dataset", every=2)
        batch_seconds = time.time() - dropped
        # one more evaluation of the dataset automation (every 30 s): no second version for the same batch
        time.sleep(40)
        dataset = instance.fetch_materializations(AssetKey("cinematic2k"), limit=10).records
        runs = state["runs"]
        reasons = {r.tags["dagster/partition"]: (r.status, _failure_reason(instance, r.run_id)) for r in runs}
        materialized = instance.get_materialized_partitions(AssetKey("shot_labels"))
        instance.dispose()

    print(f"soak: 20 films to a dataset in {batch_seconds:.0f} s")
    assert len(runs) == 20 and {r.tags["dagster/partition"] for r in runs} == good_ids | set(bad_ids)
    for film_id in good_ids:
        assert reasons[film_id][0] == DagsterRunStatus.SUCCESS, (film_id, reasons[film_id])
    assert good_ids <= materialized
    for film_id, name in bad_ids.items():
        status, reason = reasons[film_id]
        assert status == DagsterRunStatus.FAILURE, (name, status)
        assert name in reason and len(reason.strip().splitlines()) == 1, (name, reason)
    assert len(dataset) == 1, [r.asset_materialization.metadata.get("dataset_version") for r in dataset]
    versions = [p.name for p in c2k.datasets_dir(home, c2k.NAME).iterdir() if p.is_dir()]
    assert versions == [c2k.latest_version(home)]
    table = c2k.load_version(home)
    assert set(table["film_id"]) == good_ids

    client = MlflowClient(Tracker.for_home(home).tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    mlflow_runs = client.search_runs(experiments, max_results=1000)
    assert mlflow_runs and {r.info.status for r in mlflow_runs} <= {"FINISHED", "FAILED"}, \
        json.dumps(sorted({r.info.status for r in mlflow_runs}))

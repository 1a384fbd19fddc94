"""The UIs as a user sees them: `dagster dev` on loopback, a run launched through the webserver's GraphQL API, the
asset graph in headless Chromium; then the MLflow UI on the same home. Screenshots go to ``tests/output/ui/`` (or
``$CINEPIPE_TEST_OUTPUT/ui/``)."""

import re
import shutil

import pytest

from assets_defs.runner import DAGSTER_YAML
from assets_defs.sensors import SOURCE_TAG
from cinepipe.media import film_id_for
from cinepipe.reel import generate_reel
from servers import (Server, add_dynamic_partition, chromium_page, dagster_location_loaded, free_port, graphql,
                     http_json, launch_partition_run, output_path, python_env, servers, venv_bin, wait_for_run,
                     wait_for_text)

pytestmark = pytest.mark.timeout(300)

LOCATION = "cinepipe"
INGESTION = ["raw_films", "film_proxies", "shots", "shot_clips"]
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
LATEST_MATERIALIZATION = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 1) { runId partition } } } }"""


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    """`dagster dev` on a fresh home with one tiny film ingested through GraphQL; yields what the tests need."""
    tmp = tmp_path_factory.mktemp("ui")
    home, landing = tmp / "home", tmp / "landing"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML)
    landing.mkdir()
    film = generate_reel(tmp / "reel", seed=3, films=1, shots_per_film=3, width=160, height=90,
                         shot_seconds=(1.0, 1.5), workers=1)[0]
    film_id = film_id_for(film)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the models' automation off: the film's dataset would otherwise start a CameraCLIP training under the test
    env = python_env(CINEPIPE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), CINEPIPE_LANDING=str(landing),
                     CINEPIPE_AUTO_RETRAIN="0")
    with servers() as started:
        dev = Server("dagster-dev", [venv_bin("dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                                     "-p", str(port)], tmp, env)
        started.append(dev)
        dev.wait_http(f"{url}/server_info", timeout=90)
        dev.wait_for(lambda: dagster_location_loaded(url, LOCATION), 90, "the code location loaded")
        # the partition first, then the film into the landing folder: the landing sensor, which runs in the
        # daemon, then knows the film and does not launch a run of its own for it
        add_dynamic_partition(url, LOCATION, "films", film_id)
        shutil.copy(film, landing / "film.mp4")
        # in one process (a launchpad setting): the default executor starts a process per step, 50 s instead of 14
        run_id = launch_partition_run(url, LOCATION, "ingest_films", film_id,
                                      tags={SOURCE_TAG: str(landing / "film.mp4")}, run_config=IN_PROCESS)
        status = wait_for_run(dev, url, run_id, timeout=120)
        assert status == "SUCCESS", f"run {run_id}: {status}\n{dev.tail()}"
        yield {"url": url, "home": home, "film_id": film_id, "run_id": run_id, "log_dir": tmp}


def test_dagster_asset_graph_shows_the_latest_materializations(dagster_ui):
    url, run_id, film_id = dagster_ui["url"], dagster_ui["run_id"], dagster_ui["film_id"]
    for name in INGESTION:
        latest = graphql(url, LATEST_MATERIALIZATION, {"path": [name]})["assetOrError"]["assetMaterializations"]
        assert latest == [{"runId": run_id, "partition": film_id}], name
    graphql(url, "mutation { setNuxSeen }")  # what "Skip" on the welcome dialog does
    shot = output_path("ui/dagster-asset-graph.png")
    with chromium_page() as page:
        page.goto(f"{url}/locations/{LOCATION}/asset-groups/ingestion", wait_until="networkidle")
        try:  # every node of the group shows its latest materialization and its one filled partition
            text = wait_for_text(page, lambda t: t.count("100% filled") >= len(INGESTION))
            page.wait_for_timeout(500)  # let the edges finish drawing
        finally:
            page.screenshot(path=str(shot))  # what the page showed, also when it did not show enough
    for name in INGESTION:
        assert name in text
    assert text.count("Latest event") == len(INGESTION)
    assert len(re.findall(r"\d+ seconds? ago|a minute ago|\d+ minutes? ago", text)) >= len(INGESTION), text
    assert "3 / 3 Passed" in text  # the shots asset's checks
    assert "shot_labels" in text and "cinematic2k" in text  # the downstream assets, in other groups


def test_mlflow_ui_shows_the_experiment(dagster_ui):
    home, film_id, run_id = dagster_ui["home"], dagster_ui["film_id"], dagster_ui["run_id"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the README's command, on loopback; no background job runners (they are for GenAI features)
    env = python_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    argv = [venv_bin("mlflow"), "ui", "--backend-store-uri", f"sqlite:///{home}/mlflow/mlflow.db",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    shot, run_shot = output_path("ui/mlflow-experiment.png"), output_path("ui/mlflow-run.png")
    with servers() as started:
        server = Server("mlflow-ui", argv, dagster_ui["log_dir"], env)
        started.append(server)
        server.wait_http(f"{url}/health", timeout=90)
        experiment = http_json(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=cinepipe")["experiment"]
        runs = http_json(f"{url}/api/2.0/mlflow/runs/search",
                         {"experiment_ids": [experiment["experiment_id"]], "max_results": 50})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
        assert {t["dagster.run_id"] for t in tags} == {run_id}
        assert {t["dagster.asset_key"] for t in tags} == {*INGESTION, "shot_labels"}
        names = sorted(t["mlflow.runName"] for t in tags)
        with chromium_page() as page:
            page.goto(f"{url}/#/experiments/{experiment['experiment_id']}/runs", wait_until="load")
            page.get_by_text(f"ingest film.mp4 ({film_id})").first.wait_for()
            close_assistant(page)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shot))
            text = page.inner_text("body")
            # the film's ingestion run: its parameters, metrics and the Dagster tags
            page.get_by_text(f"ingest film.mp4 ({film_id})").first.click()
            try:
                run_text = wait_for_text(page, lambda t: "detect_seconds" in t and run_id in t)
                page.wait_for_timeout(500)
            finally:
                page.screenshot(path=str(run_shot))
    assert "cinepipe" in text
    for name in names:
        assert name in text
    assert f"{len(names)} matching runs" in text
    assert "probe.codec" in run_text and "shots" in run_text


def close_assistant(page) -> None:
    """MLflow 3 opens its assistant panel on the first visit from localhost; close it, as a user would."""
    header = page.get_by_text("MLflow Assistant").first
    if not header.is_visible():
        return
    panel = header.locator("xpath=ancestor::div[.//button][1]")
    buttons = panel.get_by_role("button")
    if buttons.count():
        buttons.last.click()

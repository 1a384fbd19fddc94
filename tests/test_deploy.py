"""The compose deployment (docker/) without Docker: the compose file's wiring, the image's files and package data,
and the deployment's own commands and `dagster.yaml` run as processes on loopback against a real PostgreSQL."""

import importlib.util
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from cinepipe.reel import generate_reel
from servers import (REPO, Server, dagster_location_loaded, free_port, graphql, pg_execute,
                     postgres_server, python_env, require, servers, venv_bin)

DOCKER = REPO / "docker"
SERVICES = {"postgres", "mlflow", "user-code", "webserver", "daemon"}
DAGSTER_SERVICES = ("user-code", "webserver", "daemon")

spec = importlib.util.spec_from_file_location("check_install", DOCKER / "check_install.py")
check_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_install)


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def env_vars(config) -> set[str]:
    """Every ``{env: NAME}`` in a Dagster YAML config."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(env_vars(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(env_vars(v) for v in config))
    return set()


def option(argv: list[str], *names: str) -> str:
    for i, token in enumerate(argv):
        if token in names:
            return argv[i + 1]
    raise AssertionError(f"none of {names} in {argv}")


def test_compose_wiring():
    services = compose()["services"]
    assert set(services) == SERVICES
    dagster_yaml = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    image_env = check_install.image_env(DOCKER / "Dockerfile")
    postgres = services["postgres"]["environment"]

    for name in DAGSTER_SERVICES:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        env = {**image_env, **service["environment"]}
        # everything dagster.yaml and the workspace read is set, by compose or by the image
        assert env_vars(dagster_yaml) | env_vars(workspace) <= set(env), name
        assert env["DAGSTER_POSTGRES_HOST"] in services and env["DAGSTER_POSTGRES_PORT"] == "5432"
        assert (env["DAGSTER_POSTGRES_USER"], env["DAGSTER_POSTGRES_PASSWORD"], env["DAGSTER_POSTGRES_DB"]) == \
            (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["CINEPIPE_MLFLOW_UI"] == "http://localhost:5000"  # the published port, for the links
        assert env["DAGSTER_HOME"] == "/opt/dagster_home"
        assert "./landing:/data/landing" in service["volumes"] and "cinepipe-data:/data" in service["volumes"]
        assert all(env[v].startswith("/data/") for v in ("CINEPIPE_HOME", "CINEPIPE_LANDING",
                                                          "DAGSTER_COMPUTE_LOGS_DIR", "DAGSTER_STORAGE_DIR"))
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}

    # the user-code gRPC server serves the code location the local workspace.yaml names
    code = shlex.split(services["user-code"]["command"])
    local = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert code[:3] == ["dagster", "code-server", "start"]
    assert option(code, "-m", "--module-name") == local["module_name"]
    assert option(code, "--location-name") == local["location_name"]
    assert option(code, "-h", "--host") == "0.0.0.0"
    code_port = option(code, "-p", "--port")
    assert services["user-code"]["healthcheck"]["test"][-2:] == ["-p", code_port]
    # the webserver and the daemon load it through docker/workspace.yaml, once it is healthy
    grpc = workspace["load_from"][0]["grpc_server"]
    assert grpc["location_name"] == local["location_name"]
    for name in ("webserver", "daemon"):
        env = services[name]["environment"]
        assert env[grpc["host"]["env"]] == "user-code" and env[grpc["port"]["env"]] == code_port
        assert option(shlex.split(services[name]["command"]), "-w", "--workspace") == "docker/workspace.yaml"
        assert services[name]["depends_on"]["user-code"] == {"condition": "service_healthy"}
    assert option(shlex.split(services["webserver"]["command"]), "-p", "--port") == "3000"
    assert services["webserver"]["ports"] == ["3000:3000"]

    # MLflow: its Postgres database is the one init-mlflow-db.sql creates; the Dagster containers' Host is allowed
    mlflow = shlex.split(services["mlflow"]["command"])
    assert services["mlflow"]["build"] == {"context": ".", "dockerfile": "Dockerfile.mlflow"}
    backend = option(mlflow, "--backend-store-uri")
    assert backend == "postgresql+psycopg2://{0}:{1}@postgres:5432/mlflow".format(postgres["POSTGRES_USER"],
                                                                          postgres["POSTGRES_PASSWORD"])
    assert "CREATE DATABASE mlflow OWNER dagster" in (DOCKER / "init-mlflow-db.sql").read_text()
    assert "./init-mlflow-db.sql:/docker-entrypoint-initdb.d/init-mlflow-db.sql:ro" in services["postgres"]["volumes"]
    assert "--serve-artifacts" in mlflow and option(mlflow, "--artifacts-destination") == "/mlartifacts"
    assert "mlflow-artifacts:/mlartifacts" in services["mlflow"]["volumes"]
    assert "mlflow:5000" in option(mlflow, "--allowed-hosts").split(",")
    assert option(mlflow, "--port") == "5000" and services["mlflow"]["ports"] == ["5000:5000"]

    # the install check builds each image from the context compose gives it
    builds = {f"docker/{s['build']['dockerfile'].removeprefix('docker/')}": s["build"]["context"]
              for s in services.values() if "build" in s}
    assert {k: str((DOCKER / v).resolve().relative_to(REPO)) for k, v in builds.items()} == check_install.IMAGES
    assert set(compose()["volumes"]) == {"postgres-data", "mlflow-artifacts", "cinepipe-data"}


def test_image_files_and_package_data(tmp_path):
    """The image's COPY lines bring in all a build needs, and the wheel built from them (what the image installs)
    carries every data file of the package."""
    workdir, env, runs = check_install.stage(DOCKER / "Dockerfile", REPO, tmp_path / "root")
    assert (workdir / "docker" / "workspace.yaml").exists()
    assert (tmp_path / "root" / env["DAGSTER_HOME"].lstrip("/") / "dagster.yaml").read_text() == \
        (DOCKER / "dagster.yaml").read_text()
    assert 'pip install --no-cache-dir ".[deploy]"' in runs
    subprocess.run([venv_bin("pip"), "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"), "."], cwd=workdir,
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "wheel").glob("cinepipe-*.whl"))
    packaged = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "cinepipe", "assets_defs"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    data = [p for p in tracked if not p.endswith(".py") and (REPO / p).exists()]
    assert data and set(data) <= packaged, sorted(set(data) - packaged)


def local_command(service: dict, replace: dict[str, str]) -> list[str]:
    """A compose service's command for a process on this machine: its tokens mapped through ``replace`` (ports,
    hosts, paths), substrings too (URLs), and its program taken from this Python environment."""
    argv = []
    for token in shlex.split(service["command"]):
        token = replace.get(token, token)
        for old, new in replace.items():
            if "://" in old or "@" in old:
                token = token.replace(old, new)
        argv.append(token)
    return [venv_bin(argv[0]), *argv[1:]]


RUNS = """{ runsOrError { ... on Runs { results { runId status jobName tags { key value } } } } }"""


@pytest.mark.timeout(240)
def test_deployment_on_postgres(tmp_path, monkeypatch):
    """The compose deployment's five services as processes on loopback, with their compose commands and
    docker/dagster.yaml: a film dropped into the landing folder is picked up by the daemon's sensor, run by the
    user-code server, recorded in Postgres, and its MLflow runs land in MLflow's Postgres database and artifact
    store."""
    require("dagster_postgres", "pip install -e '.[deploy]'")
    services = compose()["services"]
    root = tmp_path / "root"  # the containers' file systems, merged
    image_env = {k: str(root / v.lstrip("/")) if v.startswith("/") else v
                 for k, v in check_install.image_env(DOCKER / "Dockerfile").items()}
    dagster_home = Path(image_env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text((DOCKER / "dagster.yaml").read_text())  # as the image has it
    landing = Path(image_env["CINEPIPE_LANDING"])
    # the film first, settled (the sensor ignores files younger than 5 s, as if still being copied)
    film = generate_reel(landing, seed=3, films=1, shots_per_film=3, width=160, height=90, shot_seconds=(1.0, 1.5),
                         workers=1)[0]
    os.utime(film, (time.time() - 60, time.time() - 60))

    with postgres_server(tmp_path) as pg:
        # what the postgres image does at its first start: POSTGRES_DB, then docker-entrypoint-initdb.d
        pg_execute(pg, f"CREATE DATABASE {services['postgres']['environment']['POSTGRES_DB']} OWNER dagster")
        pg_execute(pg, (DOCKER / "init-mlflow-db.sql").read_text())
        ports = {p: str(free_port()) for p in ("5000", "4000", "3000")}
        replace = {"0.0.0.0": "127.0.0.1", **ports, "/mlartifacts": str(root / "mlartifacts"),
                   "@postgres:5432/": f"@127.0.0.1:{pg['port']}/"}
        env = python_env(**image_env, **services["webserver"]["environment"])
        env.update(DAGSTER_POSTGRES_HOST="127.0.0.1", DAGSTER_POSTGRES_PORT=str(pg["port"]),
                   DAGSTER_CODE_SERVER_HOST="127.0.0.1", DAGSTER_CODE_SERVER_PORT=ports["4000"],
                   MLFLOW_TRACKING_URI=f"http://127.0.0.1:{ports['5000']}", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                   CINEPIPE_AUTO_RETRAIN="0")  # the test is about the film's run, not the training it would start
        mlflow_url, web_url = f"http://127.0.0.1:{ports['5000']}", f"http://127.0.0.1:{ports['3000']}"
        with servers() as started:
            started.append(Server("mlflow", local_command(services["mlflow"], replace), tmp_path, env))
            started.append(Server("user-code", local_command(services["user-code"], replace), tmp_path, env))
            mlflow, code = started
            health = services["user-code"]["healthcheck"]["test"][1:]  # the compose health check, as is
            code.wait_for(lambda: subprocess.run(local_command({"command": shlex.join(health)}, replace), env=env,
                                                 capture_output=True, timeout=30).returncode == 0,
                          90, "the gRPC health check passing", every=1)
            started.append(Server("webserver", local_command(services["webserver"], replace), tmp_path, env))
            started.append(Server("daemon", local_command(services["daemon"], replace), tmp_path, env))
            web, daemon = started[2:]
            mlflow.wait_http(f"{mlflow_url}/health", timeout=90)
            web.wait_http(f"{web_url}/server_info", timeout=90)
            web.wait_for(lambda: dagster_location_loaded(web_url, "cinepipe"), 60, "the location loaded over gRPC")

            # MLflow answers the Host the Dagster containers send, and still refuses others
            for host, status in (("mlflow:5000", 200), ("attacker.example", 403)):
                request = urllib.request.Request(f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1",
                                                 headers={"Host": host})
                try:
                    answer = urllib.request.urlopen(request, timeout=10).status
                except urllib.error.HTTPError as err:
                    answer = err.code
                assert answer == status, host

            # the landing sensor (in the daemon, evaluated by the code server) requests the run; the daemon's queue
            # launches it through the code server
            runs = {}

            def run_finished() -> bool:
                daemon.check_alive()
                # the film's run (the dataset automation may follow it with a run of its own)
                runs["all"] = [r for r in graphql(web_url, RUNS)["runsOrError"]["results"]
                               if r["jobName"] == "ingest_films"]
                return any(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs["all"])
            web.wait_for(run_finished, 180, "a run requested by the landing sensor finishing", every=2)
            (run,) = runs["all"]
            assert run["status"] == "SUCCESS", (run, daemon.tail(), code.tail())
            assert run["jobName"] == "ingest_films"
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert tags["dagster/sensor_name"] == "landing_sensor" and tags["cinepipe/source_path"] == str(film)
            film_id = tags["dagster/partition"]

            # Dagster's run, events and partitions are in Postgres; the same dagster.yaml loads them here
            rows = pg_execute(pg, "SELECT run_id, status FROM runs WHERE pipeline_name = 'ingest_films'",
                              dbname="dagster")
            assert rows == [(run["runId"], "SUCCESS")]
            for name, value in env.items():
                if name.startswith("DAGSTER_"):
                    monkeypatch.setenv(name, value)
            from dagster import AssetKey, DagsterInstance
            with DagsterInstance.get() as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert instance.get_dynamic_partitions("films") == [film_id]
                for asset in ("raw_films", "film_proxies", "shots", "shot_clips", "shot_labels"):
                    event = instance.get_latest_materialization_event(AssetKey(asset))
                    assert event.run_id == run["runId"], asset
                    # the asset's link to its MLflow run is one a browser on the host can open
                    link = event.asset_materialization.metadata["mlflow_run"].value
                    assert link.startswith(env["CINEPIPE_MLFLOW_UI"] + "/#/experiments/"), link
            assert any(Path(image_env["DAGSTER_COMPUTE_LOGS_DIR"]).rglob("*.err")), "no compute logs"

            # MLflow: runs in its Postgres database, artifacts uploaded through the server into its store
            mlruns = pg_execute(pg, "SELECT r.name, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                    "WHERE t.key = 'dagster.asset_key'", dbname="mlflow")
            assert {asset for _, asset in mlruns} - {"cinematic2k"} == {"raw_films", "film_proxies", "shots",
                                                                        "shot_clips", "shot_labels"}
            assert list((root / "mlartifacts").rglob("shots.parquet")), "the shots table was not uploaded"

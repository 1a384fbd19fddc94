"""Scale-out: new films' ingestion and the 20 LoRA partitions of a tiny configuration run on two Celery workers
(dagster-celery, Redis from Debian on loopback), every MLflow run lands; the Kubernetes executor's configuration
renders GPU requests for the training steps."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from servers import REPO, Server, free_port, missing, python_env, require, servers, venv_bin
from cinepipe.media import film_id_for
from cinepipe.reel import generate_reel
from cinepipe.taxonomy import TAXONOMY
from cinepipe.tracking import TAG_PARTITION, Tracker

BASE = {"size": 32, "frames": 8, "layers": 2, "steps": 10, "batch_size": 4}
LORA = {"steps": 2, "framing_angle_steps": 2, "batch_size": 2, "eval_samples": 1, "eval_steps": 2, "torch_threads": 1}
CELERY_YAML = REPO / "docker" / "celery" / "celery.yaml"

# The LoRA stage of `cinepipe run` with CINEPIPE_EXECUTOR=celery: one run per pattern partition, all launched at
# once from a few orchestrating processes; each run's step is a Celery task; the two workers bound the parallelism.
ORCHESTRATE = """
import json, sys
from pathlib import Path
from dagster import DagsterInstance
from assets_defs.definitions import build_definitions
from assets_defs.runner import run_camera_diff
if __name__ == "__main__":
    home, landing, lora = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    with DagsterInstance.get() as instance:
        failures = run_camera_diff(build_definitions(), instance, home, landing, print, lora_config=lora,
                                   train_base=False)
    print(json.dumps(failures))
"""

# The ingestion stage of `cinepipe run` with CINEPIPE_EXECUTOR=celery: one run per new film, its steps Celery tasks.
INGEST = """
import json, sys
from dagster import DagsterInstance
from assets_defs.partitions import FILMS_PARTITION
from assets_defs.scale_out import execute_partitions
from assets_defs.sensors import SOURCE_TAG
if __name__ == "__main__":
    films = json.loads(sys.argv[1])
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(FILMS_PARTITION, list(films))
    tags = {f: {SOURCE_TAG: p} for f, p in films.items()}
    done = execute_partitions("ingest_films", list(films), partition_tags=tags)
    print(json.dumps({f: [d["success"], d["failures"]] for f, d in done.items()}))
"""


def _redis_ping(port: int) -> bool:
    import redis

    return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping())


def _base_model(home: Path, landing: Path) -> None:
    """The tiny base the LoRAs train on, materialized in a subprocess with the multiprocess executor."""
    code = ("import json, sys; from dagster import DagsterInstance; from assets_defs.definitions import "
            "build_definitions; job = build_definitions().resolve_job_def('train_base_video_model'); "
            "r = job.execute_in_process(instance=DagsterInstance.get(), run_config={'ops': {'base_video_model': "
            "{'config': json.loads(sys.argv[1])}}}); sys.exit(0 if r.success else 1)")
    env = python_env(CINEPIPE_HOME=str(home), CINEPIPE_LANDING=str(landing), DAGSTER_HOME=str(home / "dagster"))
    subprocess.run([sys.executable, "-c", code, json.dumps(BASE)], env=env, check=True, timeout=600)


def test_twenty_lora_partitions_on_two_celery_workers(dataset_home, tmp_path):
    require("dagster_celery", "pip install -e '.[scale]'")
    require("redis", "pip install -e '.[scale]'")
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(redis_server).exists():
        missing("redis-server (apt-get install redis-server)")

    # a home of its own: the dataset of the shared home (its films, clips and versions), a fresh Dagster instance
    # (two LoRA partitions at a time in the lora_training pool) and a fresh MLflow store
    shared, shared_landing = dataset_home
    home, landing = tmp_path / "home", tmp_path / "landing"
    shutil.copytree(shared, home, ignore=shutil.ignore_patterns("dagster", "mlflow*", "models", "cache"))
    shutil.copytree(shared_landing, landing)
    new_films = {film_id_for(f): str(f) for f in generate_reel(
        landing, seed=9, films=3, shots_per_film=2, width=160, height=90, shot_seconds=(1.0, 1.5), workers=1)}
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  pools:\n"
                                                   "    default_limit: 2\n")
    _base_model(home, landing)

    port = free_port()
    broker, backend = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    env = python_env(CINEPIPE_HOME=str(home), CINEPIPE_LANDING=str(landing), DAGSTER_HOME=str(home / "dagster"),
                     CINEPIPE_EXECUTOR="celery", CINEPIPE_CELERY_BROKER=broker, CINEPIPE_CELERY_BACKEND=backend)
    with servers() as started:
        started.append(Server("redis", [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no", "--dir", str(tmp_path)], tmp_path))
        started[0].wait_for(lambda: _redis_ping(port), 30, "redis answering PING")
        for name in ("worker-a", "worker-b"):
            # one task at a time per worker, as the docker/celery worker command starts them
            started.append(Server(name, [venv_bin("dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                         "-y", str(CELERY_YAML), "-n", name, "--", "--concurrency=1"],
                                  tmp_path, env))
        ingest = subprocess.run([sys.executable, "-c", INGEST, json.dumps(new_films)], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=600)
        patterns = list(TAXONOMY.patterns)
        orchestrator = subprocess.run([sys.executable, "-c", ORCHESTRATE, str(home), str(landing), json.dumps(LORA)],
                                      env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        for server in started:
            server.check_alive()
        logs = {s.name: s.log.read_text(errors="replace") for s in started[1:]}
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    ingested = json.loads(ingest.stdout.strip().splitlines()[-1])
    assert ingested == {f: [True, []] for f in new_films}, ingested
    assert orchestrator.returncode == 0, orchestrator.stderr[-3000:]
    assert "on the celery executor's workers" in orchestrator.stdout, orchestrator.stdout[-3000:]
    failures = json.loads(orchestrator.stdout.strip().splitlines()[-1])
    assert not failures, f"{failures}\n{orchestrator.stdout[-3000:]}"

    # every step ran in a Celery worker, and both workers took a share
    from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with DagsterInstance.get() as instance:
            workers = {}
            runs = instance.get_runs(RunsFilter(job_name="train_camera_diff_lora"))
            assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(patterns)
            for run in runs:
                pattern = run.tags["dagster/partition"]
                assert run.status == DagsterRunStatus.SUCCESS, pattern
                engine = [e for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
                          if "in celery worker" in (e.message or "")]
                assert len(engine) == 1, pattern
                workers[pattern] = engine[0].dagster_event.event_specific_data.metadata["Celery worker"].value
            film_steps = {}
            for run in instance.get_runs(RunsFilter(job_name="ingest_films")):
                assert run.status == DagsterRunStatus.SUCCESS
                for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
                    if "in celery worker" in (e.message or ""):
                        film_steps[(run.tags["dagster/partition"], e.step_key)] = \
                            e.dagster_event.event_specific_data.metadata["Celery worker"].value
            labelled = instance.get_materialized_partitions(AssetKey("shot_labels"))
            materialized = instance.get_materialized_partitions(AssetKey("camera_diff_lora"))
            summary = instance.get_latest_materialization_event(AssetKey("camera_diff_summary"))
    finally:
        del os.environ["DAGSTER_HOME"]
    # every new film's five steps ran on the workers, spread over both
    assert set(new_films) <= labelled
    assert {film for film, _ in film_steps} == set(new_films) and len(film_steps) == 5 * len(new_films)
    assert {name.split("@")[0] for name in film_steps.values()} == {"worker-a", "worker-b"}, film_steps
    by_worker = {name.split("@")[0] for name in workers.values()}
    assert by_worker == {"worker-a", "worker-b"}, workers
    for name in ("worker-a", "worker-b"):
        assert "execute_plan" in logs[name] and "succeeded" in logs[name], logs[name][-2000:]
    assert materialized == set(patterns)
    assert summary.asset_materialization.metadata["patterns_trained"].value == 20

    # parallel steps logged to one SQLite MLflow store from two worker processes: no run lost, none left running
    client = MlflowClient(Tracker.for_home(home).tracking_uri)
    lora_runs = client.search_runs([Tracker.for_home(home).experiment_id],
                                   "tags.`dagster.asset_key` = 'camera_diff_lora'", max_results=100)
    partition_runs = [r for r in lora_runs if TAG_PARTITION in r.data.tags]
    assert sorted(r.data.tags[TAG_PARTITION] for r in partition_runs) == sorted(patterns)
    assert {r.info.status for r in lora_runs} == {"FINISHED"}
    # nested under the run of the whole LoRA set
    assert len({r.data.tags.get("mlflow.parentRunId") for r in partition_runs}) == 1
    for pattern in patterns:
        assert (home / "models" / "camera_diff" / "lora" / pattern / "pytorch_lora_weights.safetensors").exists()


def test_kubernetes_executor_asks_a_gpu_for_training_steps(monkeypatch):
    """CINEPIPE_EXECUTOR=k8s gives every job dagster-k8s's k8s_job_executor; the training steps' tags render into
    a pod spec with a GPU request and the GPU toleration, the light steps into one without; the Helm values shipped
    in docker/k8s name the executor's run launcher and the image."""
    require("dagster_k8s", "pip install -e '.[scale]'")
    from dagster_k8s.job import get_user_defined_k8s_config

    from assets_defs.definitions import build_definitions

    monkeypatch.setenv("CINEPIPE_EXECUTOR", "k8s")
    defs = build_definitions()
    for job_name in ("train_camera_diff_lora", "train_camera_clip", "ingest_films"):
        job = defs.resolve_job_def(job_name)
        assert job.executor_def.name == "k8s"
        for node in job.graph.node_defs:
            k8s = get_user_defined_k8s_config(node.tags)
            resources = k8s.container_config.get("resources", {})
            if job_name.startswith("train"):
                assert resources["limits"]["nvidia.com/gpu"] == "1", node.name
                assert any(t["key"] == "nvidia.com/gpu" for t in k8s.pod_spec_config["tolerations"])
            else:
                assert "nvidia.com/gpu" not in json.dumps(resources), node.name
    values = yaml.safe_load((REPO / "docker" / "k8s" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert {"name": "CINEPIPE_EXECUTOR", "value": "k8s"} in deployment["env"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["-m", "assets_defs.definitions"]


def test_unknown_or_unconfigured_executor_fails_with_one_line(monkeypatch):
    from assets_defs.scale_out import ExecutorConfigError, build_executor

    monkeypatch.setenv("CINEPIPE_EXECUTOR", "spark")
    with pytest.raises(ExecutorConfigError, match="CINEPIPE_EXECUTOR='spark': expected one of"):
        build_executor()
    monkeypatch.setenv("CINEPIPE_EXECUTOR", "celery")
    monkeypatch.delenv("CINEPIPE_CELERY_BROKER", raising=False)
    if "dagster_celery" in sys.modules or shutil.which("dagster-celery"):
        with pytest.raises(ExecutorConfigError, match="needs CINEPIPE_CELERY_BROKER"):
            build_executor()

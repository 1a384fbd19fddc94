"""camera_clip materialized on a dataset built from the small reel: MLflow run, registry, CLI, kill and resume."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance
from mlflow.tracking import MlflowClient

from assets_defs.definitions import build_definitions
from cinepipe import dataset as c2k
from cinepipe.tracking import TAG_ASSET_KEY, TAG_DATASET_VERSION, Tracker

REPO = Path(__file__).resolve().parents[1]


def _materialize(home, landing, epochs, synthetic_films=1):
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        defs = build_definitions(home=str(home), landing=str(landing))
        return defs.resolve_job_def("train_camera_clip").execute_in_process(
            instance=DagsterInstance.get(),
            run_config={"ops": {"camera_clip": {"config": {"epochs": epochs, "synthetic_films": synthetic_films,
                                                           "synthetic_test_films": 1}}}})
    finally:
        del os.environ["DAGSTER_HOME"]


def test_camera_clip_logs_registers_and_serves(dataset_home):
    home, landing = dataset_home
    result = _materialize(home, landing, epochs=2)
    assert result.success
    meta = {k: getattr(v, "value", v) for k, v in
            result.asset_materializations_for_node("camera_clip")[0].metadata.items()}
    version = c2k.latest_version(home)
    assert meta["dataset_version"] == version and "| t2v_r1 " in meta["evaluation"]
    tracker = Tracker.for_home(home)
    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[TAG_ASSET_KEY] == "camera_clip"
    assert run.data.tags[TAG_DATASET_VERSION] == version
    for key in ("test_t2v_r1", "test_v2t_r1", "test_t2v_r5", "test_direction_acc", "test_t2v_r1_meanpool",
                "base_t2v_r1", "test_zeroshot_movement_acc", "synthetic_test_t2v_r1",
                "synthetic_test_direction_acc_meanpool", "synthetic_window_test_t2v_r1",
                "synthetic_window_test_zeroshot_movement_acc"):
        assert 0.0 <= run.data.metrics[key] <= 1.0, key
    # generator-format views of the synthetic clips: on by default
    assert ast.literal_eval(run.data.params["window"]) == {"size": 32, "frames": 8, "fps": 8.0}
    assert run.data.metrics["clips_synthetic"] == 8  # one synthetic film's 8 shots trained on beside the dataset
    assert len(client.get_metric_history(run.info.run_id, "epoch_loss")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "confusion")}
    assert "confusion/confusion_movement.png" in artifacts
    (model_version,) = client.search_model_versions("name='CameraCLIP'")
    assert model_version.run_id == run.info.run_id and model_version.tags[TAG_DATASET_VERSION] == version

    clip = next(landing.glob("*.mp4"))
    scratch = home.parent / "clip-cli-tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "CINEPIPE_HOME": str(home), "TMPDIR": str(scratch)}
    proc = subprocess.run([sys.executable, "-m", "cinepipe.cli", "clip", "classify", str(clip), "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"framing", "angle", "movement"} and out["model"]["version"] == str(model_version.version)
    assert out["movement"]["top"] in out["movement"]["scores"]
    proc = subprocess.run([sys.executable, "-m", "cinepipe.cli", "clip", "score", str(clip), "the camera pans left",
                           "a close-up of a person", "--json"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [s["caption"] for s in json.loads(proc.stdout)["scores"]] == ["the camera pans left",
                                                                         "a close-up of a person"]
    # the registered model is downloaded to a temp directory and read into memory: nothing is left behind
    assert [p.name for p in scratch.iterdir() if p.name.startswith("cinepipe-")] == []


KILLED_TRAINING = """
import os, sys
os.environ["DAGSTER_HOME"] = sys.argv[1] + "/dagster"
from dagster import DagsterInstance
from assets_defs.definitions import build_definitions
defs = build_definitions(home=sys.argv[1], landing=sys.argv[2])
defs.resolve_job_def("train_camera_clip").execute_in_process(
    instance=DagsterInstance.get(),
    run_config={"ops": {"camera_clip": {"config": {"epochs": 40, "synthetic_films": 0,
                                                   "synthetic_test_films": 1}}}})
"""


def test_a_killed_training_resumes_in_the_same_mlflow_run(dataset_home):
    home, landing = dataset_home
    before = set((home / "models" / "camera_clip").glob("*"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TRAINING, str(home), str(landing)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    checkpoints = []
    while time.time() < deadline and not checkpoints:
        checkpoints = [p for p in (home / "models" / "camera_clip").glob("*/temporal.ckpt") if p.parent not in before]
        time.sleep(0.5)
    assert checkpoints, "training never wrote a checkpoint"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    work = checkpoints[0].parent
    run_id = (work / "mlflow_run_id").read_text().strip()
    client = MlflowClient(Tracker.for_home(home).tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # what a kill leaves behind

    result = _materialize(home, landing, epochs=40, synthetic_films=0)  # the killed run's settings
    assert result.success
    meta = result.asset_materializations_for_node("camera_clip")[0].metadata
    assert meta["mlflow_run_id"].value == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["cinepipe.resumed"] == "true"
    epochs = [m.step for m in client.get_metric_history(run_id, "epoch_loss")]
    assert sorted(set(epochs)) == list(range(1, 41))  # every epoch once: the resumed part did not start over

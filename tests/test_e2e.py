"""End to end: `cinepipe run` on a small reel, as a user would run it, into a fresh CINEPIPE_HOME."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cinepipe.tracking import TAG_ASSET_KEY, TAG_DAGSTER_RUN, TAG_DATASET_VERSION, TAG_PARTITION, Tracker
from conftest import leftovers

REPO = Path(__file__).resolve().parents[1]


def cinepipe(*args, env, timeout=900):
    return subprocess.run([sys.executable, "-m", "cinepipe.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


@pytest.mark.slow
def test_cinepipe_run_on_the_reel(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME",
                                                             "CINEPIPE_LANDING")}
    env["CINEPIPE_HOME"] = str(home)
    # seed 1, 3 x 8 shots: every pattern has clips in the train and val films (with fewer, a pattern without clips
    # fails its partition alone, as it should, and the run exits 1 naming it)
    proc = cinepipe("run", "--films", "3", "--shots-per-film", "8", "--seed", "1", "--clip-epochs", "2",
                    "--synthetic-films", "1",
                    "--base-steps", "10", "--lora-steps", "2", "--eval-samples", "2", "--compose-seeds", "1", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[3/3]" in proc.stdout and "all assets materialized" in proc.stdout

    # the reel, the films' outputs, the Dagster history and the MLflow runs all live under the home
    assert len(list((home / "reel").glob("*.mp4"))) == 3
    films = sorted((home / "films").iterdir())
    assert len(films) == 3
    for film in films:
        shots = pd.read_parquet(film / "shots.parquet")
        clips = pd.read_parquet(film / "clips.parquet")
        assert len(shots) >= 3 and len(clips) == len(shots)
    assert leftovers(home / "films") == []

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        instance = DagsterInstance.get()
        runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert sorted(r.job_name for r in runs) == sorted(["build_dataset"] + ["ingest_films"] * 3
                                                    + ["summarize_camera_diff", "train_base_video_model"]
                                                    + ["train_camera_clip"] + ["train_camera_diff_lora"] * 20
                                                    + ["evaluate_clip_lora"])
        run_ids = {r.run_id for r in runs}
    finally:
        del os.environ["DAGSTER_HOME"]

    tracker = Tracker.for_home(home)
    mlruns = MlflowClient(tracker.tracking_uri).search_runs([tracker.experiment_id])
    assert {r.data.tags[TAG_ASSET_KEY] for r in mlruns} == {"raw_films", "film_proxies", "shots", "shot_clips",
                                                             "shot_labels", "cinematic2k", "camera_clip",
                                                             "base_video_model", "camera_diff_lora",
                                                             "camera_diff_summary", "clip_lora_eval"}
    assert {r.data.tags[TAG_DAGSTER_RUN] for r in mlruns} == run_ids
    from cinepipe.taxonomy import TAXONOMY

    assert {r.data.tags.get(TAG_PARTITION) for r in mlruns} == {f.name for f in films} | {None} | set(
        TAXONOMY.patterns)
    assert all(r.info.status == "FINISHED" for r in mlruns)
    # the LoRA set: one parent run, every partition's run nested under it, the summary's table on it
    lora_set = [r for r in mlruns if r.data.tags.get("cinepipe.lora_set") == "true"]
    assert len(lora_set) == 1 and "motion_control_acc_mean" in lora_set[0].data.metrics
    children = [r for r in mlruns if r.data.tags.get("mlflow.parentRunId") == lora_set[0].info.run_id]
    assert sum(r.data.tags[TAG_ASSET_KEY] == "camera_diff_lora" for r in children) == 20
    boosts = {r.data.tags[TAG_PARTITION]: r.data.metrics["training_zoom_boost"] for r in children
              if r.data.tags[TAG_ASSET_KEY] == "camera_diff_lora"}
    assert boosts["zoom_in"] > 0 and boosts["dolly_out"] < 0 and boosts["pan_left"] == 0 == boosts["close_up"]
    assert "[20/20]" in proc.stdout and "camera_diff_summary: motion control" in proc.stdout
    evaluation = next(r for r in mlruns if r.data.tags[TAG_ASSET_KEY] == "clip_lora_eval"
                      and "cinepipe.method" not in r.data.tags)
    assert {f"{m}_pattern_presence_mean" for m in ("merge", "switch", "composite", "cliplora")} <= set(
        evaluation.data.metrics)
    assert "clip_lora_eval in" in proc.stdout
    # the dataset: one row per shot of both films, its version on the MLflow run and in LATEST
    version = (home / "datasets" / "cinematic2k" / "LATEST").read_text().strip()
    dataset = pd.read_parquet(home / "datasets" / "cinematic2k" / version / "cinematic2k.parquet")
    assert len(dataset) == sum(len(pd.read_parquet(f / "shots.parquet")) for f in films)
    assert {r.data.tags[TAG_DATASET_VERSION] for r in mlruns if TAG_DATASET_VERSION in r.data.tags} == {version}
    clip_run = next(r for r in mlruns if r.data.tags[TAG_ASSET_KEY] == "camera_clip")
    assert {"test_t2v_r1", "test_v2t_r1", "test_t2v_r5", "test_direction_acc", "test_t2v_r1_meanpool"} <= \
        set(clip_run.data.metrics) and clip_run.info.status == "FINISHED"
    versions = MlflowClient(tracker.tracking_uri).search_model_versions("name='CameraCLIP'")
    assert [v.tags[TAG_DATASET_VERSION] for v in versions] == [version]
    assert f"cinematic2k {version}" in proc.stdout

    # a second run finds the reel already rendered and succeeds again
    again = cinepipe("run", "--films", "3", "--shots-per-film", "8", "--seed", "1", "--clip-epochs", "1",
                     "--synthetic-films", "1",
                     "--no-camera-diff", env=env)
    assert again.returncode == 0, again.stderr


def test_cinepipe_run_names_failed_assets(tmp_path, odd_films, bad_files):
    landing = tmp_path / "landing"
    landing.mkdir()
    for path in (odd_films["base"], bad_files["text"]):
        (landing / path.name).write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env["CINEPIPE_HOME"] = str(tmp_path / "home")
    env["CINEPIPE_LANDING"] = str(landing)
    proc = cinepipe("run", "--clip-epochs", "1", "--synthetic-films", "1", "--no-camera-diff", env=env)
    assert proc.returncode == 1
    assert f"raw_films: {landing / bad_files['text'].name}: a text file, not a video" in proc.stderr
    assert "base.mp4" in proc.stdout and "ok" in proc.stdout


def test_workspace_loads():
    proc = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate",
                           "-w", "workspace.yaml"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

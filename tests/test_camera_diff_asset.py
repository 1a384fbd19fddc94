"""CameraDiff materialized on the small reel's dataset (tiny settings): the base, two pattern partitions (a
movement and a framing), the summary, MLflow runs and the registry, a failing partition, and `cinepipe generate`."""

import json
import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance
from mlflow.tracking import MlflowClient

from assets_defs.definitions import build_definitions
from cinepipe import dataset as c2k
from cinepipe.tracking import TAG_ASSET_KEY, TAG_DATASET_VERSION, TAG_PARTITION, Tracker

REPO = Path(__file__).resolve().parents[1]
BASE = {"size": 32, "frames": 8, "layers": 2, "steps": 20, "batch_size": 4}
LORA = {"steps": 4, "framing_angle_steps": 4, "batch_size": 4, "eval_samples": 2, "eval_steps": 3}


def _run(home, landing, job, partition=None, config=None, op=None):
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        defs = build_definitions(home=str(home), landing=str(landing))
        run_config = {"ops": {op: {"config": config}}} if op else {}
        return defs.resolve_job_def(job).execute_in_process(instance=DagsterInstance.get(), partition_key=partition,
                                                             run_config=run_config, raise_on_error=False)
    finally:
        del os.environ["DAGSTER_HOME"]


def _meta(result, asset):
    return {k: getattr(v, "value", v) for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_camera_diff_trains_evaluates_registers_and_generates(dataset_home, tmp_path):
    home, landing = dataset_home
    version = c2k.latest_version(home)
    result = _run(home, landing, "train_base_video_model", config=BASE, op="base_video_model")
    assert result.success
    base_meta = _meta(result, "base_video_model")
    assert base_meta["dataset_version"] == version and base_meta["clips"] > 0
    client = MlflowClient(Tracker.for_home(home).tracking_uri)
    base_run = client.get_run(base_meta["mlflow_run_id"])
    assert base_run.info.status == "FINISHED" and base_run.data.tags[TAG_DATASET_VERSION] == version
    assert len(client.get_metric_history(base_run.info.run_id, "train_loss")) >= 2

    for pattern in ("tilt_up", "full_shot", "dutch_angle"):
        result = _run(home, landing, "train_camera_diff_lora", pattern, LORA, "camera_diff_lora")
        assert result.success, pattern
        meta = _meta(result, "camera_diff_lora")
        assert "data:image/gif;base64," in meta["preview"] and meta["dataset_version"] == version
        run = client.get_run(meta["mlflow_run_id"])
        tags, metrics = run.data.tags, run.data.metrics
        assert run.info.status == "FINISHED"
        assert tags[TAG_ASSET_KEY] == "camera_diff_lora" and tags[TAG_PARTITION] == pattern
        assert tags[TAG_DATASET_VERSION] == version and tags["dagster.run_id"] == result.run_id
        if pattern == "tilt_up":
            for key in ("motion_control_acc", "motion_control_acc_base", "motion_static_frac",
                        "motion_estimator_ceiling"):
                assert 0.0 <= metrics[key] <= 1.0, key
            assert metrics["training_pace"] >= 1.0  # the clips played faster when they move too little
        else:
            assert "motion_control_acc" not in metrics and metrics["training_pace"] == 1.0
        assert metrics["training_zoom_boost"] == 0.0  # neither a zoom nor a dolly
        if "CameraCLIP" in {m.name for m in client.search_registered_models()}:
            assert 0.0 <= metrics["cameraclip_pattern_acc"] <= 1.0
            assert "cameraclip_pattern_acc_base" in metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
        assert "adapter/pytorch_lora_weights.safetensors" in artifacts
        assert client.list_artifacts(run.info.run_id, "preview")
        versions = client.search_model_versions(f"name='CameraDiff-{pattern}'")
        assert versions and versions[0].tags[TAG_DATASET_VERSION] == version
        assert (home / "models" / "camera_diff" / "lora" / pattern / "pytorch_lora_weights.safetensors").exists()

    result = _run(home, landing, "summarize_camera_diff")
    assert result.success
    summary = _meta(result, "camera_diff_summary")
    assert summary["patterns_trained"] == 3 and "| tilt_up" in summary["patterns"]
    assert "motion_control_acc_mean" in summary and len(summary["missing_patterns"]) == 17

    # one failing partition fails alone, with one line naming the pattern and the count
    result = _run(home, landing, "train_camera_diff_lora", "zoom_in", {**LORA, "min_clips": 10_000},
                  "camera_diff_lora")
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "pattern zoom_in:" in failure.event_specific_data.error.message
    assert "training clips" in failure.event_specific_data.error.message

    out = tmp_path / "gen.mp4"
    env = {**os.environ, "CINEPIPE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "cinepipe.cli", "generate", "a woman in a courtyard",
                           "--pattern", "tilt_up", "--pattern", "full_shot", "--steps", "3", "--out", str(out),
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(info["models"]) == {"base", "tilt_up", "full_shot"} and info["denoiser_calls"] == 3
    probe = subprocess.run([sys.executable, "-m", "cinepipe.cli", "probe", str(out), "--json"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert json.loads(probe.stdout)["width"] == 32 * 4

    if "CameraCLIP" not in {m.name for m in client.search_registered_models()}:  # this file run alone
        config = {"epochs": 1, "compare_mean_pooling": False, "synthetic_films": 1, "synthetic_test_films": 0}
        assert _run(home, landing, "train_camera_clip", config=config,
                    op="camera_clip").success
    # CLIPLoRA against the static methods on the suite's request 3 (full shot, dutch angle, tilt up), one seed
    result = _run(home, landing, "evaluate_clip_lora", config={"seeds": [0], "steps": 3, "population": 3,
                                                               "generations": 1, "elitism": 1, "preview_steps": 2,
                                                               "requests": [3]}, op="clip_lora_eval")
    assert result.success
    evaluation = _meta(result, "clip_lora_eval")
    run = client.get_run(evaluation["mlflow_run_id"])
    for method in ("merge", "switch", "composite", "cliplora"):
        for key in ("pattern_presence_mean", "pattern_presence_std", "cameraclip_score_mean", "denoiser_calls",
                    "seconds"):
            assert f"{method}_{key}" in run.data.metrics, (method, key)
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert {c.data.tags["cinepipe.method"] for c in children} == {"merge", "switch", "composite", "cliplora"}
    assert run.data.metrics["merge_denoiser_calls"] == 3 and run.data.metrics["composite_denoiser_calls"] == 9
    assert "| cliplora" in evaluation["results"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"fitness_vs_evaluations.png", "previews"}

    composed = tmp_path / "composed.mp4"
    done = subprocess.run([sys.executable, "-m", "cinepipe.cli", "compose", "a full shot, the camera tilts up",
                           "--pattern", "full_shot", "--pattern", "tilt_up", "--method", "cliplora", "--steps", "3",
                           "--population", "3", "--generations", "1", "--preview-steps", "2", "--out", str(composed),
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["method"] == "cliplora" and composed.exists() and info["denoiser_calls"] > 3

    # lineage both ways: the LoRA -> its runs, dataset version, films; a film -> dataset versions and models
    lineage = subprocess.run([sys.executable, "-m", "cinepipe.cli", "lineage", "--model", "CameraDiff-tilt_up",
                              "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert lineage.returncode == 0, lineage.stderr[-1000:]
    model = json.loads(lineage.stdout)
    table = c2k.load_version(home, version)
    assert model["dataset_version"] == version and model["dagster_partition"] == "tilt_up"
    assert model["dagster_run_id"] and {f["film_id"] for f in model["films"]} == set(table["film_id"])
    assert sorted(s for ids in model["shots"].values() for s in ids) == sorted(table["shot_id"])
    film = table["film_name"].iloc[0]
    lineage = subprocess.run([sys.executable, "-m", "cinepipe.cli", "lineage", "--film", film, "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert lineage.returncode == 0, lineage.stderr[-1000:]
    back = json.loads(lineage.stdout)
    assert version in {d["dataset_version"] for d in back["datasets"]}
    assert {"CameraDiff-base", "CameraDiff-tilt_up"} <= {m["model"] for m in back["models"]}

    bad = subprocess.run([sys.executable, "-m", "cinepipe.cli", "generate", "x", "--pattern", "no_such",
                          "--out", str(tmp_path / "x.mp4")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no_such" in bad.stderr

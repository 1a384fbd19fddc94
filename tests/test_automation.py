"""Declarative automation: models follow Cinematic2K's data version (not its mere re-materialization), the LoRAs
follow the base, and the weekly retraining schedule."""

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, evaluate_automation_conditions

from assets_defs.definitions import build_definitions

DATA_VERSION_TAG = "dagster/data_version"  # the tag a materialization's DataVersion is stored under


def _requested(result) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size > 0}


def _report(instance, asset: str, version: str | None = None, partition: str | None = None) -> None:
    tags = {DATA_VERSION_TAG: version} if version else {}
    instance.report_runless_asset_event(AssetMaterialization(AssetKey(asset), partition=partition, tags=tags))


@pytest.fixture()
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_models_retrain_when_the_dataset_version_changes_and_not_otherwise(tmp_path, instance):
    defs = build_definitions(home=str(tmp_path))
    models = {"camera_clip", "base_video_model"}
    start = evaluate_automation_conditions(defs, instance)  # the sensor's first tick, on an empty home
    assert not _requested(start)
    _report(instance, "cinematic2k", "v1")
    first = evaluate_automation_conditions(defs, instance, cursor=start.cursor)
    assert models <= _requested(first)
    for asset in models:  # the models are trained on v1
        _report(instance, asset)
    _report(instance, "cinematic2k", "v1")  # an unchanged rebuild: same data version
    same = evaluate_automation_conditions(defs, instance, cursor=first.cursor)
    assert not (models & _requested(same))
    _report(instance, "cinematic2k", "v2")  # new films: a new version
    changed = evaluate_automation_conditions(defs, instance, cursor=same.cursor)
    assert models <= _requested(changed)


def test_the_dataset_is_rebuilt_once_per_batch_of_films(tmp_path, instance):
    """Cinematic2K is requested once films were labelled, not again on the next tick, and again for new films
    (that it waits for films still in progress is exercised for real by the soak test)."""
    defs = build_definitions(home=str(tmp_path))
    instance.add_dynamic_partitions("films", ["a", "b", "c"])
    start = evaluate_automation_conditions(defs, instance)
    assert "cinematic2k" not in _requested(start)
    for film in ("a", "b"):
        _report(instance, "shot_clips", partition=film)
        _report(instance, "shot_labels", partition=film)
    batch = evaluate_automation_conditions(defs, instance, cursor=start.cursor)
    assert "cinematic2k" in _requested(batch)
    quiet = evaluate_automation_conditions(defs, instance, cursor=batch.cursor)
    assert "cinematic2k" not in _requested(quiet)
    _report(instance, "cinematic2k", "v1")  # the requested build
    built = evaluate_automation_conditions(defs, instance, cursor=quiet.cursor)
    assert "cinematic2k" not in _requested(built)
    _report(instance, "shot_labels", partition="c")  # a later film
    later = evaluate_automation_conditions(defs, instance, cursor=built.cursor)
    assert "cinematic2k" in _requested(later)


def test_every_lora_partition_follows_a_new_base(tmp_path, instance):
    from cinepipe.taxonomy import TAXONOMY

    defs = build_definitions(home=str(tmp_path))
    _report(instance, "cinematic2k", "v1")
    start = evaluate_automation_conditions(defs, instance)
    _report(instance, "base_video_model")
    result = evaluate_automation_conditions(defs, instance, cursor=start.cursor)
    lora = [r for r in result.results if r.key.to_user_string() == "camera_diff_lora"][0]
    assert lora.true_subset.size == len(TAXONOMY.patterns)


def test_weekly_retraining_schedule(tmp_path):
    defs = build_definitions(home=str(tmp_path))
    schedule = defs.resolve_schedule_def("retrain_weekly")
    assert schedule.cron_schedule == "0 3 * * 0"
    job = defs.resolve_job_def("retrain_models")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"camera_clip", "base_video_model"}

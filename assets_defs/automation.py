"""Automation: the dataset is rebuilt once per batch of films, models retrain when the dataset version changes
(and not otherwise), and on a weekly schedule.

- ``cinematic2k``: requested once the films' labels or clips were updated and no film is still being ingested
  (queued runs count), so a batch of films dropped at once gives one new dataset version, not one per film; a
  film that failed does not hold it up (it is left out and named in the dataset's metadata).
- ``camera_clip`` and ``base_video_model``: requested when Cinematic2K's *data version* (its content hash) changes;
  a rebuild that produced the same version requests nothing.
- ``camera_diff_lora`` (every partition): requested when the base model is updated; ``camera_diff_summary`` when
  the LoRAs are, once none is still in progress.
- ``retrain_weekly``: retrains CameraCLIP and the base (and, through the conditions above, the twenty LoRAs and the
  summary) on the latest dataset version; cron from ``CINEPIPE_RETRAIN_CRON`` (default Sunday 03:00,
  ``0 3 * * 0``), time zone from ``CINEPIPE_RETRAIN_TZ`` (default UTC).

Two sensors evaluate the conditions: ``dataset_automation`` (``cinematic2k``) and ``model_automation`` (the models
and evaluations), both running by default under ``dagster dev``; ``CINEPIPE_AUTO_RETRAIN=0`` starts the second one
stopped (a laptop that should not start training on its own; the UI can start it).
"""

import os

from dagster import (AssetSelection, AutomationCondition, AutomationConditionSensorDefinition,
                     DefaultScheduleStatus, DefaultSensorStatus, ScheduleDefinition, define_asset_job)

RETRAIN_CRON = os.environ.get("CINEPIPE_RETRAIN_CRON", "0 3 * * 0")
RETRAIN_TZ = os.environ.get("CINEPIPE_RETRAIN_TZ", "UTC")


def on_dataset_version_change() -> AutomationCondition:
    """True when an upstream asset's data version changed since this asset was last handled (or the asset is
    newly missing), with nothing upstream missing and nothing upstream or here in progress."""
    return (
        (AutomationCondition.newly_missing()
         | AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())).since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("dataset version changed")


def after_films_settle() -> AutomationCondition:
    """True when a film's labels or clips were updated since this asset was last handled and no film is in
    progress (queued, starting or running) any more."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("films settled")


def after_upstream_update() -> AutomationCondition:
    return AutomationCondition.eager()


retrain_job = define_asset_job(
    "retrain_models",
    selection=AssetSelection.assets("camera_clip", "base_video_model"),
    description="Retrain CameraCLIP and CameraDiff's base on the latest Cinematic2K version (the LoRAs follow).",
)

retrain_schedule = ScheduleDefinition(
    name="retrain_weekly", job=retrain_job, cron_schedule=RETRAIN_CRON, execution_timezone=RETRAIN_TZ,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Weekly retraining on the latest dataset version (CINEPIPE_RETRAIN_CRON overrides the cron).",
)

AUTO_RETRAIN = os.environ.get("CINEPIPE_AUTO_RETRAIN", "1").strip().lower() not in ("0", "false", "no", "off")

dataset_automation_sensor = AutomationConditionSensorDefinition(
    "dataset_automation", target=AssetSelection.assets("cinematic2k"), default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30, description="Rebuilds Cinematic2K once a batch of films is ingested.",
)

model_automation_sensor = AutomationConditionSensorDefinition(
    "model_automation", target=AssetSelection.all() - AssetSelection.assets("cinematic2k"),
    default_status=DefaultSensorStatus.RUNNING if AUTO_RETRAIN else DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=30,
    description="Retrains the models when the dataset version changes (CINEPIPE_AUTO_RETRAIN=0: stopped).",
)

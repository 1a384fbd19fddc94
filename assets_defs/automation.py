"""Automation: models retrain when the dataset version changes (and not otherwise), and on a weekly schedule.

- ``camera_clip`` and ``base_video_model``: requested when Cinematic2K's *data version* (its content hash) changes;
  a rebuild that produced the same version requests nothing.
- ``camera_diff_lora`` (every partition): requested when the base model is updated; ``camera_diff_summary`` when
  the LoRAs are, once none is still in progress.
- ``retrain_weekly``: retrains CameraCLIP and the base (and, through the conditions above, the twenty LoRAs and the
  summary) on the latest dataset version; cron from ``CINEPIPE_RETRAIN_CRON`` (default Sunday 03:00,
  ``0 3 * * 0``), time zone from ``CINEPIPE_RETRAIN_TZ`` (default UTC).

The conditions are evaluated by the ``cinepipe_automation`` sensor (running by default under ``dagster dev``).
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

automation_sensor = AutomationConditionSensorDefinition(
    "cinepipe_automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

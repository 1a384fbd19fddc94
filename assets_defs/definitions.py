"""The code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from dagster import Definitions

from assets_defs.ingestion import INGESTION_ASSETS
from assets_defs.automation import dataset_automation_sensor, model_automation_sensor, retrain_job, retrain_schedule
from assets_defs.camera_clip import CAMERA_CLIP_ASSETS
from assets_defs.camera_diff import CAMERA_DIFF_ASSETS
from assets_defs.clip_lora import CLIP_LORA_ASSETS
from assets_defs.jobs import (base_video_job, camera_clip_job, camera_diff_summary_job, clip_lora_job, dataset_job,
                              ingest_job, lora_job)
from assets_defs.labelling import LABELLING_ASSETS
from assets_defs.resources import CinepipeHome, MlflowTracking
from assets_defs.scale_out import build_executor
from assets_defs.sensors import landing_sensor
from cinepipe.home import default_home


def build_definitions(home: str | None = None, landing: str | None = None, executor: str | None = None) -> Definitions:
    """The code location; ``executor`` (default: ``CINEPIPE_EXECUTOR``) is where the steps of its runs execute."""
    home = home or str(default_home())
    return Definitions(
        assets=[*INGESTION_ASSETS, *LABELLING_ASSETS, *CAMERA_CLIP_ASSETS, *CAMERA_DIFF_ASSETS, *CLIP_LORA_ASSETS],
        jobs=[ingest_job, dataset_job, camera_clip_job, base_video_job, lora_job, camera_diff_summary_job, retrain_job,
              clip_lora_job],
        executor=build_executor(executor),
        schedules=[retrain_schedule],
        sensors=[landing_sensor, dataset_automation_sensor, model_automation_sensor],
        resources={
            "home": CinepipeHome(home=home, landing=landing or ""),
            "mlflow": MlflowTracking(home=home),
        },
    )


defs = build_definitions()

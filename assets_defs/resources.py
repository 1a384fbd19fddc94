"""Resources: the cinepipe home (and landing folder) and MLflow tracking."""


import contextlib
from pathlib import Path
from typing import Iterator, Optional

from dagster import AssetExecutionContext, ConfigurableResource, MetadataValue

from cinepipe.home import default_home, landing_dir
from cinepipe.tracking import (TAG_ASSET_KEY, TAG_DAGSTER_RUN, TAG_DATASET_VERSION, TAG_PARTITION, TrackedRun,
                               Tracker)


class CinepipeHome(ConfigurableResource):
    """Where cinepipe keeps its data. ``landing`` empty means: the built-in reel under the home."""

    home: str = str(default_home())
    landing: str = ""
    settle_seconds: float = 5.0  # a landing file modified more recently than this is still being copied

    @property
    def path(self) -> Path:
        return Path(self.home)

    @property
    def landing_path(self) -> Path:
        return Path(self.landing) if self.landing else landing_dir(self.path)

    @property
    def landing_index(self) -> Path:
        return self.path / "landing_index.json"


class MlflowTracking(ConfigurableResource):
    """MLflow: a SQLite store under the home unless ``tracking_uri`` (or MLFLOW_TRACKING_URI) names another."""

    home: str = str(default_home())
    tracking_uri: Optional[str] = None
    experiment: str = "cinepipe"

    def tracker(self) -> Tracker:
        return Tracker.for_home(self.home, self.tracking_uri, self.experiment)

    @contextlib.contextmanager
    def run(self, context: AssetExecutionContext, name: str, dataset_version: Optional[str] = None,
            tags: Optional[dict] = None, parent_run_id: Optional[str] = None,
            resume_run_id: Optional[str] = None) -> Iterator[TrackedRun]:
        """An MLflow run tagged with the Dagster run id, asset key, partition key and dataset version."""
        all_tags = {
            TAG_DAGSTER_RUN: context.run.run_id,
            TAG_ASSET_KEY: context.asset_key.to_user_string(),
            TAG_PARTITION: context.partition_key if context.has_partition_key else None,
            TAG_DATASET_VERSION: dataset_version,
            **(tags or {}),
        }
        with self.tracker().start_run(name, all_tags, parent_run_id, resume_run_id) as run:
            yield run

    @staticmethod
    def link_metadata(run: TrackedRun) -> dict:
        return {"mlflow_run_id": run.run_id, "mlflow_run": MetadataValue.url(run.url),
                "mlflow_tracking_uri": run.tracker.tracking_uri}

"""MLflow tracking for every cinepipe run.

Embedded default: a SQLite store at ``<CINEPIPE_HOME>/mlflow/mlflow.db`` with artifacts beside it; a
``MLFLOW_TRACKING_URI`` in the environment (or an explicit URI) overrides it.

Several Dagster step processes may write to one SQLite file at once, which SQLite answers with "database is locked".
So, for SQLite stores, every write takes an inter-process file lock beside the database, and any write that still
meets a lock error is retried with back-off. Runs are driven through ``MlflowClient`` with explicit run ids (no
global "active run"), so threads and processes never share state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

# Tag names read by checks outside the repo.
TAG_DAGSTER_RUN = "dagster.run_id"
TAG_ASSET_KEY = "dagster.asset_key"
TAG_PARTITION = "dagster.partition_key"
TAG_DATASET_VERSION = "cinepipe.dataset_version"


def default_tracking_uri(home: str | os.PathLike) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = Path(home).absolute() / "mlflow" / "mlflow.db"
    return f"sqlite:///{db}"


def _is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text and "sqlite" in text


@dataclass
class Tracker:
    """Opens MLflow runs in one experiment of one tracking store."""

    tracking_uri: str
    experiment: str = "cinepipe"
    artifact_root: str | None = None  # for a new experiment in a local store; None lets MLflow choose
    retries: int = 8
    _client: Any = field(default=None, init=False, repr=False)
    _experiment_id: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_home(cls, home: str | os.PathLike, tracking_uri: str | None = None,
                 experiment: str = "cinepipe") -> "Tracker":
        uri = tracking_uri or default_tracking_uri(home)
        artifacts = None
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)
            artifacts = (db.parent / "artifacts").as_uri()
        return cls(tracking_uri=uri, experiment=experiment, artifact_root=artifacts)

    # -- plumbing ---------------------------------------------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        if not self.is_sqlite:
            yield
            return
        lock_path = Path(self.tracking_uri[len("sqlite:///"):]).with_suffix(".lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run one store write under the store lock, retrying "database is locked" with jittered back-off."""
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                with self._store_lock():
                    return fn(*args, **kwargs)
            except Exception as exc:  # MLflow wraps SQLAlchemy's OperationalError in its own exceptions
                if attempt == self.retries or not _is_locked_error(exc):
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 3.0)
        raise AssertionError("unreachable")

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = self.call(MlflowClient, tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.call(self.client.get_experiment_by_name, self.experiment)
            if found is None:
                try:
                    self._experiment_id = self.call(self.client.create_experiment, self.experiment,
                                                    artifact_location=self.artifact_root)
                except Exception:  # another process created it first
                    found = self.call(self.client.get_experiment_by_name, self.experiment)
                    if found is None:
                        raise
                    self._experiment_id = found.experiment_id
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def run_url(self, run_id: str) -> str:
        """The run in the MLflow UI: at ``CINEPIPE_MLFLOW_UI`` if set (a server's address as a browser reaches it,
        which may differ from the one the pipeline uses), else the tracking server, else ``mlflow ui``'s default."""
        base = os.environ.get("CINEPIPE_MLFLOW_UI") or (
            self.tracking_uri if self.tracking_uri.startswith("http") else "http://127.0.0.1:5000")
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"

    # -- runs -------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def start_run(self, name: str, tags: dict[str, str] | None = None,
                  parent_run_id: str | None = None, resume_run_id: str | None = None) -> Iterator["TrackedRun"]:
        """A run that ends FINISHED when the block succeeds and FAILED when it raises. With ``resume_run_id`` (a
        run a killed process left RUNNING, say), that run is continued instead of a new one started."""
        all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if resume_run_id:
            self.call(self.client.update_run, resume_run_id, status="RUNNING")
            tracked = TrackedRun(self, resume_run_id)
            tracked.set_tags(all_tags)
        else:
            run = self.call(self.client.create_run, self.experiment_id, run_name=name, tags=all_tags)
            tracked = TrackedRun(self, run.info.run_id)
        try:
            yield tracked
        except BaseException:
            self.call(self.client.set_terminated, tracked.run_id, "FAILED")
            raise
        self.call(self.client.set_terminated, tracked.run_id, "FINISHED")


@dataclass
class TrackedRun:
    tracker: Tracker
    run_id: str

    @property
    def url(self) -> str:
        return self.tracker.run_url(self.run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for i in range(0, len(items), 100):
            self.tracker.call(self.tracker.client.log_batch, self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 500):
            self.tracker.call(self.tracker.client.log_batch, self.run_id, metrics=items[i:i + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        if items:
            self.tracker.call(self.tracker.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.tracker.call(self.tracker.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / name
            target.write_text(json.dumps(obj, indent=2, default=str))
            self.log_artifact(target)

    def log_dataset(self, df, name: str, digest: str, source: str, context: str = "training") -> None:
        """Record a dataset version as an input of this run (MLflow's dataset tracking: name, digest, schema,
        source), so the run's page shows what it was built or trained on."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # MLflow's hints about ambiguous local sources and integer columns
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(df, source=source, name=name, digest=digest)
            entry = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self.tracker.call(self.tracker.client.log_inputs, self.run_id, datasets=[entry])

    def log_figure(self, figure, file_name: str, artifact_path: str | None = None) -> None:
        """A matplotlib figure as a PNG artifact."""
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / file_name
            figure.savefig(target, dpi=110, bbox_inches="tight")
            self.log_artifact(target, artifact_path)
        import matplotlib.pyplot as plt

        plt.close(figure)  # pyplot keeps every figure it made until closed

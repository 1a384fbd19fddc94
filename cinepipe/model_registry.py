"""The MLflow model registry as cinepipe uses it: log a model file or directory to its training run, register it
as a new version of a named model (tagged with the dataset version: its lineage), find the latest version, and
download a version's files.

Names: ``CameraCLIP``, ``CameraDiff-base``, ``CameraDiff-<pattern>``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cinepipe.tracking import TAG_DATASET_VERSION, TrackedRun, Tracker


def register_model(run: TrackedRun, path: str | os.PathLike, name: str, artifact_dir: str, dataset_version: str,
                   tags: dict | None = None, description: str = "") -> str:
    """Log ``path`` (a file or a directory's contents) under ``artifact_dir`` of ``run`` and register it as a new
    version of ``name``; returns the version number."""
    client, tracker = run.tracker.client, run.tracker
    path = Path(path)
    if path.is_dir():
        tracker.call(client.log_artifacts, run.run_id, str(path), artifact_dir)
    else:
        run.log_artifact(path, artifact_dir)
    try:
        tracker.call(client.get_registered_model, name)
    except Exception:  # noqa: BLE001 - not registered yet (or created meanwhile by another process)
        try:
            tracker.call(client.create_registered_model, name, description=description)
        except Exception:  # noqa: BLE001
            tracker.call(client.get_registered_model, name)
    version = tracker.call(client.create_model_version, name, source=f"runs:/{run.run_id}/{artifact_dir}",
                           run_id=run.run_id, tags={TAG_DATASET_VERSION: dataset_version, **(tags or {})})
    return str(version.version)


def latest_model_version(tracker: Tracker, name: str) -> str | None:
    try:
        versions = tracker.call(tracker.client.search_model_versions, f"name='{name}'")
    except Exception:  # noqa: BLE001 - no registry entries at all
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def download_model(tracker: Tracker, name: str, artifact_dir: str, version: str | None = None,
                   target: str | os.PathLike | None = None) -> tuple[Path, str, str]:
    """The files of ``name`` at ``version`` (default: the latest): (local directory, version, run id).
    LookupError when nothing is registered under that name."""
    version = version or latest_model_version(tracker, name)
    if version is None:
        raise LookupError(f"no {name} model is registered in {tracker.tracking_uri}")
    mv = tracker.call(tracker.client.get_model_version, name, version)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    target = Path(target) if target else Path(tempfile.mkdtemp(prefix=f"cinepipe-{name.lower()}-"))
    local = tracker.call(tracker.client.download_artifacts, mv.run_id, artifact_dir, str(target))
    return Path(local), str(version), mv.run_id

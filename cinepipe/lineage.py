"""Lineage both ways, from what the home and MLflow already record.

- ``model_lineage(home, tracker, name, version)``: a registered model version -> its MLflow run (and the Dagster
  run id, asset key and partition on its tags) -> the dataset version it was trained on -> the films and shots of
  that version (the split the model trained on, and the rest).
- ``film_lineage(home, tracker, film)``: a film (id, file name or stem) -> every dataset version holding it (with
  its shots and split there) -> every registered model version trained on one of those versions.

``cinepipe lineage --model CameraCLIP[/3]`` and ``cinepipe lineage --film my_film.mp4`` print them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cinepipe import dataset as c2k
from cinepipe.tracking import TAG_ASSET_KEY, TAG_DAGSTER_RUN, TAG_DATASET_VERSION, TAG_PARTITION, Tracker


class LineageError(LookupError):
    pass


def _versions(home: Path) -> list[str]:
    from cinepipe.home import datasets_dir

    root = datasets_dir(home)
    return sorted(p.name for p in root.iterdir() if (p / "cinematic2k.parquet").exists()) if root.exists() else []


def _registered(tracker: Tracker) -> list:
    try:
        models = tracker.call(tracker.client.search_registered_models)
    except Exception:  # noqa: BLE001 - an empty registry
        return []
    out = []
    for m in models:
        out += tracker.call(tracker.client.search_model_versions, f"name='{m.name}'")
    return out


def model_lineage(home: Path, tracker: Tracker, name: str, version: str | None = None) -> dict:
    from cinepipe.model_registry import latest_model_version

    version = version or latest_model_version(tracker, name)
    if version is None:
        raise LineageError(f"no {name} model is registered in {tracker.tracking_uri}")
    mv = tracker.call(tracker.client.get_model_version, name, version)
    run = tracker.call(tracker.client.get_run, mv.run_id)
    tags = run.data.tags
    dataset_version = mv.tags.get(TAG_DATASET_VERSION) or tags.get(TAG_DATASET_VERSION)
    out = {"model": name, "version": str(version), "mlflow_run_id": mv.run_id,
           "mlflow_run": tracker.run_url(mv.run_id), "dagster_run_id": tags.get(TAG_DAGSTER_RUN),
           "dagster_asset_key": tags.get(TAG_ASSET_KEY), "dagster_partition": tags.get(TAG_PARTITION),
           "dataset_version": dataset_version, "films": [], "shots": {}}
    if dataset_version and c2k.version_path(home, dataset_version).exists():
        table = c2k.load_version(home, dataset_version)
        for film, rows in table.groupby("film_id", sort=True):
            out["films"].append({"film_id": film, "film_name": rows["film_name"].iloc[0],
                                 "split": rows["split"].iloc[0], "shots": int(len(rows))})
        out["shots"] = {s: rows["shot_id"].tolist() for s, rows in table.groupby("split")}
    return out


def film_lineage(home: Path, tracker: Tracker, film: str) -> dict:
    datasets = []
    film_id = None
    for version in _versions(home):
        table = c2k.load_version(home, version)
        rows = table[(table["film_id"] == film) | (table["film_name"] == film)
                     | (table["film_name"].map(lambda n: Path(n).stem) == film)]
        if rows.empty:
            continue
        film_id = rows["film_id"].iloc[0]
        datasets.append({"dataset_version": version, "split": rows["split"].iloc[0], "shots": int(len(rows)),
                         "shot_ids": rows["shot_id"].tolist()})
    if not datasets:
        raise LineageError(f"{film}: in no Cinematic2K version under {home}")
    versions = {d["dataset_version"] for d in datasets}
    models = sorted(({"model": mv.name, "version": str(mv.version), "dataset_version": mv.tags.get(
        TAG_DATASET_VERSION), "mlflow_run_id": mv.run_id} for mv in _registered(tracker)
        if mv.tags.get(TAG_DATASET_VERSION) in versions), key=lambda m: (m["model"], int(m["version"])))
    return {"film": film, "film_id": film_id, "datasets": datasets, "models": models}


def format_model(lineage: dict) -> str:
    lines = [f"{lineage['model']} version {lineage['version']}",
             f"  MLflow run {lineage['mlflow_run_id']} ({lineage['mlflow_run']})",
             f"  Dagster run {lineage['dagster_run_id']}, asset {lineage['dagster_asset_key']}"
             + (f", partition {lineage['dagster_partition']}" if lineage["dagster_partition"] else ""),
             f"  dataset cinematic2k {lineage['dataset_version']}"]
    films = pd.DataFrame(lineage["films"])
    if not films.empty:
        lines.append("  films:")
        lines += [f"    {r.film_id}  {r.film_name}  {r.split}  {r.shots} shots" for r in films.itertuples()]
    return "\n".join(lines)


def format_film(lineage: dict) -> str:
    lines = [f"film {lineage['film']} ({lineage['film_id']})"]
    for d in lineage["datasets"]:
        lines.append(f"  cinematic2k {d['dataset_version']}: {d['shots']} shots, split {d['split']}")
    lines.append("  models trained on it:" if lineage["models"] else "  no registered model trained on it yet")
    lines += [f"    {m['model']} version {m['version']} (dataset {m['dataset_version']}, run {m['mlflow_run_id']})"
              for m in lineage["models"]]
    return "\n".join(lines)

"""The persistent home of a cinepipe installation (``CINEPIPE_HOME``, default ``./.cinepipe``) and its layout.

    <home>/dagster/             DAGSTER_HOME: run history, schedules, sensors' cursors
    <home>/mlflow/mlflow.db     the embedded MLflow store, artifacts in <home>/mlflow/artifacts/
    <home>/reel/                the built-in reel (the default landing folder when none is configured)
    <home>/films/<film_id>/     one folder per film: film.json, proxy.mp4, detection.json,
                                shots.parquet, clips/, clips.parquet, labels.parquet, labelling.json
    <home>/human_labels/        human label files (CSV or Parquet), applied to every dataset build
    <home>/datasets/cinematic2k/<version>/   one folder per dataset version; LATEST names the newest
    <home>/landing_index.json   content hashes of landing files already seen (path, size, mtime -> film_id)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("CINEPIPE_HOME", ".cinepipe")).absolute()


def landing_dir(home: Path) -> Path:
    """The folder of films to ingest: ``CINEPIPE_LANDING`` if set, else the built-in reel under the home."""
    env = os.environ.get("CINEPIPE_LANDING")
    return Path(env).absolute() if env else home / "reel"


@dataclass(frozen=True)
class FilmPaths:
    home: Path
    film_id: str

    @property
    def root(self) -> Path:
        return self.home / "films" / self.film_id

    @property
    def record(self) -> Path:
        return self.root / "film.json"

    @property
    def error(self) -> Path:
        return self.root / "error.json"

    @property
    def proxy(self) -> Path:
        return self.root / "proxy.mp4"

    @property
    def proxy_info(self) -> Path:
        return self.root / "proxy.json"

    @property
    def detection(self) -> Path:
        return self.root / "detection.json"

    @property
    def shots(self) -> Path:
        return self.root / "shots.parquet"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def clips(self) -> Path:
        return self.root / "clips.parquet"

    @property
    def labels(self) -> Path:
        return self.root / "labels.parquet"

    @property
    def labelling(self) -> Path:
        return self.root / "labelling.json"


def datasets_dir(home: Path, name: str = "cinematic2k") -> Path:
    return home / "datasets" / name


def human_labels_dir(home: Path) -> Path:
    """Human label files (CSV or Parquet) dropped here are applied to every dataset build."""
    return home / "human_labels"

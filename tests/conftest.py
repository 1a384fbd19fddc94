"""Shared fixtures: real clips from ../shared, generated odd and bad films, a small reel, an isolated home."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from media_fixtures import make_bad_files, make_odd_films

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("CINEPIPE_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))

# The small reel the tests use: every pattern still appears, but it renders in seconds.
SMALL_REEL = dict(seed=7, films=3, shots_per_film=8, width=320, height=180, fps=24, shot_seconds=(1.5, 2.5))


def real_clip(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real fixture {path} is not available")
    return path


@pytest.fixture(scope="session")
def odd_films(tmp_path_factory) -> dict[str, Path]:
    return make_odd_films(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, odd_films) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"), odd_films["base"])


@pytest.fixture(scope="session")
def small_reel(tmp_path_factory) -> Path:
    from cinepipe.reel import generate_reel

    out = tmp_path_factory.mktemp("reel")
    generate_reel(out, **SMALL_REEL)
    return out


@pytest.fixture(scope="session")
def dataset_reel(tmp_path_factory) -> Path:
    """The small reel with another seed: every one of the 20 patterns has clips in the train and val films (seed
    7 has no dolly_in there), so every LoRA partition can train."""
    from cinepipe.reel import generate_reel

    out = tmp_path_factory.mktemp("dataset_reel")
    generate_reel(out, **{**SMALL_REEL, "seed": 1})
    return out


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An isolated CINEPIPE_HOME with its own Dagster instance and MLflow store."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CINEPIPE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CINEPIPE_LANDING", raising=False)
    return home


def leftovers(folder: Path) -> list[Path]:
    """Temporary or half-written files: anything hidden or partial under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith((".part", ".tmp"))]


@pytest.fixture(scope="session")
def dataset_home(tmp_path_factory, dataset_reel):
    """A home with the small reel ingested, labelled and built into a dataset (3 films: train, val, test);
    shared by the training assets' tests (CameraCLIP, CameraDiff), which add their models to it."""
    from dagster import DagsterInstance, materialize

    from assets_defs.ingestion import INGESTION_ASSETS
    from assets_defs.labelling import LABELLING_ASSETS
    from assets_defs.partitions import FILMS_PARTITION
    from assets_defs.resources import CinepipeHome, MlflowTracking
    from cinepipe.media import film_id_for

    assets = [*INGESTION_ASSETS, *LABELLING_ASSETS]

    root = tmp_path_factory.mktemp("clip")
    home, landing = root / "home", root / "landing"
    landing.mkdir()
    for f in dataset_reel.iterdir():
        shutil.copy(f, landing / f.name)
    (home / "dagster").mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        instance = DagsterInstance.get()
        res = {"home": CinepipeHome(home=str(home), landing=str(landing), settle_seconds=0),
               "mlflow": MlflowTracking(home=str(home))}
        for video in sorted(landing.glob("*.mp4")):
            fid = film_id_for(video)
            instance.add_dynamic_partitions(FILMS_PARTITION, [fid])
            assert materialize(assets, selection=[*INGESTION_ASSETS, LABELLING_ASSETS[0]], partition_key=fid,
                               instance=instance, resources=res).success
        assert materialize(assets, selection=[LABELLING_ASSETS[1]], instance=instance, resources=res).success
    finally:
        del os.environ["DAGSTER_HOME"]
    return home, landing


def pytest_terminal_summary(terminalreporter):
    """Name the files the end-to-end tests left for people to look at (the UI screenshots)."""
    servers = sys.modules.get("servers")
    written = [p for p in getattr(servers, "OUTPUTS", []) if p.exists()]
    if written:
        terminalreporter.section("test output")
        for path in written:
            terminalreporter.write_line(str(path))

"""Shared fixtures: real clips from ../shared, generated odd and bad films, a small reel, an isolated home."""

from __future__ import annotations

import os
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


def pytest_terminal_summary(terminalreporter):
    """Name the files the end-to-end tests left for people to look at (the UI screenshots)."""
    servers = sys.modules.get("servers")
    written = [p for p in getattr(servers, "OUTPUTS", []) if p.exists()]
    if written:
        terminalreporter.section("test output")
        for path in written:
            terminalreporter.write_line(str(path))

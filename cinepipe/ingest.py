"""The per-film front end, as plain functions over the home layout: register (probe), proxy, shots, clips.

Each step reads what the previous one wrote under ``<home>/films/<film_id>/`` and writes its own outputs atomically,
so the Dagster assets that call these stay thin, and a step can be re-run alone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cinepipe.clips import cut_clips
from cinepipe.home import FilmPaths
from cinepipe.landing import LandingFile, scan_landing, unique_films
from cinepipe.media import MediaError, ProbeResult, ProxyInfo, ProxySpec, atomic_path, probe, write_json_atomic
from cinepipe.shots import (SHOT_SCHEMA, Boundary, ShotList, ShotSettings, shots_from_boundaries, split_film,
                            split_shots)

CLIP_SCHEMA = pa.schema([
    pa.field("shot_id", pa.string(), nullable=False),
    pa.field("film_id", pa.string(), nullable=False),
    pa.field("index", pa.int32(), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("clip_path", pa.string(), nullable=False),
    pa.field("thumbnail_paths", pa.list_(pa.string()), nullable=False),
])


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema) -> None:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def find_source(home: Path, landing: Path, film_id: str, hint: str | None = None) -> LandingFile:
    """The landing file holding ``film_id`` (the ``hint`` path is tried first)."""
    files = scan_landing(landing, home / "landing_index.json")
    if hint:
        files.sort(key=lambda f: f.path != os.path.abspath(hint))
    films = unique_films(files)
    if film_id not in films:
        raise FileNotFoundError(f"film {film_id}: no file with this content in {landing}")
    return films[film_id]


def register_film(home: Path, source: LandingFile) -> ProbeResult:
    """Probe the film and record it; a bad film gets an ``error.json`` with its reason, and MediaError is raised."""
    paths = FilmPaths(home, source.film_id)
    try:
        probed = probe(source.path)
    except MediaError as err:
        write_json_atomic(paths.error, {"film_id": source.film_id, "path": source.path, "reason": err.reason,
                                        "time": time.time()})
        raise
    if probed.film_id != source.film_id:
        raise MediaError(source.path, f"content changed while ingesting (expected {source.film_id}, "
                                      f"now {probed.film_id})")
    if paths.error.exists():
        paths.error.unlink()
    write_json_atomic(paths.record, {"source_name": source.name, **probed.to_dict()})
    return probed


def load_probe(home: Path, film_id: str) -> ProbeResult:
    record = json.loads(FilmPaths(home, film_id).record.read_text())
    record.pop("source_name", None)
    return ProbeResult(**record)


def build_proxy(home: Path, film_id: str, spec: ProxySpec = ProxySpec(),
                settings: ShotSettings = ShotSettings()) -> ProxyInfo:
    """Decode the film once: write its proxy and, from the same decode, the shot detectors' boundaries
    (``detection.json``), which the shots step uses when its settings are the same."""
    paths = FilmPaths(home, film_id)
    probed = load_probe(home, film_id)
    try:
        info, shots = split_film(probed, paths.proxy, spec, settings)
    except MediaError as err:
        write_json_atomic(paths.error, {"film_id": film_id, "path": probed.path, "reason": err.reason,
                                        "time": time.time()})
        raise
    boundaries = [{"frame": s["start_frame"], "kind": s["transition_in"]} for s in shots.shots[1:]]
    write_json_atomic(paths.detection, {"settings": asdict(settings), "frames": shots.frames,
                                        "boundaries": boundaries})
    write_json_atomic(paths.proxy_info, info.to_dict())
    return info


def load_proxy(home: Path, film_id: str) -> ProxyInfo:
    return ProxyInfo(**json.loads(FilmPaths(home, film_id).proxy_info.read_text()))


def detect_shots(home: Path, film_id: str, settings: ShotSettings = ShotSettings()) -> tuple[ShotList, bool]:
    """The film's shots; returns (shots, reused) where ``reused`` says the proxy pass's detection was used."""
    paths = FilmPaths(home, film_id)
    proxy = load_proxy(home, film_id)
    stored = json.loads(paths.detection.read_text()) if paths.detection.exists() else None
    if stored and stored["settings"] == asdict(settings) and stored["frames"] == proxy.frames:
        boundaries = [Boundary(**b) for b in stored["boundaries"]]
        shots = shots_from_boundaries(film_id, boundaries, proxy.frames, proxy.fps, proxy.start_s)
        reused = True
    else:  # other settings than the proxy pass used: detect again on the (small) proxy
        shots = split_shots(film_id, proxy, settings)
        reused = False
    write_parquet_atomic(shots.to_frame(), paths.shots, SHOT_SCHEMA)
    return shots, reused


def load_shots(home: Path, film_id: str) -> pd.DataFrame:
    return pd.read_parquet(FilmPaths(home, film_id).shots)


def cut_shot_clips(home: Path, film_id: str) -> pd.DataFrame:
    paths = FilmPaths(home, film_id)
    shots = load_shots(home, film_id).to_dict("records")
    rows = cut_clips(load_proxy(home, film_id), shots, film_id, paths.clips_dir)
    df = pd.DataFrame(rows, columns=[f.name for f in CLIP_SCHEMA])
    write_parquet_atomic(df, paths.clips, CLIP_SCHEMA)
    return df


def shot_statistics(shots: pd.DataFrame) -> dict[str, float]:
    durations = shots["duration_s"] if len(shots) else pd.Series([0.0])
    return {
        "shots": int(len(shots)),
        "cuts": int((shots["transition_in"] == "cut").sum()),
        "fades": int((shots["transition_in"] == "fade").sum()),
        "shot_mean_s": float(durations.mean()),
        "shot_median_s": float(durations.median()),
        "shot_min_s": float(durations.min()),
        "shot_max_s": float(durations.max()),
    }


def check_shot_coverage(shots: pd.DataFrame, proxy: ProxyInfo, min_shot_s: float) -> dict[str, tuple[bool, str]]:
    """The front end's invariants: name -> (passed, description)."""
    out: dict[str, tuple[bool, str]] = {}
    n = len(shots)
    out["has_shots"] = (n > 0, f"{n} shots")
    if n == 0:
        out["covers_film"] = (False, "no shots")
        out["min_shot_length"] = (False, "no shots")
        return out
    s = shots.sort_values("index")
    starts, ends = s["start_frame"].to_numpy(), s["end_frame"].to_numpy()
    gaps = int(((starts[1:] - ends[:-1]) > 0).sum())
    overlaps = int(((starts[1:] - ends[:-1]) < 0).sum())
    covers = starts[0] == 0 and ends[-1] == proxy.frames and gaps == 0 and overlaps == 0
    out["covers_film"] = (bool(covers), f"frames {starts[0]}..{ends[-1]} of {proxy.frames}; "
                                        f"{gaps} gaps, {overlaps} overlaps")
    shortest = float(s["duration_s"].min())
    # a film shorter than the minimum is one short shot, and that is fine
    ok = bool(n == 1 or shortest >= min_shot_s - 1e-6)
    out["min_shot_length"] = (ok, f"shortest shot {shortest:.3f} s; minimum {min_shot_s:.3f} s")
    return out

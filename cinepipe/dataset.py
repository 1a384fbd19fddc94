"""Cinematic2K: the labelled shot dataset, one Parquet row per shot, versioned by its content.

A build gathers every labelled film under the home: its shots, clips and automatic labels, the reel's ground truth
when the film came from the built-in reel, and human label files (``<home>/human_labels/`` plus any named in the
settings). Labels are resolved by precedence (see ``cinepipe.labels``), captioned, and split train/val/test by film
(``cinepipe.splits``: films keep the split they had in the previous version). The table is validated against
``DATASET_SCHEMA`` and taxonomy values, and its version is a hash of its content (ids, times, labels with sources
and confidences, captions, splits; not the paths, which depend on where the home lives).

Layout: ``<home>/datasets/cinematic2k/<version>/cinematic2k.parquet``, ``manifest.json`` and ``prompts.json`` (the
held-out generation prompts per pattern); ``LATEST`` holds the newest version. An unchanged build writes nothing new.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from cinepipe.captions import caption, pattern_prompts
from cinepipe.home import FilmPaths, datasets_dir, human_labels_dir
from cinepipe.labels import (FAMILIES, LABEL_COLUMNS, allowed_values, read_human_labels, reel_truth_labels,
                             resolve, resolve_human_labels, source_rank, truth_file_for, wide)
from cinepipe.media import atomic_path, write_json_atomic, write_text_atomic
from cinepipe.splits import DEFAULT_FRACTIONS, SPLITS, assign_splits
from cinepipe.taxonomy import TAXONOMY

NAME = "cinematic2k"
CODE_VERSION = "1"  # bump when the build's logic changes (schema, precedence, captions, splits)

DATASET_SCHEMA = pa.schema([
    pa.field("shot_id", pa.string(), nullable=False),
    pa.field("film_id", pa.string(), nullable=False),
    pa.field("film_name", pa.string(), nullable=False),
    pa.field("index", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("clip_path", pa.string(), nullable=False),
    pa.field("thumbnail_path", pa.string(), nullable=True),
    *[f for family in FAMILIES for f in (
        pa.field(family, pa.string(), nullable=True),
        pa.field(f"{family}_confidence", pa.float64(), nullable=False),
        pa.field(f"{family}_source", pa.string(), nullable=False),
    )],
    pa.field("pan", pa.float64(), nullable=True),
    pa.field("tilt", pa.float64(), nullable=True),
    pa.field("zoom", pa.float64(), nullable=True),
    pa.field("roll", pa.float64(), nullable=True),
    pa.field("caption", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
], metadata={"description": "Cinematic2K: one row per shot; labels with source and confidence; split by film"})

# the columns the version hashes (paths and film names depend on the installation, not on the data)
VERSIONED_COLUMNS = [f.name for f in DATASET_SCHEMA if f.name not in ("clip_path", "thumbnail_path", "film_name")]


class DatasetError(Exception):
    """The dataset cannot be built (one line: the reason)."""


@dataclass(frozen=True)
class DatasetSettings:
    seed: int = 0
    fractions: dict = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    use_reel_truth: bool = True  # films from the built-in reel: its exact ground truth beats the auto labellers
    human_label_files: tuple[str, ...] = ()  # in addition to <home>/human_labels/*.csv|*.parquet
    min_train_clips_per_pattern: int = 1  # the pattern-coverage check


@dataclass
class DatasetBuild:
    table: pd.DataFrame
    version: str
    path: Path
    previous_version: str | None
    created: bool  # False when the content equals an existing version
    skipped_films: dict[str, str]  # film_id -> why it is not in the dataset
    human_rows_unmatched: int
    agreement: pd.DataFrame  # auto label vs a trusted source (reel truth, human) per shot and family

    def manifest(self) -> dict:
        return {"name": NAME, "version": self.version, "previous_version": self.previous_version,
                "rows": len(self.table), "films": sorted(self.table["film_id"].unique().tolist()),
                "splits": split_of_films(self.table), "skipped_films": self.skipped_films,
                "created": time.time()}


# -- reading versions ----------------------------------------------------------------------------------------------
def latest_version(home: Path) -> str | None:
    latest = datasets_dir(home, NAME) / "LATEST"
    return latest.read_text().strip() or None if latest.exists() else None


def version_path(home: Path, version: str) -> Path:
    return datasets_dir(home, NAME) / version / f"{NAME}.parquet"


def load_version(home: Path, version: str | None = None) -> pd.DataFrame:
    version = version or latest_version(home)
    if version is None:
        raise DatasetError(f"{datasets_dir(home, NAME)}: no dataset version built yet")
    return pd.read_parquet(version_path(home, version))


def split_of_films(table: pd.DataFrame) -> dict[str, str]:
    return {str(f): str(s) for f, s in table.groupby("film_id")["split"].first().items()}


# -- building ------------------------------------------------------------------------------------------------------
def _film_rows(home: Path, film_id: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The film's shots joined with its clips and motion, its automatic labels, and its source path."""
    paths = FilmPaths(home, film_id)
    for needed in (paths.record, paths.shots, paths.clips, paths.labels, paths.labelling):
        if not needed.exists():
            raise FileNotFoundError(f"{needed.name} missing")
    record = json.loads(paths.record.read_text())
    shots = pd.read_parquet(paths.shots)
    clips = pd.read_parquet(paths.clips)[["shot_id", "frames", "clip_path", "thumbnail_paths"]]
    motion = pd.DataFrame([{"shot_id": s["shot_id"], **{k: s["motion"][k] for k in ("pan", "tilt", "zoom", "roll")}}
                           for s in json.loads(paths.labelling.read_text())["shots"]])
    rows = shots[["shot_id", "film_id", "index", "start_s", "end_s", "duration_s"]].merge(clips, on="shot_id")
    rows = rows.merge(motion, on="shot_id", how="left")
    rows["film_name"] = record.get("source_name") or Path(record["path"]).name
    rows["thumbnail_path"] = [t[len(t) // 2] if len(t) else None for t in rows.pop("thumbnail_paths")]
    return rows, pd.read_parquet(paths.labels), record["path"]


def _human_files(home: Path, settings: DatasetSettings) -> list[Path]:
    folder = human_labels_dir(home)
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".csv", ".parquet") and
                   not p.name.startswith(".")) if folder.is_dir() else []
    return [*found, *(Path(p) for p in settings.human_label_files)]


def content_version(table: pd.DataFrame) -> str:
    """A hash of the dataset's content, independent of row order and of where the home lives."""
    canon = table[VERSIONED_COLUMNS].sort_values("shot_id").reset_index(drop=True)
    for col in canon.columns:
        if canon[col].dtype.kind == "f":
            canon[col] = canon[col].round(6)
    payload = canon.to_json(orient="split", index=False, double_precision=10)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def validate(table: pd.DataFrame) -> pa.Table:
    """The table as Arrow under DATASET_SCHEMA; raises DatasetError naming the first rule a row breaks."""
    try:
        arrow = pa.Table.from_pandas(table, schema=DATASET_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
        raise DatasetError(f"schema: {str(err).splitlines()[0]}") from None
    if table["shot_id"].duplicated().any():
        raise DatasetError(f"shot_id {table['shot_id'][table['shot_id'].duplicated()].iloc[0]} appears twice")
    if not (table["end_s"] > table["start_s"]).all():
        raise DatasetError("a shot ends before it starts")
    for family in FAMILIES:
        bad = table[family].notna() & ~table[family].isin(allowed_values(family))
        if bad.any():
            raise DatasetError(f"{family}: {table[family][bad].iloc[0]!r} is not a taxonomy value")
        conf = table[f"{family}_confidence"]
        if ((conf < 0) | (conf > 1)).any():
            raise DatasetError(f"{family}_confidence outside [0, 1]")
    if not table["split"].isin(SPLITS).all():
        raise DatasetError("a split that is not train, val or test")
    leaked = table.groupby("film_id")["split"].nunique()
    if (leaked > 1).any():
        raise DatasetError(f"film {leaked[leaked > 1].index[0]} is in more than one split")
    return arrow


def build_dataset(home: Path, film_ids: list[str], settings: DatasetSettings = DatasetSettings()) -> DatasetBuild:
    """Build (or find) the dataset version for these films; films without labels are skipped and named."""
    home = Path(home)
    films, auto, trusted, skipped, names = [], [], [], {}, {}
    for film_id in sorted(set(film_ids)):
        try:
            rows, labels, source = _film_rows(home, film_id)
        except (FileNotFoundError, KeyError, ValueError) as err:
            skipped[film_id] = str(err).splitlines()[0] if str(err) else type(err).__name__
            continue
        films.append(rows)
        auto.append(labels)
        names[film_id] = [rows["film_name"].iloc[0], Path(source).name]
        truth = truth_file_for(source) if settings.use_reel_truth else None
        if truth is not None:
            trusted.append(reel_truth_labels(truth, rows))
    if not films:
        raise DatasetError(f"no labelled films to build {NAME} from"
                           + (f" ({len(skipped)} skipped: {next(iter(skipped.values()))})" if skipped else ""))
    shots = pd.concat(films, ignore_index=True)
    unmatched = 0
    for path in _human_files(home, settings):
        human, missed = resolve_human_labels(read_human_labels(path), shots, names)
        trusted.append(human)
        unmatched += missed
    auto_labels = pd.concat(auto, ignore_index=True)
    trusted_labels = pd.concat(trusted, ignore_index=True) if trusted else pd.DataFrame(columns=LABEL_COLUMNS)
    labels = wide(resolve(pd.concat([auto_labels, trusted_labels], ignore_index=True)))
    table = shots.merge(labels, on="shot_id", how="left")
    for family in FAMILIES:  # a family no source labelled at all
        table[f"{family}_confidence"] = table[f"{family}_confidence"].fillna(0.0)
        table[f"{family}_source"] = table[f"{family}_source"].fillna("none")
        table[family] = table[family].astype(object).where(table[family].notna(), None)
    table["caption"] = [caption(s, f, a, m, seed=settings.seed)
                        for s, f, a, m in zip(table["shot_id"], table["framing"], table["angle"], table["movement"])]
    previous = latest_version(home)
    previous_splits = split_of_films(load_version(home, previous)) if previous else None
    splits = assign_splits(sorted(table["film_id"].unique()), previous_splits, settings.seed, settings.fractions)
    table["split"] = table["film_id"].map(splits)
    table = table.sort_values(["film_id", "index"]).reset_index(drop=True)[[f.name for f in DATASET_SCHEMA]]
    arrow = validate(table)
    version = content_version(table)
    path = version_path(home, version)
    build = DatasetBuild(table, version, path, previous, not path.exists(), skipped, unmatched,
                         agreement_rows(auto_labels, trusted_labels))
    if build.created:
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(arrow, tmp)
        write_json_atomic(path.parent / "manifest.json", build.manifest())
        write_json_atomic(path.parent / "prompts.json", {p: pattern_prompts(p) for p in TAXONOMY.patterns})
    write_text_atomic(datasets_dir(home, NAME) / "LATEST", version + "\n")
    return build


# -- reports -------------------------------------------------------------------------------------------------------
def patterns() -> list[tuple[str, str]]:
    """(family, value) for every value a shot can carry, patterns first, then ``static``."""
    return [(family, v) for family in FAMILIES for v in TAXONOMY.values(family)]


def counts_table(table: pd.DataFrame) -> pd.DataFrame:
    """Shots per pattern (rows) and split (columns), with a total; unknown values counted per family."""
    rows = []
    for family, value in patterns() + [(f, None) for f in FAMILIES]:
        mask = table[family].isna() if value is None else table[family] == value
        counts = table[mask]["split"].value_counts()
        rows.append({"family": family, "pattern": value or "unknown",
                     **{s: int(counts.get(s, 0)) for s in SPLITS}, "total": int(mask.sum())})
    return pd.DataFrame(rows)


def pattern_coverage(table: pd.DataFrame, minimum: int) -> tuple[bool, list[str]]:
    """Every one of the 20 patterns has at least ``minimum`` training clips; returns (passed, the short ones)."""
    train = table[table["split"] == "train"]
    short = [f"{v} ({int((train[family] == v).sum())})" for family, v in patterns()
             if v in TAXONOMY.patterns and int((train[family] == v).sum()) < minimum]
    return not short, short


def split_leaks(table: pd.DataFrame) -> list[str]:
    per_film = table.groupby("film_id")["split"].nunique()
    return sorted(per_film[per_film > 1].index.tolist())


def label_drift(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Per family: the total-variation distance between the label distributions of two versions (0 = same
    shares, 1 = disjoint), and the value whose share moved most."""
    rows = []
    for family in FAMILIES:
        cur = current[family].fillna("unknown").value_counts(normalize=True)
        if previous is None:
            rows.append({"family": family, "tvd": 0.0, "most_changed": "", "change": 0.0})
            continue
        prev = previous[family].fillna("unknown").value_counts(normalize=True)
        values = sorted(set(cur.index) | set(prev.index))
        diff = pd.Series({v: float(cur.get(v, 0.0) - prev.get(v, 0.0)) for v in values})
        top = diff.abs().idxmax()
        rows.append({"family": family, "tvd": round(0.5 * float(diff.abs().sum()), 4), "most_changed": top,
                     "change": round(float(diff[top]), 4)})
    return pd.DataFrame(rows)


def agreement_rows(auto: pd.DataFrame, trusted: pd.DataFrame) -> pd.DataFrame:
    """Shots where an automatic label and a trusted one (reel truth or human) both exist: per shot and family,
    the trusted value and the automatic one (None when the labeller said unknown)."""
    if trusted.empty:
        return pd.DataFrame(columns=["shot_id", "family", "truth", "predicted", "truth_source"])
    best = trusted.assign(_rank=trusted["source"].map(source_rank)).sort_values("_rank", ascending=False)
    best = best.drop_duplicates(["shot_id", "family"])
    merged = best.merge(auto, on=["shot_id", "family"], suffixes=("_truth", ""))
    return pd.DataFrame({"shot_id": merged["shot_id"], "family": merged["family"],
                         "truth": merged["value_truth"],
                         "predicted": merged["value"].astype(object).where(merged["value"].notna(), None),
                         "truth_source": merged["source_truth"]})


def labeller_accuracy(agreement: pd.DataFrame) -> dict[str, float]:
    """Accuracy of each family's automatic labeller against the trusted labels (unknown counts as wrong)."""
    out = {}
    for family in FAMILIES:
        part = agreement[agreement["family"] == family]
        if len(part):
            out[family] = float(np.mean(part["predicted"].fillna("") == part["truth"]))
    return out

"""Label rows and their sources: automatic labels, the reel's ground truth and human labels, merged by precedence.

A label is one value of one family (framing, angle, movement) for one shot, with its ``confidence`` in [0, 1] and
its ``source``:

- ``auto:<labeller>@<version>``  an automatic labeller (``auto:motion@1``, ``auto:framing@1``, ``auto:angle@1``);
- ``reel-truth``                 the ground truth the built-in reel writes beside each film (``<film>.truth.json``);
- ``human:<file>``               a row of a human label file (CSV or Parquet);
- ``model:<name>@<version>``     a trained model (later: CameraCLIP).

``value`` is ``None`` when the source does not know (an unsure labeller says so rather than guessing).
Precedence when several sources label the same shot and family: human > reel-truth > model > auto.

Human label files. One row per label target, either by ``shot_id`` or by ``film`` (a film id, or the film's file
name or stem) with ``start_s`` and ``end_s`` (seconds in the film); then any of the columns ``framing``, ``angle``,
``movement`` (an empty cell leaves that family to the other sources) and an optional ``confidence`` (default 1).
A time range labels every shot it covers for at least half of the shot's duration. Values must be taxonomy values
(``static`` for movement too); a bad value or column is an error naming the file, the row and the reason.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from cinepipe.media import MediaError
from cinepipe.taxonomy import TAXONOMY

FAMILIES = ("framing", "angle", "movement")
REEL_TRUTH = "reel-truth"
LABEL_COLUMNS = ["shot_id", "family", "value", "confidence", "source"]


def source_rank(source: str) -> int:
    """Higher wins: human > reel-truth > model > auto."""
    if source.startswith("human:"):
        return 3
    if source == REEL_TRUTH:
        return 2
    if source.startswith("model:"):
        return 1
    return 0


def allowed_values(family: str) -> set[str]:
    return set(TAXONOMY.values(family))


class LabelFileError(MediaError):
    """A human label file that cannot be used: ``<file>: <reason>`` (row numbers count the header as row 1)."""


# -- matching time ranges to shots -------------------------------------------------------------------------------
def shots_covered(shots: pd.DataFrame, start_s: float, end_s: float, min_fraction: float = 0.5) -> list[int]:
    """Row positions of the shots that [start_s, end_s) covers for at least ``min_fraction`` of their duration."""
    out = []
    for pos, (a, b) in enumerate(zip(shots["start_s"], shots["end_s"])):
        overlap = min(b, end_s) - max(a, start_s)
        if b > a and overlap >= min_fraction * (b - a) - 1e-6:
            out.append(pos)
    return out


# -- the reel's ground truth -------------------------------------------------------------------------------------
def truth_file_for(source_path: str | os.PathLike) -> Path | None:
    """The reel truth beside a film (``reel_00.mp4`` -> ``reel_00.truth.json``), if there is one."""
    path = Path(source_path)
    candidate = path.with_suffix(".truth.json")
    return candidate if candidate.is_file() else None


def reel_truth_labels(truth_path: str | os.PathLike, shots: pd.DataFrame) -> pd.DataFrame:
    """Labels from a reel truth file for the detected ``shots`` (columns shot_id, start_s, end_s), matched by time."""
    truth = json.loads(Path(truth_path).read_text())
    rows = []
    for t in truth.get("shots", []):
        for pos in shots_covered(shots, float(t["start_s"]), float(t["end_s"])):
            for family in FAMILIES:
                value = t.get(family)
                if value in allowed_values(family):
                    rows.append((shots["shot_id"].iloc[pos], family, value, 1.0, REEL_TRUTH))
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


# -- human label files -------------------------------------------------------------------------------------------
def read_human_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a human label file (CSV or Parquet); raises LabelFileError with a one-line reason."""
    path = str(path)
    name = os.path.basename(path)
    try:
        if path.lower().endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise LabelFileError(path, "no such file") from None
    except Exception as err:  # noqa: BLE001 - any parse error becomes the file's one-line reason
        raise LabelFileError(path, f"not a readable CSV or Parquet label file ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else ''})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    families = [f for f in FAMILIES if f in df.columns]
    if not families:
        raise LabelFileError(path, f"no label column (expected any of {', '.join(FAMILIES)})")
    by_shot = "shot_id" in df.columns
    if not by_shot and not {"film", "start_s", "end_s"} <= set(df.columns):
        raise LabelFileError(path, "needs a shot_id column, or film, start_s and end_s columns")
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        where = f"row {i}"
        target = {}
        if by_shot and _text(rec.get("shot_id")):
            target["shot_id"] = _text(rec["shot_id"])
        else:
            film = _text(rec.get("film"))
            try:
                a, b = float(rec.get("start_s")), float(rec.get("end_s"))
            except (TypeError, ValueError):
                raise LabelFileError(path, f"{where}: start_s/end_s are not numbers") from None
            if not film or not (math.isfinite(a) and math.isfinite(b)) or b <= a:
                raise LabelFileError(path, f"{where}: needs a film and a time range with end_s > start_s")
            target.update(film=film, start_s=a, end_s=b)
        confidence = 1.0
        if _text(rec.get("confidence")):
            try:
                confidence = float(rec["confidence"])
            except ValueError:
                raise LabelFileError(path, f"{where}: confidence {rec['confidence']!r} is not a number") from None
            if not 0.0 <= confidence <= 1.0:
                raise LabelFileError(path, f"{where}: confidence {confidence} is outside [0, 1]")
        for family in families:
            value = _text(rec.get(family))
            if not value:
                continue
            value = value.lower().replace("-", "_").replace(" ", "_")
            if value not in allowed_values(family):
                raise LabelFileError(path, f"{where}: {value!r} is not a {family} value "
                                           f"({', '.join(sorted(allowed_values(family)))})")
            rows.append({**target, "family": family, "value": value, "confidence": confidence,
                         "source": f"human:{name}"})
    return pd.DataFrame(rows, columns=["shot_id", "film", "start_s", "end_s", "family", "value", "confidence",
                                       "source"])


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def resolve_human_labels(human: pd.DataFrame, shots: pd.DataFrame, film_names: dict[str, Iterable[str]]
                         ) -> tuple[pd.DataFrame, int]:
    """Human rows -> label rows for the given ``shots`` (columns shot_id, film_id, start_s, end_s).

    ``film_names`` maps each film id to the names a label file may use for it (file name, stem). Returns the label
    rows and how many human rows matched no shot (for a report; they may name films not ingested yet)."""
    alias = {}
    for film_id, names in film_names.items():
        alias[film_id] = film_id
        for n in names:
            alias[n] = film_id
            alias[Path(n).stem] = film_id
    known_ids = set(shots["shot_id"])
    rows, unmatched = [], 0
    for rec in human.to_dict("records"):
        label = (rec["family"], rec["value"], rec["confidence"], rec["source"])
        if _text(rec.get("shot_id")):
            if rec["shot_id"] in known_ids:
                rows.append((rec["shot_id"], *label))
            else:
                unmatched += 1
            continue
        film_id = alias.get(rec["film"])
        film_shots = shots[shots["film_id"] == film_id] if film_id else shots.iloc[0:0]
        hits = shots_covered(film_shots, rec["start_s"], rec["end_s"])
        unmatched += not hits
        rows += [(film_shots["shot_id"].iloc[pos], *label) for pos in hits]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS), unmatched


# -- merging -----------------------------------------------------------------------------------------------------
def resolve(labels: pd.DataFrame) -> pd.DataFrame:
    """One label per (shot_id, family): the highest-precedence source that knows a value; an unknown (None)
    from a higher source does not hide a known value from a lower one. Returns columns LABEL_COLUMNS."""
    if labels.empty:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    df = labels.copy()
    df["_known"] = df["value"].notna()
    df["_rank"] = df["source"].map(source_rank)
    df = df.sort_values(["shot_id", "family", "_known", "_rank", "confidence"], ascending=[True, True, False,
                                                                                         False, False])
    out = df.drop_duplicates(["shot_id", "family"])[LABEL_COLUMNS].reset_index(drop=True)
    out["value"] = out["value"].astype(object).where(out["value"].notna(), None)  # unknown is None, not NaN
    return out


def wide(labels: pd.DataFrame) -> pd.DataFrame:
    """Resolved long labels -> one row per shot_id with ``<family>``, ``<family>_confidence``, ``<family>_source``."""
    out = None
    for family in FAMILIES:
        part = labels[labels["family"] == family].set_index("shot_id")[["value", "confidence", "source"]]
        part.columns = [family, f"{family}_confidence", f"{family}_source"]
        out = part if out is None else out.join(part, how="outer")
    return out.reset_index() if out is not None else pd.DataFrame(columns=["shot_id"])

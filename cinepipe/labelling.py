"""Label every shot of a film in one decode of its proxy: camera movement, framing and angle.

The proxy (long side 480 px) is decoded once, as the decoder's own planes (I420: no colour conversion). Every
frame's luma goes to the motion estimator (which tracks corners through them); a few frames spread over the shot
are turned into colour pictures, kept and handed to the framing and angle labellers. So labelling costs one decode
of the proxy plus the analysis: nothing is decoded twice, and only the sample frames are converted to colour.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa

from cinepipe import motion as motion_estimator
from cinepipe.angle import LABELLER as ANGLE_LABELLER
from cinepipe.angle import label_angle, with_face_view
from cinepipe.framing import LABELLER as FRAMING_LABELLER
from cinepipe.framing import label_framing, torch_threads
from cinepipe.home import FilmPaths
from cinepipe.labels import LABEL_COLUMNS
from cinepipe.media import ProxyInfo, i420_bgr, i420_luma, iter_frames, write_json_atomic
from cinepipe.motion import MotionSettings
from cinepipe.shots import shot_id

MOTION_LABELLER = f"auto:motion@{motion_estimator.VERSION}"


@dataclass(frozen=True)
class LabellingSettings:
    sample_frames: int = 5  # frames per shot handed to the framing and angle labellers
    window_s: float | None = 1.0  # motion windows reported per shot (the label is the whole-shot summary)
    fade_trim_s: float = 0.5  # frames this close to a fade are not analysed (a fading picture is not motion)
    # threads for the framing and angle labellers, which run while the next shots are decoded and tracked
    still_workers: int = 2
    # torch's intra-op threads while labelling (the face detector): the pass runs its own parallelism (the decoder,
    # motion on this thread, stills on the workers), and a second torch thread only oversubscribes the cores
    torch_threads: int = 1
    motion: MotionSettings = MotionSettings()


def _sampling(frames: Iterator, length: int, count: int, kept: list) -> Iterator:
    """Pass the luma of I420 ``frames`` through (video range), keeping ``count`` of them, spread evenly over
    ``length``, as colour (BGR) pictures."""
    wanted = {min(length - 1, int((k + 0.5) * length / count)) for k in range(count)} if length > 0 else set()
    for i, frame in enumerate(frames):
        if i in wanted:
            kept.append(i420_bgr(frame))  # a new array: the decoder's buffers are read-only and reused
        yield i420_luma(frame)


def _skip(stream: Iterator, count: int) -> None:
    for _ in itertools.islice(stream, max(0, count)):
        pass


def _entry(label) -> dict:
    return {"value": label.value, "confidence": round(float(label.confidence), 4), "source": label.source}


def still_labels(frames: list) -> tuple:
    """Framing and angle of a shot from its sample frames. The angle comes first: a dutch angle's measured roll
    levels the frames for the framing labeller's upright face and people detectors; then the face framing found
    revises the angle (a face seen from above: a high angle, see :func:`cinepipe.angle.with_face_view`)."""
    angle = label_angle(frames)
    framing = label_framing(frames, roll_deg=levelling_roll(angle))
    return framing, with_face_view(angle, framing.details.get("nose_ratio"))


def levelling_roll(angle) -> float | None:
    """The roll (degrees) the framing labeller levels the frames by: the measured roll of a dutch angle, else None
    (an overhead shot's "roll" is only the turn of lines on the ground)."""
    return angle.details.get("roll_deg") if angle.value == "dutch_angle" else None


def label_shots(proxy: ProxyInfo, shots: list[dict], film_id: str,
                settings: LabellingSettings = LabellingSettings()) -> list[dict]:
    """Per shot (rows with index, start_s, end_s, start_frame, end_frame in proxy frames, end exclusive):
    ``{"index", "shot_id", "start_s", "end_s", "labels": {family: {value, confidence, source}}, "motion",
    "windows", "details"}``. Shots must tile the proxy in order (as the shot splitter writes them).

    A shot's framing and angle run on a worker thread (``still_workers`` of them) while the next shots' frames are
    tracked for motion (OpenCV and torch release the GIL); on two cores the pass is CPU-bound."""
    # I420 needs even sizes (a proxy has them; an odd one loses a row or column, which no labeller measures)
    width, height = max(2, proxy.width // 2 * 2), max(2, proxy.height // 2 * 2)
    stream = iter_frames(proxy.path, width, height, pix_fmt="yuv420p")
    moving: list[tuple[dict, tuple, Future]] = []  # per shot: the row, its motion, its framing and angle
    cursor = 0
    ordered = sorted(shots, key=lambda s: s["start_frame"])
    trim = int(round(settings.fade_trim_s * proxy.fps))
    with torch_threads(settings.torch_threads), \
            ThreadPoolExecutor(max_workers=max(1, settings.still_workers), thread_name_prefix="still-labels") as still:
        try:
            for i, shot in enumerate(ordered):
                start, end = int(shot["start_frame"]), int(shot["end_frame"])
                # leave out the ramps of fades at either end, if enough of the shot is left
                a = trim if shot.get("transition_in") == "fade" else 0
                b = trim if i + 1 < len(ordered) and ordered[i + 1].get("transition_in") == "fade" else 0
                if end - start - a - b < max(6, (end - start) // 3):
                    a = b = 0
                _skip(stream, start + a - cursor)  # frames no shot owns (none with the splitter's shots), a fade ramp
                kept: list = []
                length = end - start - a - b
                frames = _sampling(itertools.islice(stream, length), length, settings.sample_frames, kept)
                windows, whole = motion_estimator.estimate(frames, proxy.fps, float(shot["start_s"]) + a / proxy.fps,
                                                           settings.window_s, settings.motion, video_range=True)
                _skip(stream, b)
                cursor = end
                moving.append((shot, (windows, whole), still.submit(still_labels, kept)))
        finally:
            stream.close()
        out = []
        for shot, (windows, whole), pending in moving:
            framing, angle = pending.result()
            movement = {"value": None if whole.label == "unknown" else whole.label,
                        "confidence": round(float(whole.confidence), 4), "source": MOTION_LABELLER}
            out.append({
                "index": int(shot["index"]), "shot_id": shot_id(film_id, shot["index"]),
                "start_s": float(shot["start_s"]), "end_s": float(shot["end_s"]),
                "labels": {"framing": _entry(framing), "angle": _entry(angle), "movement": movement},
                "motion": whole.to_dict(), "windows": [w.to_dict() for w in windows],
                "details": {"framing": framing.details, "angle": angle.details},
            })
    return out


def label_rows(labelled: list[dict]) -> pd.DataFrame:
    """The automatic labels of ``label_shots`` as long rows (shot_id, family, value, confidence, source)."""
    rows = [(s["shot_id"], family, entry["value"], entry["confidence"], entry["source"])
            for s in labelled for family, entry in s["labels"].items()]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


LABELLERS = {"framing": FRAMING_LABELLER, "angle": ANGLE_LABELLER, "movement": MOTION_LABELLER}
# changes whenever a labeller's version does: Dagster marks the labels stale
CODE_VERSION = "|".join(f"{family}={name}" for family, name in sorted(LABELLERS.items()))


LABEL_SCHEMA = pa.schema([
    pa.field("shot_id", pa.string(), nullable=False),
    pa.field("family", pa.string(), nullable=False),
    pa.field("value", pa.string(), nullable=True),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])


def label_film(home: Path, film_id: str, settings: LabellingSettings = LabellingSettings()) -> list[dict]:
    """Label a film's shots from its proxy; writes ``labels.parquet`` (the automatic labels, long) and
    ``labelling.json`` (everything, with motion windows and the labellers' measurements), both atomically."""
    from cinepipe.ingest import load_proxy, load_shots, write_parquet_atomic

    paths = FilmPaths(home, film_id)
    shots = load_shots(home, film_id).to_dict("records")
    labelled = label_shots(load_proxy(home, film_id), shots, film_id, settings)
    write_parquet_atomic(label_rows(labelled), paths.labels, LABEL_SCHEMA)
    write_json_atomic(paths.labelling, {"film_id": film_id, "labellers": LABELLERS, "shots": labelled})
    return labelled

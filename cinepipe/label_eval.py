"""Evaluating automatic labellers against ground truth: accuracy and confusion matrices, and the reel's sampling.

``accuracy`` and ``confusion`` count a ``None`` prediction (the labeller abstained) as wrong; the confusion matrix
has the truth in rows and the prediction in columns, with an extra ``None`` column for abstentions.
``reel_shot_frames`` decodes the built-in reel's shots like the pipeline's proxy does (long side 480 px) and
returns a few sample frames per shot, away from fades, with the truth record of each shot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

NONE_COLUMN = "None"


def accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Fraction of predictions equal to the truth (``None`` is wrong); nan for no items."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    if not truth:
        return float("nan")
    return sum(t == p for t, p in zip(truth, predicted)) / len(truth)


def confusion(truth: Sequence[str], predicted: Sequence[str | None], values: Sequence[str]) -> pd.DataFrame:
    """Counts, truth in rows (``values`` order), prediction in columns (``values`` then ``None``)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    columns = list(values) + [NONE_COLUMN]
    table = pd.DataFrame(0, index=list(values), columns=columns, dtype=int)
    table.index.name, table.columns.name = "truth", "predicted"
    for t, p in zip(truth, predicted):
        column = NONE_COLUMN if p is None else p
        if t not in table.index or column not in table.columns:
            raise ValueError(f"value not in the list: truth {t!r}, predicted {p!r}")
        table.loc[t, column] += 1
    return table


def sample_indices(start: int, end: int, count: int, trim_start: int = 0, trim_end: int = 0) -> list[int]:
    """``count`` frame indices spread over ``[start + trim_start, end - trim_end)`` (the whole span if the trims
    leave nothing), avoiding the very first and last frames."""
    a, b = start + trim_start, end - trim_end
    if b - a < 3:
        a, b = start, end
    lo, hi = a + min(2, (b - a - 1) // 2), b - 1 - min(2, (b - a - 1) // 2)
    return sorted({round(x) for x in np.linspace(lo, hi, count)})


def reel_shot_frames(video: str | Path, count: int = 5, width: int = 480, fade_trim_s: float = 0.6
                     ) -> tuple[dict, list[list[np.ndarray]]]:
    """The truth of a reel film (``<name>.truth.json`` next to the video) and ``count`` BGR frames per shot,
    scaled to ``width`` (the proxy's long side), skipping ``fade_trim_s`` at shot ends next to a fade."""
    video = Path(video)
    truth = json.loads(video.with_suffix("").with_suffix(".truth.json").read_text()) \
        if video.suffix == ".mp4" else json.loads(video.read_text())
    fps, shots = float(truth["fps"]), truth["shots"]
    trim = round(fade_trim_s * fps)
    wanted: dict[int, list[int]] = {}
    for i, shot in enumerate(shots):
        fade_in = shot["transition_in"] == "fade"
        fade_out = i + 1 < len(shots) and shots[i + 1]["transition_in"] == "fade"
        for k in sample_indices(shot["start_frame"], shot["end_frame"], count, trim * fade_in, trim * fade_out):
            wanted.setdefault(k, []).append(i)
    frames: list[list[np.ndarray]] = [[] for _ in shots]
    cap = cv2.VideoCapture(str(video))
    try:
        index, last = 0, max(wanted) if wanted else -1
        while index <= last:
            ok = cap.grab()
            if not ok:
                break
            if index in wanted:
                _, frame = cap.retrieve()
                height = round(frame.shape[0] * width / frame.shape[1] / 2) * 2
                frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                for i in wanted[index]:
                    frames[i].append(frame)
            index += 1
    finally:
        cap.release()
    return truth, frames

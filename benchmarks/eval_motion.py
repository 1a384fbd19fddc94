"""Accuracy of the camera-movement estimator on built-in reels: confusion matrix, misses and time per shot.

Usage: ``python benchmarks/eval_motion.py REEL_DIR [REEL_DIR ...]``

Each shot of the truth (its rendered frames, so no fade ramp) is decoded at the estimator's analysis width and
labelled by :func:`cinepipe.motion.estimate` as a whole; the label is compared with the shot's ``movement``.
``unknown`` counts as wrong. Make reels with ``cinepipe reel --out DIR --seed N``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import pandas as pd

from cinepipe.label_eval import accuracy, confusion
from cinepipe.media import iter_frames
from cinepipe.motion import MotionSettings, estimate
from cinepipe.taxonomy import TAXONOMY


def film_predictions(video: Path, settings: MotionSettings) -> list[tuple[dict, object]]:
    """(truth shot, whole-shot WindowMotion) for every shot of one reel film, from one decode."""
    truth = json.loads(video.with_suffix(".truth.json").read_text())
    height = max(2, int(round(truth["height"] * settings.width / truth["width"] / 2)) * 2)
    stream = iter_frames(str(video), settings.width, height, pix_fmt="gray")
    out, cursor = [], 0
    try:
        for shot in truth["shots"]:
            start, end = shot["rendered_start_frame"], shot["rendered_end_frame"]
            for _ in itertools.islice(stream, start - cursor):
                pass
            _, whole = estimate(itertools.islice(stream, end - start), truth["fps"], settings=settings)
            out.append((shot, whole))
            cursor = end
    finally:
        stream.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reels", nargs="+", type=Path)
    args = parser.parse_args()
    settings = MotionSettings()
    truth, predicted, misses = [], [], []
    started = time.perf_counter()
    for reel in args.reels:
        for video in sorted(reel.glob("reel_*.mp4")):
            for shot, whole in film_predictions(video, settings):
                label = None if whole.label == "unknown" else whole.label
                truth.append(shot["movement"])
                predicted.append(label)
                if label != shot["movement"]:
                    misses.append(f"{reel.name}/{video.stem} shot {shot['index']:2d} ({shot['framing']}): "
                                  f"{shot['movement']} -> {label} ({whole.confidence:.2f}) pan {whole.pan:+.3f} "
                                  f"tilt {whole.tilt:+.3f} zoom {whole.zoom:+.3f} parallax {whole.parallax:.2f}")
    seconds = time.perf_counter() - started
    pd.set_option("display.width", 250)
    values = TAXONOMY.values("movement")
    print(f"movement: accuracy {accuracy(truth, predicted):.3f} on {len(truth)} shots "
          f"({1000 * seconds / max(1, len(truth)):.0f} ms per shot, decoding included)")
    print(confusion(truth, predicted, values).to_string())
    print("\nmisses:")
    print("\n".join(misses) or "none")


if __name__ == "__main__":
    main()

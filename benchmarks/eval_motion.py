"""Accuracy of the camera-movement estimator on built-in reels: confusion matrix, misses and time per shot.

Usage: ``python benchmarks/eval_motion.py REEL_DIR [REEL_DIR ...] [--set max_corners=150 ...]``

Each shot of the truth (its rendered frames, so no fade ramp) is decoded at the estimator's analysis width (the
luma planes, as the labelling pass tracks them) and labelled by :func:`cinepipe.motion.estimate` as a whole; the
label is compared with the shot's ``movement``. ``unknown`` counts as wrong. Make reels with
``cinepipe reel --out DIR --seed N``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import pandas as pd

from cinepipe.label_eval import accuracy, confusion
from cinepipe.motion import MotionSettings, estimate, luma_frames
from cinepipe.taxonomy import TAXONOMY


def film_predictions(video: Path, settings: MotionSettings) -> list[tuple[dict, object]]:
    """(truth shot, whole-shot WindowMotion) for every shot of one reel film, from one decode."""
    truth = json.loads(video.with_suffix(".truth.json").read_text())
    stream = luma_frames(video, truth["width"], truth["height"], settings.width)
    out, cursor = [], 0
    try:
        for shot in truth["shots"]:
            start, end = shot["rendered_start_frame"], shot["rendered_end_frame"]
            for _ in itertools.islice(stream, start - cursor):
                pass
            _, whole = estimate(itertools.islice(stream, end - start), truth["fps"], settings=settings,
                                video_range=True)
            out.append((shot, whole))
            cursor = end
    finally:
        stream.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reels", nargs="+", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a MotionSettings field to change, e.g. --set max_corners=150")
    args = parser.parse_args()
    settings = MotionSettings()
    for item in args.set:
        name, value = item.split("=", 1)
        settings = dataclasses.replace(settings, **{name: type(getattr(settings, name))(value)})
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

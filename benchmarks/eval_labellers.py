"""Accuracy of the framing and angle labellers on built-in reels: confusion matrices, misses and time per frame.

Usage: ``python benchmarks/eval_labellers.py REEL_DIR [REEL_DIR ...] [--frames 5]``

Each shot is sampled like the pipeline does (frames scaled to 480 px wide, ``--frames`` frames spread over the
shot, 0.6 s trimmed next to fades; see :func:`cinepipe.label_eval.reel_shot_frames`) and labelled as the pipeline
labels it: the angle first, then the framing of frames levelled by a dutch angle's measured roll, then the angle
revised by the face's view (see :func:`cinepipe.labelling.still_labels`). ``None`` counts as wrong.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from cinepipe.angle import label_angle, with_face_view
from cinepipe.framing import label_framing
from cinepipe.label_eval import accuracy, confusion, reel_shot_frames
from cinepipe.labelling import levelling_roll
from cinepipe.taxonomy import TAXONOMY

LABELLERS = ("framing", "angle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reels", nargs="+", type=Path)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    truth: dict[str, list[str]] = {f: [] for f in LABELLERS}
    predicted: dict[str, list[str | None]] = {f: [] for f in LABELLERS}
    misses: list[str] = []
    seconds = {f: 0.0 for f in LABELLERS}
    frame_count = 0
    for reel in args.reels:
        for video in sorted(reel.glob("reel_*.mp4")):
            film, frames = reel_shot_frames(video, count=args.frames)
            for shot, shot_frames in zip(film["shots"], frames):
                frame_count += len(shot_frames)
                start = time.perf_counter()
                angle = label_angle(shot_frames)
                seconds["angle"] += time.perf_counter() - start
                start = time.perf_counter()
                framing = label_framing(shot_frames, roll_deg=levelling_roll(angle))
                seconds["framing"] += time.perf_counter() - start
                labels = {"framing": framing, "angle": with_face_view(angle, framing.details.get("nose_ratio"))}
                for family, label in labels.items():
                    truth[family].append(shot[family])
                    predicted[family].append(label.value)
                    if label.value != shot[family]:
                        misses.append(f"{reel.name}/{video.stem} shot {shot['index']:2d} {family}: "
                                      f"{shot[family]} -> {label.value} ({label.confidence:.2f}) {label.details}")
    pd.set_option("display.width", 200)
    for family in LABELLERS:
        print(f"\n{family}: accuracy {accuracy(truth[family], predicted[family]):.3f} on {len(truth[family])} shots,"
              f" {1000 * seconds[family] / max(1, frame_count):.1f} ms per frame")
        print(confusion(truth[family], predicted[family], TAXONOMY.values(family)).to_string())
    print("\nmisses:")
    print("\n".join(misses) or "none")


if __name__ == "__main__":
    main()

"""Shot splitting: PySceneDetect's detectors for cuts (adaptive) and fades (threshold), merged into one shot list.

The detectors run on frames of the film's analysis proxy (constant frame rate, displayed orientation), decoded once
at PySceneDetect's usual analysis width (256 px), so the original film is never decoded again for this.

A boundary is a ``cut`` when the adaptive (content) detector fires away from any fade, and a ``fade`` when the
threshold detector sees the picture go to black and come back; a content cut found inside a fade's ramp is the
same transition and is dropped. Shots cover the film from its first video frame to its last, without gaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from scenedetect.common import FrameTimecode
from scenedetect.detectors import AdaptiveDetector, ThresholdDetector

from cinepipe.media import ProxyInfo, iter_frames

ANALYSIS_WIDTH = 256

SHOT_SCHEMA = pa.schema([
    pa.field("shot_id", pa.string(), nullable=False),
    pa.field("film_id", pa.string(), nullable=False),
    pa.field("index", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("start_frame", pa.int32(), nullable=False),  # proxy frame numbers, end exclusive
    pa.field("end_frame", pa.int32(), nullable=False),
    pa.field("transition_in", pa.string(), nullable=False),
])


@dataclass(frozen=True)
class ShotSettings:
    adaptive_threshold: float = 3.0
    min_content_val: float = 15.0
    window_width: int = 2
    fade_threshold: int = 12  # 8-bit level below which a frame counts as black
    min_shot_s: float = 0.25  # no boundary closer than this to the previous one
    fade_ramp_max_s: float = 2.0  # how far from a fade's black point its ramps may reach


@dataclass
class Boundary:
    frame: int  # first proxy frame of the new shot
    kind: str  # "cut" | "fade"


@dataclass
class ShotList:
    film_id: str
    fps: float
    start_s: float
    frames: int
    shots: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        rows = [{"shot_id": f"{self.film_id}:{s['index']}", "film_id": self.film_id, **s} for s in self.shots]
        table = pa.Table.from_pylist(rows, schema=SHOT_SCHEMA) if rows else SHOT_SCHEMA.empty_table()
        return table.to_pandas()


def _inside_ramp(luma: np.ndarray, frame: int, span: int = 2, min_step: float = 0.3) -> bool:
    """True if ``frame`` sits inside a gradual brightness ramp: luma moves strictly one way, by small steps, over the
    ``span`` frames on each side. A fade's ramp looks like that; a hard cut (even to or from black) does not."""
    a, b = frame - span, frame + span
    if a < 0 or b >= len(luma):
        return False
    steps = np.diff(luma[a:b + 1])
    scale = np.maximum(luma[a:b], luma[a + 1:b + 1])
    gradual = np.abs(steps) <= 0.35 * scale + 1.0
    rising, falling = np.all(steps >= min_step), np.all(steps <= -min_step)
    return bool((rising or falling) and np.all(gradual))


def detect_boundaries(frames, fps: float, settings: ShotSettings = ShotSettings()) -> tuple[list[Boundary], int]:
    """Run PySceneDetect's adaptive and threshold detectors over BGR frames; return merged boundaries and the
    number of frames seen."""
    min_len = max(1, int(round(settings.min_shot_s * fps)))
    adaptive = AdaptiveDetector(adaptive_threshold=settings.adaptive_threshold, min_scene_len=min_len,
                                window_width=settings.window_width, min_content_val=settings.min_content_val)
    threshold = ThresholdDetector(threshold=settings.fade_threshold, min_scene_len=min_len, fade_bias=0.0)
    cut_frames: list[int] = []
    fade_frames: list[int] = []
    luma: list[float] = []
    tc = None
    for index, frame in enumerate(frames):
        tc = FrameTimecode(index, fps=fps)
        luma.append(float(frame.mean()))
        cut_frames += [c.frame_num for c in adaptive.process_frame(tc, frame)]
        fade_frames += [c.frame_num for c in threshold.process_frame(tc, frame)]
    count = len(luma)
    if tc is None:
        return [], 0
    cut_frames += [c.frame_num for c in adaptive.post_process(tc)]
    fade_frames += [c.frame_num for c in threshold.post_process(tc)]

    luma_arr = np.asarray(luma)
    reach = int(round(settings.fade_ramp_max_s * fps))
    boundaries = [Boundary(f, "fade") for f in fade_frames if 0 < f < count]
    for f in cut_frames:
        if not 0 < f < count:
            continue
        # the content detector also fires inside a fade's ramp: that is the fade, not a second transition
        near_fade = any(abs(f - g) <= reach for g in fade_frames)
        if near_fade and _inside_ramp(luma_arr, f):
            continue
        boundaries.append(Boundary(f, "cut"))
    boundaries.sort(key=lambda b: b.frame)
    merged: list[Boundary] = []
    for b in boundaries:
        if b.frame < min_len or count - b.frame < min_len:
            continue  # would leave a shot shorter than the minimum at the film's start or end
        if merged and b.frame - merged[-1].frame < min_len:
            if b.kind == "cut" and merged[-1].kind == "fade":
                continue  # keep the fade
            merged[-1] = b if b.kind == "fade" else merged[-1]
            continue
        merged.append(b)
    return merged, count


def shots_from_boundaries(film_id: str, boundaries: list[Boundary], frames: int, fps: float,
                          start_s: float) -> ShotList:
    edges = [0] + [b.frame for b in boundaries] + [frames]
    kinds = ["start"] + [b.kind for b in boundaries]
    shots = []
    for i in range(len(edges) - 1):
        a, b = edges[i], edges[i + 1]
        if b <= a:
            continue
        shots.append({
            "index": len(shots),
            "start_s": round(start_s + a / fps, 6),
            "end_s": round(start_s + b / fps, 6),
            "duration_s": round((b - a) / fps, 6),
            "start_frame": a,
            "end_frame": b,
            "transition_in": kinds[i],
        })
    return ShotList(film_id=film_id, fps=fps, start_s=start_s, frames=frames, shots=shots)


def split_shots(film_id: str, proxy: ProxyInfo, settings: ShotSettings = ShotSettings()) -> ShotList:
    """Detect the shots of a film from its analysis proxy."""
    width = min(ANALYSIS_WIDTH, proxy.width)
    height = max(2, int(round(proxy.height * width / proxy.width / 2)) * 2)
    boundaries, count = detect_boundaries(iter_frames(proxy.path, width, height), proxy.fps, settings)
    return shots_from_boundaries(film_id, boundaries, count, proxy.fps, proxy.start_s)

"""Training clips for CameraDiff: a short window of consecutive frames at a fixed rate from each shot's clip.

Unlike CameraCLIP (frames spread over the whole clip), the diffusion model learns from ``VideoFormat.frames``
frames at ``VideoFormat.fps`` taken around the middle of the clip, so a generated video has a real frame rate and
the camera-motion estimator can measure it. Decoded once per dataset version into the shared frame cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cinepipe.clip_data import FrameCache, build_frame_cache
from cinepipe.diffusion_settings import VideoFormat
from cinepipe.media import MediaError, iter_frames


def window_positions(total: int, clip_fps: float, fmt: VideoFormat) -> list[int]:
    """Frame indices of a ``fmt.frames``-frame window at ``fmt.fps`` centred in a clip of ``total`` frames; a clip
    too short for the window holds its last frame."""
    step = max(1.0, clip_fps / fmt.fps)
    span = step * (fmt.frames - 1)
    start = max(0.0, (total - 1 - span) / 2)
    return [min(total - 1, int(round(start + k * step))) for k in range(fmt.frames)]


def decode_window(path: str, fmt: VideoFormat, total: int | None = None, clip_fps: float = 24.0) -> np.ndarray:
    """uint8 RGB [T, S, S, 3]: the clip's centred window (MediaError if it cannot be decoded)."""
    frames = [f for f in iter_frames(path, fmt.size, fmt.size, pix_fmt="rgb24")]
    if not frames:
        raise MediaError(path, "no video frame could be decoded")
    return np.stack([frames[i] for i in window_positions(len(frames), clip_fps, fmt)])


def clip_rates(table: pd.DataFrame) -> dict[str, float]:
    """Each clip's frame rate (clip_path -> frames / duration; 24 where the table cannot tell)."""
    if "frames" not in table or "duration_s" not in table:
        return {}
    return {p: (n / d if d and d > 0 else 24.0) for p, n, d in zip(table["clip_path"], table["frames"],
                                                                  table["duration_s"])}


def decode_windows(table: pd.DataFrame, fmt: VideoFormat) -> np.ndarray:
    """The windows of some dataset rows, uint8 [N, T, S, S, 3], decoded here (clips that fail are left out): for
    rows outside the shared cache, which holds only the training splits."""
    fps = clip_rates(table)
    out = []
    for path in table["clip_path"]:
        try:
            out.append(decode_window(path, fmt, None, fps.get(path, 24.0)))
        except (MediaError, OSError):
            continue
    return np.stack(out) if out else np.zeros((0, fmt.frames, fmt.size, fmt.size, 3), np.uint8)


def video_cache(table: pd.DataFrame, version: str, root: Path, fmt: VideoFormat, workers: int = 2) -> FrameCache:
    """The window cache of a dataset version (built once, memory-mapped)."""
    fps = clip_rates(table)

    def decode(path: str, total: int | None) -> np.ndarray:
        return decode_window(path, fmt, total, fps.get(path, 24.0))

    return build_frame_cache(table, version, root, fmt.frames, fmt.size, workers, decode=decode,
                             tag=f"-{fmt.fps:g}fps-window")

"""Synthetic training clips for CameraCLIP, rendered by the built-in reel's renderer with their true labels.

Why. The paper fine-tunes a CLIP pretrained on 400 million image-text pairs; the embedded default cannot download
one, so its tiny model starts from nothing and the default reel gives it 32 training clips. CameraCLIP's default
therefore also trains on clips rendered here: shots of reel films planned with a seed of their own (never the
films of the dataset; see ``SYNTHETIC_SEED``), every framing, angle and movement balanced, labelled with the truth
the renderer used. Only the frames CameraCLIP samples are rendered (``frames`` spread over each shot, the whole
picture scaled to ``size`` x ``size``, as ``cinepipe.clip_data`` samples a clip file), so 320 clips take about 35 s
on two cores (the default's 640 about 70 s), once: they are cached beside the frame cache, keyed by the reel
generator's version, the seed, the count and the sampling, and written atomically.

Measured (the default reel's 32 training clips, with and without 320 synthetic clips, the same number of clip
passes: 40 epochs against 4, flow input in both): on 80 held-out synthetic clips text->video R@5 0.33 -> 0.53;
on the reel's 8 test clips R@1 0.50 -> 0.88 in that comparison and 0.62 in the main job (each clip moves it by
0.125: a coarse figure).

Real use: set ``CameraClipSettings.synthetic_films`` to 0 to train on the dataset alone, or keep them as a
grounding in the camera's vocabulary (optical flow patterns do not depend on the scene's look).
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from cinepipe.captions import caption
from cinepipe.clip_data import sample_positions
from cinepipe.diffusion_settings import VideoFormat
from cinepipe.media import write_json_atomic, write_npy_atomic
from cinepipe.video_data import window_positions

SYNTHETIC_SEED = 1_000_003  # not a seed anyone renders a reel with by accident: these films stay out of datasets
RENDER_SIZE = (160, 90)  # 16:9 like the reel's films, then scaled to the model's square frames
REEL_FPS = 24.0  # the rate the reel's shots are timed at (``cinepipe.reel.shot_frame_count``)


@dataclass(frozen=True)
class SyntheticClips:
    frames: np.ndarray  # uint8 RGB [N, T, S, S, 3]
    rows: list[dict]  # shot_id, framing, angle, movement, caption, split ("synthetic")
    path: Path
    built: bool  # False when it was read from the cache


def _film_clips(job: tuple) -> list[tuple[dict, np.ndarray]]:
    """One film's shots: (row, frames [T, S, S, 3] RGB); with a ``window`` format, the shot's centred window at
    that format's rate, drawn at its resolution and scaled to S as CameraCLIP's scorer scales a generated video."""
    from cinepipe.reel import shot_frame_count, shot_renderer

    plan, frames, size, window = job
    out = []
    for shot in plan.shots:
        count = shot_frame_count(shot)
        render = shot_renderer(shot, count, *RENDER_SIZE)
        if window is None:
            positions = sample_positions(count, frames)
        else:
            positions = window_positions(count, REEL_FPS, replace(window, frames=frames))
        pictures = [cv2.cvtColor(_scaled(render(j), size, window), cv2.COLOR_BGR2RGB) for j in positions]
        shot_id = f"synthetic-{plan.seed}-{plan.name}-{shot.index}"
        row = {"shot_id": shot_id, "framing": shot.framing, "angle": shot.angle, "movement": shot.movement,
               "caption": caption(shot_id, shot.framing, shot.angle, shot.movement), "split": "synthetic"}
        out.append((row, np.stack(pictures)))
    return out


def _scaled(picture: np.ndarray, size: int, window: VideoFormat | None) -> np.ndarray:
    if window is None or window.size >= size:
        return cv2.resize(picture, (size, size), interpolation=cv2.INTER_AREA)
    small = cv2.resize(picture, (window.size, window.size), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def synthetic_clips(root: Path, films: int, frames: int, size: int, seed: int = SYNTHETIC_SEED,
                    workers: int = 2, window: VideoFormat | None = None) -> SyntheticClips:
    """``films`` x 8 labelled clips, rendered once into ``root`` (later calls read them back). With ``window`` (a
    generator's ``VideoFormat``; its frame count is ignored) each clip is the shot's centred ``frames``-frame window
    at ``window.fps``, drawn at ``window.size`` pixels and scaled to ``size``: the same shots as without, in the
    order and with the rows they have without, seen as a generated video is."""
    from cinepipe.reel import GENERATOR_VERSION, plan_reel

    view = "" if window is None else f"-window{window.size}px{window.fps:g}fps"
    path = Path(root) / f"synthetic-{GENERATOR_VERSION}-s{seed}-{films}films-{frames}f-{size}px{view}.npy"
    index = path.with_suffix(".json")
    if path.exists() and index.exists():
        return SyntheticClips(np.load(path, mmap_mode="r"), json.loads(index.read_text())["rows"], path, False)
    jobs = [(plan, frames, size, window) for plan in plan_reel(seed, films, 8)]
    if workers > 1 and len(jobs) > 1:
        from cinepipe.reel import single_opencv_thread  # one OpenCV thread a worker: the processes are the parallelism

        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=single_opencv_thread) as pool:
            parts = list(pool.map(_film_clips, jobs))
    else:
        parts = [_film_clips(job) for job in jobs]
    clips = [c for part in parts for c in part]
    array = np.stack([c[1] for c in clips]) if clips else np.zeros((0, frames, size, size, 3), np.uint8)
    write_npy_atomic(path, array)
    rows = [c[0] for c in clips]
    write_json_atomic(index, {"generator": GENERATOR_VERSION, "seed": seed, "films": films, "frames": frames,
                              "size": size, "window": None if window is None else asdict(window), "rows": rows})
    return SyntheticClips(np.load(path, mmap_mode="r"), rows, path, True)

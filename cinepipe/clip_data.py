"""CameraCLIP's data: a frame cache per dataset version, and batches without same-label negatives.

Frame cache. Every clip of a dataset version is decoded once: ``frames`` frames sampled evenly over the clip,
scaled (the whole picture, not a crop: framing and angle live at the edges too) to ``size`` x ``size`` RGB, stored
in one uint8 ``.npy`` array [N, T, S, S, 3] (memory-mapped when read, so a large dataset need not fit in memory)
beside an index of shot ids. The cache is keyed by (dataset version, frames, size) and written atomically, so
later epochs and later runs on the same version decode nothing. A clip that cannot be decoded is left out and
named in the index (one line: file and reason); the others are cached.

Batches. Template captions mean many clips share their labels (framing, angle, movement) and so, up to wording,
their caption. InfoNCE treats every other pair in a batch as a negative, so two clips with the same labels in one
batch would be pushed apart for describing the same thing. ``unique_label_batches`` builds batches in which every
label triple appears at most once; open_clip's ``ClipLoss`` is then exact.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cinepipe.media import MediaError, count_frames, iter_frames, write_json_atomic, write_npy_atomic


@dataclass(frozen=True)
class FrameCache:
    frames: np.ndarray  # uint8 [N, T, S, S, 3], memory-mapped
    shot_ids: list[str]
    skipped: dict[str, str]  # shot_id -> reason
    path: Path
    built: bool  # False when it was already there

    def rows(self, shot_ids: list[str]) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.shot_ids)}
        return np.array([index[s] for s in shot_ids], dtype=np.int64)


def sample_positions(count: int, frames: int) -> list[int]:
    """``frames`` indices spread evenly over a clip of ``count`` frames (repeats when the clip is shorter)."""
    if count <= 0:
        return []
    return [min(count - 1, int((k + 0.5) * count / frames)) for k in range(frames)]


def decode_clip(path: str, frames: int, size: int, total: int | None = None) -> np.ndarray:
    """``frames`` RGB frames [T, S, S, 3] sampled evenly from a clip of ``total`` frames (counted when not given);
    MediaError if it cannot be decoded. A clip shorter than announced repeats its last decoded frame."""
    total = total if total and total > 0 else count_frames(path)
    wanted = sample_positions(total, frames)
    if not wanted:
        raise MediaError(path, "no video frame could be decoded")
    picked: list[np.ndarray] = []
    last = None
    stream = iter_frames(path, size, size, pix_fmt="rgb24")
    for i, frame in enumerate(stream):
        last = frame
        while len(picked) < len(wanted) and wanted[len(picked)] == i:
            picked.append(frame.copy())
        if len(picked) == len(wanted):
            break
    stream.close()
    if last is None:
        raise MediaError(path, "no video frame could be decoded")
    picked += [last.copy()] * (len(wanted) - len(picked))
    return np.stack(picked)


def cache_path(root: Path, version: str, frames: int, size: int, tag: str = "") -> Path:
    return Path(root) / f"{version}-{frames}f-{size}px{tag}.npy"


def build_frame_cache(table: pd.DataFrame, version: str, root: Path, frames: int, size: int,
                      workers: int = 2, decode: Callable[[str, int | None], np.ndarray] | None = None,
                      tag: str = "") -> FrameCache:
    """The frame cache of a dataset version (``table`` has shot_id and clip_path), built once. ``decode(path,
    total_frames)`` gives one clip's uint8 RGB frames [T, S, S, 3] (default: ``frames`` spread over the clip);
    ``tag`` tells caches of other samplings apart."""
    path = cache_path(root, version, frames, size, tag)
    decode = decode or (lambda clip, total: decode_clip(clip, frames, size, total))
    index_path = path.with_suffix(".json")
    if path.exists() and index_path.exists():
        index = json.loads(index_path.read_text())
        return FrameCache(np.load(path, mmap_mode="r"), index["shot_ids"], index["skipped"], path, False)
    shot_ids, clips = table["shot_id"].tolist(), table["clip_path"].tolist()
    totals = table["frames"].tolist() if "frames" in table else [None] * len(clips)

    def one(i: int):
        try:
            return i, decode(clips[i], totals[i]), None
        except (MediaError, OSError) as err:
            return i, None, str(err) if isinstance(err, MediaError) else f"{clips[i]}: {err}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, range(len(clips))))
    kept = [(shot_ids[i], arr) for i, arr, _ in results if arr is not None]
    skipped = {shot_ids[i]: reason for i, _, reason in results if reason is not None}
    array = np.stack([a for _, a in kept]) if kept else np.zeros((0, frames, size, size, 3), np.uint8)
    write_npy_atomic(path, array)
    write_json_atomic(index_path, {"version": version, "frames": frames, "size": size,
                                   "shot_ids": [s for s, _ in kept], "skipped": skipped})
    return FrameCache(np.load(path, mmap_mode="r"), [s for s, _ in kept], skipped, path, True)


def label_key(row) -> tuple:
    return (row["framing"], row["angle"], row["movement"])


def unique_label_batches(keys: list[tuple], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle positions 0..n-1 into batches in which no label key repeats (greedy: each position goes to the
    first open batch without its key). Every position is used at most once; batches may be smaller than
    ``batch_size``, and a batch of one (no negatives to learn from) is dropped unless it is all there is."""
    order = list(range(len(keys)))
    random.Random(seed).shuffle(order)
    batches: list[list[int]] = []
    seen: list[set] = []
    for pos in order:
        for batch, keys_in in zip(batches, seen):
            if len(batch) < batch_size and keys[pos] not in keys_in:
                batch.append(pos)
                keys_in.add(keys[pos])
                break
        else:
            batches.append([pos])
            seen.append({keys[pos]})
    return [b for b in batches if len(b) >= 2] or batches

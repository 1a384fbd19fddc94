"""Shot clips and thumbnails, cut by ffmpeg from a film's analysis proxy in one pass.

One ffmpeg process decodes the proxy once: its first output is re-encoded with a key frame forced on every shot
boundary and split there by the segment muxer (frame-exact clips), its second output keeps a few frames per shot as
JPEG thumbnails. Everything is written into a temporary folder that replaces the film's clip folder only when
complete, so a crash never leaves a half-written set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cinepipe.ffmpeg_tools import ffmpeg_exe
from cinepipe.media import MediaError, ProxyInfo, count_frames
from cinepipe.shots import shot_id

THUMB_POSITIONS = (0.1, 0.5, 0.9)  # where in each shot the thumbnails are taken


def _thumb_frames(start: int, end: int) -> list[int]:
    last = max(start, end - 1)
    return sorted({min(last, start + int(round(p * (end - start - 1)))) for p in THUMB_POSITIONS})


def cut_clips(proxy: ProxyInfo, shots: list[dict], film_id: str, out_dir: str | os.PathLike,
              crf: int = 20) -> list[dict]:
    """Write ``<out_dir>/<index>.mp4`` and ``<out_dir>/<index>_<k>.jpg`` for every shot; return one row per shot.

    ``shots`` rows carry ``index``, ``start_frame`` and ``end_frame`` (proxy frames, end exclusive).
    """
    out_dir = Path(out_dir)
    if not shots:
        raise ValueError(f"{proxy.path}: no shots to cut")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(work, 0o755)
    try:
        splits = [s["start_frame"] for s in shots[1:]]
        thumbs = [(s["index"], f) for s in shots for f in _thumb_frames(s["start_frame"], s["end_frame"])]
        select = "+".join(f"eq(n\\,{f})" for _, f in thumbs)
        keyframes = "+".join(f"eq(n,{f})" for f in splits) or "0"
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", proxy.path,
               "-filter_complex", f"[0:v]split=2[c][t];[t]select='{select}'[th]",
               "-map", "[c]", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
               "-force_key_frames", f"expr:{keyframes}", "-f", "segment", "-reset_timestamps", "1",
               "-segment_format_options", "movflags=+faststart"]
        if splits:
            cmd += ["-segment_frames", ",".join(map(str, splits))]
        cmd += [str(work / "clip_%05d.mp4"),
                "-map", "[th]", "-fps_mode", "vfr", "-q:v", "3", str(work / "thumb_%05d.jpg")]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["ffmpeg failed"]
            raise MediaError(proxy.path, f"cutting clips failed: {tail[0]}")
        clip_files = sorted(work.glob("clip_*.mp4"))
        thumb_files = sorted(work.glob("thumb_*.jpg"))
        if len(clip_files) != len(shots) or len(thumb_files) != len(thumbs):
            raise MediaError(proxy.path, f"cutting clips produced {len(clip_files)} clips and {len(thumb_files)} "
                                         f"thumbnails for {len(shots)} shots and {len(thumbs)} thumbnails")
        rows = []
        thumb_iter = iter(zip(thumbs, thumb_files))
        by_shot: dict[int, list[str]] = {}
        for (index, _frame), path in thumb_iter:
            k = len(by_shot.setdefault(index, []))
            final = work / f"{index:04d}_{k}.jpg"
            path.rename(final)
            by_shot[index].append(final.name)
        for shot, clip in zip(shots, clip_files):
            final = work / f"{shot['index']:04d}.mp4"
            clip.rename(final)
            frames = count_frames(final)
            expected = shot["end_frame"] - shot["start_frame"]
            if frames != expected:
                raise MediaError(proxy.path, f"clip {final.name} has {frames} frames, expected {expected}")
            rows.append({"shot_id": shot_id(film_id, shot["index"]), "film_id": film_id, "index": shot["index"],
                         "clip": final.name, "frames": frames, "thumbnails": by_shot.get(shot["index"], [])})
        _replace_dir(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for row in rows:
        row["clip_path"] = str(out_dir / row.pop("clip"))
        row["thumbnail_paths"] = [str(out_dir / t) for t in row.pop("thumbnails")]
    return rows


def _replace_dir(new: Path, final: Path) -> None:
    """Swap ``new`` in for ``final``: the old folder is moved aside first and deleted only after the rename."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""Small media files made with ffmpeg for the tests: odd-but-valid films and every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cinepipe.ffmpeg_tools import ffmpeg_exe

# A short film with two hard cuts: 3 colour-and-pattern scenes of 1 s each at 25 fps.
_SCENES = ["testsrc2=size=320x240:rate=25", "mandelbrot=size=320x240:rate=25", "smptebars=size=320x240:rate=25"]


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *args], check=True, capture_output=True)


def make_three_shot_film(path: Path, seconds: float = 1.0, extra_output: tuple[str, ...] = ()) -> Path:
    inputs: list[str] = []
    for src in _SCENES:
        inputs += ["-f", "lavfi", "-t", str(seconds), "-i", src]
    _ff(*inputs, "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
        "-c:v", "libx264", "-preset", "ultrafast", *extra_output, str(path))
    return path


def make_odd_films(folder: Path) -> dict[str, Path]:
    """Valid films that need care: rotated, non-square pixels, variable frame rate, Matroska, delayed start."""
    folder.mkdir(parents=True, exist_ok=True)
    base = make_three_shot_film(folder / "base.mp4")
    out = {"base": base}
    out["rotated"] = folder / "rotated.mp4"
    try:  # ffmpeg >= 6
        _ff("-display_rotation", "90", "-i", str(base), "-c", "copy", str(out["rotated"]))
    except subprocess.CalledProcessError:  # ffmpeg 5: the legacy rotate tag becomes a display matrix
        _ff("-i", str(base), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out["rotated"]))
    out["anamorphic"] = folder / "anamorphic.mp4"
    _ff("-i", str(base), "-vf", "setsar=2/1", "-c:v", "libx264", "-preset", "ultrafast", str(out["anamorphic"]))
    out["vfr"] = folder / "vfr.mkv"
    # drop every other frame in the middle scene only: 25 fps, then 12.5 fps, then 25 fps again
    _ff("-i", str(base), "-vf", "select='not(between(t,1,2))+not(mod(n,2))'", "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "ultrafast", str(out["vfr"]))
    out["matroska"] = folder / "film.mkv"
    _ff("-i", str(base), "-c", "copy", str(out["matroska"]))
    out["delayed"] = folder / "delayed.mp4"
    _ff("-f", "lavfi", "-t", "3.5", "-i", "sine=frequency=440:sample_rate=44100", "-itsoffset", "0.5",
        "-i", str(base), "-map", "1:v", "-map", "0:a", "-c:v", "copy", "-c:a", "aac", str(out["delayed"]))
    return out


def make_bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """Files that are not readable videos, one of each kind."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["text"] = folder / "notes.mp4"
    out["text"].write_text("this is a text file, not a film\n" * 20)
    out["audio_only"] = folder / "audio_only.m4a"
    _ff("-f", "lavfi", "-t", "2", "-i", "sine=frequency=440", "-c:a", "aac", str(out["audio_only"]))
    data = good.read_bytes()
    out["truncated"] = folder / "truncated.mp4"  # moov atom at the end: cut before it
    out["truncated"].write_bytes(data[: len(data) // 2])
    faststart = folder / ".faststart.mp4"
    _ff("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(faststart))
    fs = faststart.read_bytes()
    out["truncated_faststart"] = folder / "truncated_faststart.mp4"  # index complete, media data cut short
    out["truncated_faststart"].write_bytes(fs[: int(len(fs) * 0.4)])
    faststart.unlink()
    out["unsupported"] = folder / "unsupported.mp4"  # video stream with an unknown codec tag
    out["unsupported"].write_bytes(data.replace(b"avc1", b"zzzz").replace(b"avcC", b"zzzC"))
    return out


def copy_into(folder: Path, files: dict[str, Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        shutil.copy2(path, folder / path.name)


def render_job_dying_once(job: tuple) -> str:
    """A reel render job (``cinepipe.reel._render_job``) whose process dies half-way through the first film it
    is given in a pool worker (threads 1), leaving that film's temporary file behind, as a killed worker would."""
    import os

    from cinepipe.media import atomic_path
    from cinepipe.reel import _render_job

    video = Path(job[1])
    if job[-1] == 1 and video.name == "reel_00.mp4":
        with atomic_path(video) as tmp:
            tmp.write_bytes(b"half a film")
            os._exit(3)
    return _render_job(job)

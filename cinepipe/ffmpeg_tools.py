"""Where the ffmpeg and ffprobe binaries are.

A system ffmpeg (on PATH, or named by ``CINEPIPE_FFMPEG`` / ``CINEPIPE_FFPROBE``) is preferred; otherwise the ffmpeg
binary shipped inside the ``imageio-ffmpeg`` wheel is used, so a bare ``pip install`` is enough. That wheel ships no
ffprobe: callers that need one must handle ``ffprobe_exe() is None`` (``cinepipe.media`` falls back to parsing
``ffmpeg -i``).
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache


class FFmpegNotFound(RuntimeError):
    pass


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    env = os.environ.get("CINEPIPE_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise FFmpegNotFound("no ffmpeg: install ffmpeg (apt-get install ffmpeg) or pip install imageio-ffmpeg") \
            from exc


@lru_cache(maxsize=1)
def ffprobe_exe() -> str | None:
    env = os.environ.get("CINEPIPE_FFPROBE")
    if env:
        return env if env.lower() != "none" else None
    found = shutil.which("ffprobe")
    if found:
        return found
    sibling = os.path.join(os.path.dirname(ffmpeg_exe()), "ffprobe")
    return sibling if os.path.exists(sibling) else None

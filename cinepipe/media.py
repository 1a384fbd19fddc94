"""Media I/O: probing films, content-hash ids, the normalised analysis proxy, frame decoding, atomic writes.

Conventions:
- Film time is seconds on the file's presentation timeline, counted from the container's start time (the origin
  ``ffmpeg -ss`` uses). A video stream that an edit list delays starts at ``video_start_s`` > 0.
- ``width``/``height`` are the *displayed* size: after the display-matrix rotation and the sample aspect ratio.
- ``rotation`` is the clockwise rotation, in degrees, to apply to the coded picture for display (0, 90, 180, 270).
- Every unreadable input raises :class:`MediaError`, whose text is one line: ``<file>: <reason>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cinepipe.ffmpeg_tools import ffmpeg_exe, ffprobe_exe

# Containers that hold a single still picture: a file in one of these is not a film.
_IMAGE_FORMATS = re.compile(r"(^|,)(image2|png_pipe|jpeg_pipe|bmp_pipe|webp_pipe|gif|tiff_pipe|svg_pipe)(,|$)")


_UMASK = os.umask(0)
os.umask(_UMASK)


class MediaError(Exception):
    """A file that is not a readable video. ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class ProbeResult:
    film_id: str
    path: str
    size_bytes: int
    container: str
    codec: str
    duration_s: float
    fps: float  # average frame rate of the video stream (frames / duration)
    nominal_fps: str  # "num/den": the stream's base rate (for VFR: its most common frame interval); the proxy's rate
    width: int  # displayed width (after rotation and sample-aspect correction)
    height: int  # displayed height
    coded_width: int
    coded_height: int
    sample_aspect_ratio: str  # "1:1" for square pixels
    rotation: int  # clockwise degrees applied for display
    variable_frame_rate: bool
    video_start_s: float  # presentation time of the first video frame, from the container's start
    frame_count_estimate: int
    has_audio: bool

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Ids and atomic writes


def film_id_for(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The film's id: a content hash, so a renamed file is the same film and a changed file is a new one."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary name keeps the final extension (ffmpeg picks its muxer from it) and starts with a dot, so a
    crash leaves no file under the final name and nothing that looks like a finished output.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=(suffix or final.suffix) + ".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # ffmpeg chooses the muxer from the extension, so the temp name must end with the real one.
    work = tmp_path.with_name(tmp_path.name[: -len(".part")])
    tmp_path.rename(work)
    os.chmod(work, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield work
        os.replace(work, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            work.unlink()
        raise


def partial_files(final: str | os.PathLike) -> list[Path]:
    """The temporary files ``atomic_path`` left beside ``final`` when its process died inside the block."""
    final = Path(final)
    return sorted(final.parent.glob(f".{final.stem}.*{final.suffix}"))


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; it replaces ``final`` only if the block succeeds (an older
    ``final`` is moved aside first and removed after), so a reader never sees a half-written directory."""
    import shutil

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield work
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(work, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))


def write_npy_atomic(path: str | os.PathLike, array) -> None:
    """A numpy array as a ``.npy`` file (readable memory-mapped), written to a temporary path, then renamed."""
    import numpy as np

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


# ---------------------------------------------------------------------------------------------------------------
# Probing


def _run(cmd: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


_KNOWN_REASONS = [
    ("moov atom not found", "truncated or corrupt MP4/MOV (moov atom not found)"),
    ("Invalid data found when processing input", "not a recognised video format (invalid data)"),
    ("End of file", "truncated file (unexpected end of file)"),
    ("Decoder (codec", "unsupported video codec (no decoder)"),
]


def _last_error_line(stderr: bytes | str, path: str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    for needle, reason in _KNOWN_REASONS:
        if needle in text:
            return reason
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        # ffmpeg prefixes messages with the file name; keep only the reason
        if path in line:
            line = line.split(path, 1)[1].lstrip(": ")
        if line:
            return line
    return "ffmpeg could not read it"


def _rotation_from_stream(stream: dict) -> int:
    """Clockwise display rotation in degrees, from the display matrix side data or the legacy 'rotate' tag."""
    angle = None
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            angle = -float(side["rotation"])  # ffmpeg reports the counter-clockwise matrix angle
    if angle is None and "rotate" in (stream.get("tags") or {}):
        angle = float(stream["tags"]["rotate"])
    if angle is None:
        return 0
    return int(round(angle / 90.0)) * 90 % 360


def _fraction(text: str | None) -> Fraction | None:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _display_size(coded_w: int, coded_h: int, sar: Fraction, rotation: int) -> tuple[int, int]:
    width = int(round(coded_w * sar)) if sar != 1 else coded_w
    height = coded_h
    if rotation in (90, 270):
        width, height = height, width
    return width, height


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable / len(text) > 0.95


def _unreadable(path: str, stderr: bytes | str) -> MediaError:
    if _looks_like_text(path):
        return MediaError(path, "a text file, not a video")
    return MediaError(path, _last_error_line(stderr, path))


def _probe_with_ffprobe(path: str) -> dict:
    """ffprobe's format, streams and every packet's stream and timestamp, in one demux-only call."""
    import ffmpeg  # ffmpeg-python

    try:
        return ffmpeg.probe(path, cmd=ffprobe_exe(), show_entries="packet=stream_index,pts")
    except ffmpeg.Error as err:
        raise _unreadable(path, err.stderr or b"") from None


def _video_packet_times(info: dict, stream: dict) -> np.ndarray | None:
    """Presentation times (s) of ``stream``'s packets from ffprobe's packet list (the file's own time line, so the
    container's start time is still in them); None when ``info`` has no packet list."""
    if "packets" not in info:
        return None
    index = stream.get("index")
    tb = _fraction(stream.get("time_base")) or Fraction(1, 1)
    pts = [p["pts"] for p in info["packets"] if p.get("stream_index") == index and "pts" in p]
    return np.sort(np.asarray(pts, dtype=np.float64)) * float(tb)


_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?), start: (-?\d+(?:\.\d+)?)")
_VIDEO_RE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_SIZE_RE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b(?: \[SAR (\d+):(\d+) DAR \d+:\d+\])?")
_FPS_RE = re.compile(r"([\d.]+) (fps|tbr)")


def _probe_with_ffmpeg(path: str) -> dict:
    """Fallback when no ffprobe exists (imageio-ffmpeg ships ffmpeg only): parse ``ffmpeg -i`` into ffprobe's shape."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-i", path])
    text = proc.stderr.decode("utf-8", "replace")
    fmt_match = re.search(r"Input #0, ([\w,]+), from", text)
    if not fmt_match:
        raise _unreadable(path, text)
    fmt: dict = {"format_name": fmt_match.group(1)}
    dur = _DURATION_RE.search(text)
    if dur:
        h, m, s, start = dur.groups()
        fmt["duration"] = str(int(h) * 3600 + int(m) * 60 + float(s))
        fmt["start_time"] = start
    streams = []
    for line in text.splitlines():
        if " Audio: " in line and "Stream #" in line:
            streams.append({"codec_type": "audio"})
        video = _VIDEO_RE.search(line)
        if video:
            size = _SIZE_RE.search(video.group(2))
            fps = dict((unit, value) for value, unit in _FPS_RE.findall(line))
            stream = {"codec_type": "video", "codec_name": video.group(1)}
            if size:
                stream["width"], stream["height"] = int(size.group(1)), int(size.group(2))
                if size.group(3):
                    stream["sample_aspect_ratio"] = f"{size.group(3)}:{size.group(4)}"
            rate = fps.get("fps") or fps.get("tbr")
            if rate:
                stream["avg_frame_rate"] = str(Fraction(rate).limit_denominator(1001))
                stream["r_frame_rate"] = str(Fraction(fps.get("tbr", rate)).limit_denominator(1001))
            streams.append(stream)
    rot = re.search(r"rotation of (-?[\d.]+) degrees", text)
    for stream in streams:
        if stream["codec_type"] == "video" and rot:
            stream["side_data_list"] = [{"rotation": float(rot.group(1))}]
            break
    return {"format": fmt, "streams": streams}


def _packet_times(path: str) -> np.ndarray:
    """Presentation times (s) of the first video stream's packets, from a demux-only pass (no decoding)."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy",
                 "-f", "framecrc", "-"])
    tb = Fraction(1, 1)
    pts = []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                pts.append(int(parts[2]))
    return np.sort(np.asarray(pts, dtype=np.float64)) * float(tb)


def _is_variable_frame_rate(times: np.ndarray) -> bool:
    if times.size < 3:
        return False
    deltas = np.diff(times)
    deltas = deltas[deltas > 0]
    if deltas.size < 2:
        return False
    median = float(np.median(deltas))
    # allow timestamp rounding jitter (e.g. 1/30 s in a 1/1000 time base); flag real rate changes
    return bool(np.mean(np.abs(deltas - median) > 0.25 * median) > 0.02)


def probe(path: str | os.PathLike) -> ProbeResult:
    """Probe a film with ffprobe (ffmpeg-python), checking that it is a readable video. Raises MediaError."""
    path = str(path)
    if not os.path.exists(path):
        raise MediaError(path, "no such file")
    if os.path.isdir(path):
        raise MediaError(path, "is a directory, not a video file")
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    info = _probe_with_ffprobe(path) if ffprobe_exe() else _probe_with_ffmpeg(path)
    fmt = info.get("format", {})
    container = fmt.get("format_name", "unknown")
    videos = [s for s in info.get("streams", []) if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not videos:
        kinds = sorted({s.get("codec_type", "?") for s in info.get("streams", [])})
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams"
        raise MediaError(path, f"no video stream ({what})")
    if _IMAGE_FORMATS.search(container):
        raise MediaError(path, f"a still image ({container}), not a video")
    stream = videos[0]
    codec = stream.get("codec_name") or "unknown"
    coded_w, coded_h = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if coded_w <= 0 or coded_h <= 0 or codec in ("unknown", "none"):
        raise MediaError(path, f"unsupported or undecodable video stream (codec {codec}, size {coded_w}x{coded_h})")
    sar = _fraction(stream.get("sample_aspect_ratio")) or Fraction(1)
    rotation = _rotation_from_stream(stream)
    width, height = _display_size(coded_w, coded_h, sar, rotation)

    times = _video_packet_times(info, stream)
    if times is None:  # ffmpeg's demux pass shifts the time line to start at zero: shift it back
        times = _packet_times(path) + float(fmt.get("start_time") or 0.0)
    if times.size == 0:
        raise MediaError(path, "no video frames could be read (truncated or corrupt)")
    container_start = float(fmt.get("start_time") or 0.0)
    avg = _fraction(stream.get("avg_frame_rate")) or _fraction(stream.get("r_frame_rate"))
    vfr = _is_variable_frame_rate(times)
    nominal = _fraction(stream.get("r_frame_rate")) or avg
    if times.size >= 2:
        span = times[-1] - times[0]
        if span > 0 and (avg is None or vfr):
            avg = Fraction((times.size - 1) / span).limit_denominator(1001)
        if vfr:  # the proxy keeps the film's most common frame interval, so no motion is lost
            deltas = np.diff(times)
            nominal = Fraction(1.0 / float(np.median(deltas[deltas > 0]))).limit_denominator(1001)
    if avg is None or nominal is None:
        raise MediaError(path, "cannot determine the frame rate")
    frame_dur = 1.0 / float(avg)
    duration = float(fmt.get("duration") or stream.get("duration") or 0.0)
    video_end = times[-1] - container_start + frame_dur
    video_start = max(0.0, float(times[0] - container_start))
    if duration <= 0:
        duration = video_end
    declared = float(stream.get("duration") or 0.0) or (duration - video_start)
    readable = video_end - video_start
    if declared > 1.0 and readable < 0.9 * declared - 0.5:
        raise MediaError(path, f"truncated or corrupt: only {readable:.2f} s of {declared:.2f} s of video readable")
    return ProbeResult(
        film_id=film_id_for(path),
        path=os.path.abspath(path),
        size_bytes=size,
        container=container,
        codec=codec,
        duration_s=round(duration, 6),
        fps=round(float(avg), 6),
        nominal_fps=f"{nominal.numerator}/{nominal.denominator}",
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        sample_aspect_ratio=f"{sar.numerator}:{sar.denominator}",
        rotation=rotation,
        variable_frame_rate=vfr,
        video_start_s=round(video_start, 6),
        frame_count_estimate=int(times.size),
        has_audio=any(s.get("codec_type") == "audio" for s in info.get("streams", [])),
    )


# ---------------------------------------------------------------------------------------------------------------
# The analysis proxy and frame decoding


@dataclass(frozen=True)
class ProxySpec:
    """How a film is normalised for analysis: displayed orientation, square pixels, constant frame rate, small."""

    max_side: int = 480  # the longer side of the proxy, in pixels
    max_fps: float = 60.0  # films above this rate are resampled down to it
    # The proxy's codec. MPEG-4 Part 2 (ffmpeg's own encoder, one thread) costs half of x264 --preset ultrafast
    # per frame at proxy size (0.66 s against 1.26 s CPU for a 60 s film) and decodes faster too, at the same
    # fidelity (PSNR 43 dB against x264's 44 dB on the reel); "libx264" writes H.264 instead.
    codec: str = "mpeg4"
    quality: int = 4  # mpeg4: -q:v (2 best .. 31); libx264: -crf
    # Skip H.264/HEVC deblocking while decoding the source: about a third of the decoding cost, and invisible
    # once the picture is scaled down by 2x or more for analysis. Set False to decode bit-exactly.
    skip_loop_filter: bool = True
    # Let the decoder use its non-bit-exact speed-ups (-flags2 +fast): ~9 % of the pass on 720p H.264, invisible
    # at proxy size.
    fast_decode: bool = True

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, self.max_side / max(width, height))
        return _even(width * scale), _even(height * scale)

    def fps_for(self, probed: ProbeResult) -> Fraction:
        return min(Fraction(probed.nominal_fps), Fraction(self.max_fps).limit_denominator(1001))


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def normalise_filter(width: int, height: int, fps: Fraction | None) -> str:
    """ffmpeg filter chain to the displayed orientation (ffmpeg auto-rotates on decode), square pixels, ``width``x
    ``height`` and, if ``fps`` is given, a constant frame rate."""
    # frame 0 of the output is the film's first video frame (an edit list's delay is not padded with copies)
    chain = ["setpts=PTS-STARTPTS", f"scale={width}:{height}:flags=area", "setsar=1"]
    if fps is not None:
        chain.append(f"fps={fps.numerator}/{fps.denominator}")
    return ",".join(chain)


@dataclass(frozen=True)
class ProxyInfo:
    path: str
    width: int
    height: int
    fps: float
    fps_rational: str
    frames: int
    start_s: float  # film time of proxy frame 0 (frame i is at start_s + i / fps)

    def to_dict(self) -> dict:
        return asdict(self)


def make_proxy(probed: ProbeResult, out_path: str | os.PathLike, spec: ProxySpec = ProxySpec(),
               analysis_width: int | None = None,
               frame_sink: Callable[[np.ndarray], None] | None = None) -> ProxyInfo:
    """Decode the film once and write its analysis proxy (``spec.codec``, displayed orientation, square pixels,
    CFR).

    With ``frame_sink``, the same decode also delivers every proxy frame, scaled to ``analysis_width`` (BGR), to
    that callback while ffmpeg works, so shot detection needs no second decode.
    """
    width, height = spec.size_for(probed.width, probed.height)
    fps = spec.fps_for(probed)
    normalise = normalise_filter(width, height, fps)
    downscale = max(probed.width, probed.height) / max(width, height)
    decode_opts = ["-skip_loop_filter", "all"] if spec.skip_loop_filter and downscale >= 2 else []
    decode_opts += ["-flags2", "+fast"] if spec.fast_decode else []
    if spec.codec == "libx264":
        encode = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "fastdecode", "-crf", str(spec.quality)]
    else:  # the decoder threads keep the other core busy: a second encoder thread only adds overhead
        encode = ["-c:v", spec.codec, "-q:v", str(spec.quality), "-threads", "1"]
    encode += ["-pix_fmt", "yuv420p", "-g", str(max(1, int(round(float(fps)))) * 2), "-movflags", "+faststart"]
    with atomic_path(out_path) as tmp:
        head = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *decode_opts, "-i", probed.path]
        if frame_sink is None:
            proc = _run([*head, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", normalise, *encode, str(tmp)])
            if proc.returncode != 0:
                raise MediaError(probed.path, f"decoding failed: {_last_error_line(proc.stderr, probed.path)}")
        else:
            # Two ffmpeg processes joined by a pipe: the first decodes and normalises, the second encodes the proxy
            # and scales the analysis frames. ffmpeg runs filters and a one-thread encoder on its main thread, so in
            # one process they queue behind the decoder's output; split in two they run beside it (3.17 s against 3.33 s
            # for a 60 s 720p film, interleaved best of 6).
            aw = min(analysis_width or width, width)
            ah = _even(height * aw / width)
            decode = [*head, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", normalise,
                      "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
            graph = f"[0:v]split=2[proxy][a];[a]scale={aw}:{ah}:flags=area[analysis]"
            encode_cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
                          "-r", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0",
                          "-filter_complex", graph, "-map", "[proxy]", *encode, str(tmp),
                          "-map", "[analysis]", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
            with tempfile.TemporaryFile() as decode_err:
                decoder = subprocess.Popen(decode, stdout=subprocess.PIPE, stderr=decode_err)
                _widen_pipe(decoder.stdout)  # 3.44 s against 4.00 s per 60 s film
                failure: MediaError | None = None
                delivered = 0
                try:
                    for frame in _stream_raw(encode_cmd, aw, ah, 3, probed.path, stdin=decoder.stdout):
                        frame_sink(frame)
                        delivered += 1
                except MediaError as err:  # the encoder failed (or saw no input: the decoder's reason is better)
                    failure = err
                except BaseException:
                    decoder.kill()
                    decoder.wait()
                    raise
                if decoder.wait() != 0:
                    decode_err.seek(0)
                    reason = _last_error_line(decode_err.read(), probed.path)
                    if failure is None or "broken pipe" not in reason.lower():  # not just the encoder's death
                        failure = MediaError(probed.path, f"decoding failed: {reason}")
                if failure is not None:
                    raise failure
        # the split filter hands the analysis branch every frame the proxy gets: no demux pass to count them
        frames = count_frames(tmp) if frame_sink is None else delivered
        if frames == 0:
            raise MediaError(probed.path, "no video frame could be decoded (corrupt or unsupported)")
        expected = probed.duration_s - probed.video_start_s
        decoded = frames / float(fps)
        if expected > 1.0 and decoded < 0.9 * expected - 0.5:
            raise MediaError(probed.path, f"truncated or corrupt: only {decoded:.2f} s of {expected:.2f} s decodable")
    return ProxyInfo(str(out_path), width, height, round(float(fps), 6), f"{fps.numerator}/{fps.denominator}",
                     frames, probed.video_start_s)


def _widen_pipe(stream) -> None:
    """Make a pipe 1 MiB (Linux's default cap for a process) instead of 64 KiB: a raw frame crosses it in one or two
    writes instead of ten, and the processes on either end switch far less. Elsewhere, a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def count_frames(path: str | os.PathLike) -> int:
    """Number of video packets in a file (demux only; exact for the proxies cinepipe writes)."""
    return int(_packet_times(str(path)).size)


def _stream_raw(cmd: list[str], width: int, height: int, channels: int, path: str,
                chunk: int = 16, stdin=None) -> Iterator[np.ndarray]:
    """Run ffmpeg with raw frames on stdout and yield them as arrays; raise MediaError if ffmpeg fails.

    ``stdin``, another process's output pipe, becomes ffmpeg's input; this process's copy of it is closed once
    ffmpeg holds it, so the writer sees a broken pipe, not a stall, if ffmpeg stops early.

    A reader thread drains the pipe as fast as ffmpeg fills it (into a bounded queue), so ffmpeg never stalls on a
    full pipe while the caller is busy with a frame: decoding and the caller's work overlap on the two cores.
    """
    frame_bytes = width * height * channels
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=errfile, bufsize=0)
        if stdin is not None:
            stdin.close()
        assert proc.stdout is not None
        _widen_pipe(proc.stdout)
        batches: queue.Queue = queue.Queue(maxsize=64)
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    buf = _read_exact(proc.stdout, frame_bytes * chunk)
                    if not buf:
                        break
                    batches.put(buf)
            finally:
                batches.put(None)

        thread = threading.Thread(target=reader, name="ffmpeg-reader", daemon=True)
        thread.start()
        try:
            while (buf := batches.get()) is not None:
                n = len(buf) // frame_bytes
                arr = np.frombuffer(buf, np.uint8, count=n * frame_bytes).reshape(n, height, width, channels)
                for frame in arr:
                    yield frame if channels > 1 else frame[:, :, 0]
            proc.wait()
            if proc.returncode != 0:
                errfile.seek(0)
                raise MediaError(path, f"decoding failed: {_last_error_line(errfile.read(), path)}")
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(queue.Empty):
                while True:  # unblock the reader if it waits on a full queue
                    batches.get_nowait()
            thread.join(timeout=5)
            proc.wait()
            proc.stdout.close()


def _read_exact(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def iter_frames(path: str | os.PathLike, width: int, height: int, pix_fmt: str = "bgr24") -> Iterator[np.ndarray]:
    """Decode a video into numpy frames (H x W x C, uint8) scaled to ``width``x``height``.

    Frames come from an ffmpeg pipe in batches, so ffmpeg decodes on one core while the caller works on the
    other. ``pix_fmt`` is ffmpeg's name: ``bgr24`` (OpenCV order), ``rgb24``, ``gray``, or ``yuv420p``: the
    decoder's own planes (I420, ``height * 3 // 2`` x ``width``, even sizes only), with no colour conversion at all
    (half the bytes of ``bgr24`` and half ffmpeg's time on a proxy); the luma plane is :func:`i420_luma`, a colour
    picture :func:`i420_bgr`.
    """
    path = str(path)
    if pix_fmt == "yuv420p" and (width % 2 or height % 2):
        raise ValueError(f"yuv420p frames need even sizes, not {width}x{height}")
    channels = {"bgr24": 3, "rgb24": 3, "gray": 1, "yuv420p": 1}[pix_fmt]
    rows = height * 3 // 2 if pix_fmt == "yuv420p" else height
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0",
           "-vf", f"scale={width}:{height}:flags=area", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    yield from _stream_raw(cmd, width, rows, channels, path)


_VIDEO_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def i420_luma(frame: np.ndarray) -> np.ndarray:
    """The luma plane of an I420 frame from ``iter_frames(..., "yuv420p")``: a view, in video range (16-235)."""
    return frame[:frame.shape[0] * 2 // 3]


def full_range(luma: np.ndarray) -> np.ndarray:
    """Video-range luma (16-235) stretched to full range (0-255), as ffmpeg's own ``gray`` output is."""
    import cv2

    return cv2.LUT(luma, _VIDEO_TO_FULL_RANGE)


def i420_bgr(frame: np.ndarray) -> np.ndarray:
    """An I420 frame as a BGR picture (BT.601, as ffmpeg's own ``bgr24`` conversion), a new array."""
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420)

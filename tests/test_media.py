import json
import subprocess
import sys

import pytest

from cinepipe.media import MediaError, ProxySpec, count_frames, film_id_for, make_proxy, probe
from conftest import real_clip


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cinepipe.cli", *map(str, args)], capture_output=True, text=True)


def test_probe_real_clip():
    info = probe(real_clip("bikes.mp4"))
    assert (info.width, info.height) == (640, 272)
    assert info.fps == 25.0 and info.codec == "h264" and not info.variable_frame_rate
    assert info.frame_count_estimate == 250 and abs(info.duration_s - 10.0) < 0.05


def test_film_id_is_content_hash(tmp_path, odd_films):
    a = tmp_path / "a.mp4"
    a.write_bytes(odd_films["base"].read_bytes())
    b = tmp_path / "renamed.mp4"
    a.rename(b)
    assert film_id_for(b) == film_id_for(odd_films["base"])
    b.write_bytes(b.read_bytes() + b"\0")
    assert film_id_for(b) != film_id_for(odd_films["base"])


def test_odd_but_valid_films(odd_films):
    base = probe(odd_films["base"])
    assert (base.width, base.height, base.rotation) == (320, 240, 0)
    rotated = probe(odd_films["rotated"])
    assert (rotated.width, rotated.height) == (240, 320) and rotated.rotation in (90, 270)
    anamorphic = probe(odd_films["anamorphic"])
    assert (anamorphic.width, anamorphic.height) == (640, 240) and anamorphic.sample_aspect_ratio == "2:1"
    vfr = probe(odd_films["vfr"])
    assert vfr.variable_frame_rate and vfr.nominal_fps == "25/1" and vfr.fps < 25
    assert not base.variable_frame_rate
    assert probe(odd_films["matroska"]).container.startswith("matroska")
    delayed = probe(odd_films["delayed"])
    assert abs(delayed.video_start_s - 0.5) < 0.02 and delayed.has_audio


def test_ffmpeg_only_fallback_agrees(odd_films, monkeypatch):
    """Without ffprobe (a bare pip install ships ffmpeg only), probing parses `ffmpeg -i` to the same answer."""
    from cinepipe import ffmpeg_tools

    expected = {name: probe(path) for name, path in odd_films.items()}
    monkeypatch.setenv("CINEPIPE_FFPROBE", "none")
    ffmpeg_tools.ffprobe_exe.cache_clear()
    try:
        for name, path in odd_films.items():
            got = probe(path)
            for field in ("width", "height", "rotation", "variable_frame_rate", "nominal_fps", "sample_aspect_ratio"):
                assert getattr(got, field) == getattr(expected[name], field), (name, field)
            assert abs(got.video_start_s - expected[name].video_start_s) < 0.02
    finally:
        monkeypatch.delenv("CINEPIPE_FFPROBE")
        ffmpeg_tools.ffprobe_exe.cache_clear()


@pytest.mark.parametrize("name", ["base", "rotated", "anamorphic", "vfr", "delayed"])
def test_proxy_is_normalised(tmp_path, odd_films, name):
    probed = probe(odd_films[name])
    proxy = make_proxy(probed, tmp_path / "proxy.mp4", ProxySpec(max_side=160))
    out = probe(proxy.path)
    assert out.rotation == 0 and out.sample_aspect_ratio == "1:1" and not out.variable_frame_rate
    assert abs(out.width / out.height - probed.width / probed.height) < 0.05
    assert max(out.width, out.height) <= 160
    assert out.nominal_fps == "25/1" and proxy.frames == count_frames(proxy.path)
    # the proxy covers the film: 3 s of pictures, whatever the source's timing
    assert abs(proxy.frames / proxy.fps - 3.0) <= 0.1
    assert proxy.start_s == probed.video_start_s


BAD_REASONS = {
    "empty": "empty file",
    "text": "text file",
    "audio_only": "no video stream",
    "truncated": "truncated",
    "truncated_faststart": "truncated",
    "unsupported": "unsupported",
}


@pytest.mark.parametrize("kind", sorted(BAD_REASONS))
@pytest.mark.parametrize("command", ["probe", "shots"])
def test_cli_bad_input_is_one_line_exit_2(bad_files, kind, command):
    path = bad_files[kind]
    proc = run_cli(command, path, "--json")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and BAD_REASONS[kind] in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_missing_file():
    proc = run_cli("probe", "/nonexistent/film.mp4", "--json")
    assert proc.returncode == 2 and "no such file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_probe_contract(odd_films):
    proc = run_cli("probe", odd_films["rotated"], "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("film_id", "duration_s", "fps", "width", "height", "rotation", "codec", "variable_frame_rate"):
        assert key in out
    assert (out["width"], out["height"]) == (240, 320)


def test_media_error_is_one_line(tmp_path):
    err = MediaError(tmp_path / "x.mp4", "bad\nthing")
    assert "\n" not in str(err) and str(err).startswith(str(tmp_path / "x.mp4"))

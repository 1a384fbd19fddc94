"""The camera-motion estimator's signs and components on exactly known image motions (synthetic warps)."""

import cv2
import numpy as np
import pytest

from cinepipe.motion import estimate


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur((rng.random((720, 1280)) * 255).astype(np.uint8), (0, 0), 2)
    coarse = cv2.resize((rng.random((45, 80)) * 255).astype(np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    return (fine // 2 + coarse // 2).astype(np.uint8)


def _frames(kind, n=25):
    tex = _texture()
    centre = np.array([[1, 0, -640], [0, 1, -360], [0, 0, 1.0]])
    out = []
    for i in range(n):
        if kind == "turn_right":  # the camera turns right (yaw), a 50 degree lens on the full texture
            f, a = 640 / np.tan(np.radians(25)), np.radians(0.25) * i
            k = np.array([[f, 0, 640], [0, f, 360], [0, 0, 1.0]])
            r = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
            m = k @ r @ np.linalg.inv(k)
        elif kind == "scene_left":  # every point shifts alike: a truck past a flat scene facing the camera
            m = np.array([[1, 0, -3.0 * i], [0, 1, 0], [0, 0, 1]])
        elif kind == "scene_down":
            m = np.array([[1, 0, 0], [0, 1, 3.0 * i], [0, 0, 1]])
        elif kind == "magnify":
            s = 1.01 ** i
            m = np.linalg.inv(centre) @ np.diag([s, s, 1]) @ centre
        elif kind in ("flat_dolly_in", "flat_dolly_out", "flat_zoom_in", "flat_zoom_out"):
            # a textured plane facing the camera over 3 s (72 frames): a steady dolly from 5 m to 3 m (or back)
            # magnifies it by D0 / D(t), a steady zoom by the same factor 5/3 at one ln-rate: no parallax either way
            u = i / (n - 1)
            if kind.startswith("flat_dolly"):
                s = 5.0 / (5.0 - 2.0 * u) if kind.endswith("in") else 3.0 / (3.0 + 2.0 * u)
            else:
                s = (5.0 / 3.0) ** (u if kind.endswith("in") else -u)
            s *= 1.0 if kind.endswith("in") else 5.0 / 3.0
            m = np.linalg.inv(centre) @ np.diag([s, s, 1]) @ centre
        elif kind == "still":
            m = np.eye(3)
        else:
            raise ValueError(kind)
        out.append(cv2.warpPerspective(tex, m, (1280, 720))[180:540, 320:960])
    return out


@pytest.mark.parametrize("kind,label,component,sign", [
    ("turn_right", "pan_right", "pan", 1),  # the scene moving left in perspective: the camera turns right
    ("scene_left", "truck_right", "pan", 1),  # the scene moving left all alike: the camera slides right
    ("scene_down", "tilt_up", "tilt", 1),  # the scene moving down: the camera tilts up
    ("magnify", "zoom_in", "zoom", 1),
])
def test_signs_follow_the_design(kind, label, component, sign):
    _, whole = estimate(_frames(kind), fps=24.0)
    assert whole.label == label
    value = getattr(whole, component)
    assert np.sign(value) == sign and abs(value) > 0.05


@pytest.mark.parametrize("kind,label", [("flat_dolly_in", "dolly_in"), ("flat_zoom_in", "zoom_in"),
                                        ("flat_dolly_out", "dolly_out"), ("flat_zoom_out", "zoom_out")])
def test_dolly_told_from_zoom_by_its_course_where_there_is_no_parallax(kind, label):
    """A plane facing the camera shows no parallax, so only the magnification's course tells them apart: a steady
    dolly's rate r grows as r^2 (kappa ~ 1), a steady zoom's does not (kappa ~ 0)."""
    from cinepipe.motion import magnification_kappa, track_windows

    frames = _frames(kind, n=72)
    windows, _, _ = track_windows(frames)
    kappa, error = magnification_kappa([w for w in windows if w is not None])
    assert error < 0.5
    assert (0.6 < kappa < 1.5) if "dolly" in kind else (abs(kappa) < 0.3), kappa
    _, whole = estimate(frames, fps=24.0)
    assert whole.label == label and whole.parallax < 0.17


def test_flow_shape_decides_between_magnification_and_sideways_move():
    """Magnification and sideways speed within the tie ratio: the flow's shape (radiating or parallel) decides,
    not the larger of the two."""
    from cinepipe.motion import MotionSettings, _label

    settings = MotionSettings()
    args = dict(pan=-0.10, tilt=0.0, zoom=-0.11, parallax=0.12, settings=settings)
    assert _label(**args, shape=(0.3, 0.99))[0] == "pan_left"
    assert _label(**args, shape=(0.95, 0.2))[0] == "zoom_out"
    assert _label(**args)[0] == "zoom_out"  # no shape: the larger component


def test_still_and_featureless_input():
    _, still = estimate(_frames("still"), fps=24.0)
    assert still.label == "static"
    flat = [np.full((180, 320), 40, np.uint8) for _ in range(10)]
    _, empty = estimate(flat, fps=24.0)
    assert empty.label in ("static", "unknown") and empty.confidence <= 0.5
    _, one = estimate(flat[:1], fps=24.0)
    assert one.label in ("static", "unknown")


def test_locked_off_real_shot_is_static():
    from cinepipe.media import iter_frames
    from conftest import real_clip

    _, whole = estimate(iter_frames(real_clip("bigbuckbunny.mp4"), 320, 180, pix_fmt="gray"), fps=25.0)
    assert whole.label == "static" and whole.confidence >= 0.5


def test_cli_motion_contract():
    import json
    import subprocess
    import sys

    from conftest import real_clip

    proc = subprocess.run([sys.executable, "-m", "cinepipe.cli", "motion", str(real_clip("bigbuckbunny.mp4")),
                           "--json", "--window", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["shots"]) == 1 and out["shots"][0]["motion"]["label"] == "static"
    assert len(out["windows"]) >= 4
    for w in out["windows"]:
        assert {"start_s", "end_s", "pan", "tilt", "zoom", "roll", "label", "confidence"} <= set(w)
        assert w["end_s"] > w["start_s"]


def test_reel_movement_accuracy(small_reel, tmp_path):
    """Movement labels against the reel's ground truth (fade ramps left out). Issue 3 asks for >= 0.95; today's
    floor allows one miss more than measured (23/24 with estimator v5; 21/24 with v4, whose misses were overhead
    zoom/dolly shots with no parallax to see, now told apart by the magnification's course)."""
    import json
    from pathlib import Path

    from cinepipe.media import make_proxy, probe
    from cinepipe.motion import shots_motion

    hits, total, misses = 0, 0, []
    for film in sorted(Path(small_reel).glob("*.mp4")):
        truth = json.loads(film.with_suffix(".truth.json").read_text())
        proxy = make_proxy(probe(film), tmp_path / film.name)
        pad = int(0.6 * truth["fps"])
        shots = []
        for i, s in enumerate(truth["shots"]):
            nxt = truth["shots"][i + 1] if i + 1 < len(truth["shots"]) else None
            a = s["start_frame"] + (pad if s["transition_in"] == "fade" else 0)
            b = s["end_frame"] - (pad if nxt and nxt["transition_in"] == "fade" else 0)
            shots.append({"index": i, "start_s": a / truth["fps"], "end_s": b / truth["fps"],
                          "start_frame": a, "end_frame": b})
        # shots_motion reads the proxy in one pass, so the gaps left by the trimmed fades become shots of their own
        rows, cursor = [], 0
        for s in shots:
            if s["start_frame"] > cursor:
                rows.append({"index": -1, "start_s": 0.0, "end_s": 0.0, "start_frame": cursor,
                             "end_frame": s["start_frame"]})
            rows.append(s)
            cursor = s["end_frame"]
        for row in shots_motion(proxy, rows, window_s=None):
            if row["index"] < 0:
                continue
            expected = truth["shots"][row["index"]]["movement"]
            total += 1
            hits += row["motion"]["label"] == expected
            if row["motion"]["label"] != expected:
                misses.append((expected, row["motion"]["label"], truth["shots"][row["index"]]["angle"]))
    assert total == 24
    assert hits >= 22, misses

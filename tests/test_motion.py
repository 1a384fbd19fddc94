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
        if kind == "scene_left":
            m = np.array([[1, 0, -3.0 * i], [0, 1, 0], [0, 0, 1]])
        elif kind == "scene_down":
            m = np.array([[1, 0, 0], [0, 1, 3.0 * i], [0, 0, 1]])
        elif kind == "magnify":
            s = 1.01 ** i
            m = np.linalg.inv(centre) @ np.diag([s, s, 1]) @ centre
        elif kind == "still":
            m = np.eye(3)
        else:
            raise ValueError(kind)
        out.append(cv2.warpPerspective(tex, m, (1280, 720))[180:540, 320:960])
    return out


@pytest.mark.parametrize("kind,label,component,sign", [
    ("scene_left", "pan_right", "pan", 1),  # the scene moving left: the camera turns right
    ("scene_down", "tilt_up", "tilt", 1),  # the scene moving down: the camera tilts up
    ("magnify", "zoom_in", "zoom", 1),
])
def test_signs_follow_the_design(kind, label, component, sign):
    _, whole = estimate(_frames(kind), fps=24.0)
    assert whole.label == label
    value = getattr(whole, component)
    assert np.sign(value) == sign and abs(value) > 0.05


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

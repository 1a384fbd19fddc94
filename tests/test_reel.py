"""The built-in reel: shot plans, ground truth, rendering, writing, and the camera physics behind the labels."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from cinepipe.ffmpeg_tools import ffmpeg_exe
from cinepipe.reel import (
    ANGLES,
    FilmPlan,
    ReelError,
    film_truth,
    generate_reel,
    iter_frames,
    main_reel,
    movement_kind,
    plan_reel,
    render_film,
)
from cinepipe.render import (
    Body,
    CameraPose,
    Renderer,
    SubjectSpec,
    View,
    build_scene,
    ellipsoid_bounds,
    subject_extent,
)
from cinepipe.taxonomy import FAMILIES, STATIC, TAXONOMY


@pytest.fixture(scope="module")
def default_plans() -> list[FilmPlan]:
    return plan_reel(0)


@pytest.fixture(scope="module")
def default_truths(default_plans: list[FilmPlan]) -> list[dict]:
    return [film_truth(p, 640, 360, 24) for p in default_plans]


# ---------------------------------------------------------------------------------------------------------------
# Plans and ground truth
# ---------------------------------------------------------------------------------------------------------------


def test_plan_uses_every_value_evenly(default_plans: list[FilmPlan]) -> None:
    shots = [s for p in default_plans for s in p.shots]
    assert len(default_plans) == 6 and len(shots) == 48
    for family in FAMILIES:
        counts = collections.Counter(getattr(s, family) for s in shots)
        assert set(counts) == set(TAXONOMY.values(family)), family
        assert max(counts.values()) - min(counts.values()) <= 1, (family, counts)
        assert min(counts.values()) >= 3, (family, counts)
    assert STATIC in {s.movement for s in shots}
    for s in shots:  # no pan or tilt straight down
        assert movement_kind(s.movement)[0] not in ANGLES[s.angle].still


def test_plan_follows_the_taxonomy_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reel's values come from the taxonomy: drop one and it disappears, add one it cannot film and it says so."""
    families = dict(TAXONOMY.families)
    families["angle"] = tuple(v for v in families["angle"] if v != "dutch_angle")
    monkeypatch.setattr("cinepipe.reel.TAXONOMY", dataclasses.replace(TAXONOMY, families=families))
    plans = plan_reel(seed=1, films=2, shots_per_film=4)
    assert {s.angle for p in plans for s in p.shots} == set(families["angle"])
    families["framing"] = families["framing"] + ("cowboy_shot",)
    monkeypatch.setattr("cinepipe.reel.TAXONOMY", dataclasses.replace(TAXONOMY, families=families))
    with pytest.raises(ReelError, match="cowboy_shot"):
        plan_reel(seed=1, films=1, shots_per_film=2)


def test_plan_is_deterministic() -> None:
    a = plan_reel(seed=5, films=2, shots_per_film=3, shot_seconds=(1.0, 2.0))
    b = plan_reel(seed=5, films=2, shots_per_film=3, shot_seconds=(1.0, 2.0))
    assert a == b
    assert [film_truth(p) for p in a] == [film_truth(p) for p in b]
    assert plan_reel(seed=6, films=2, shots_per_film=3) != a
    # consecutive shots are new set-ups
    for plan in a:
        for s, t in zip(plan.shots, plan.shots[1:]):
            assert s.scene_seed != t.scene_seed and s.location != t.location


def test_truth_shots_tile_each_film(default_truths: list[dict]) -> None:
    for truth in default_truths:
        fps, shots, bounds = truth["fps"], truth["shots"], truth["boundaries"]
        assert 24 <= truth["duration_s"] <= 40 + 6 * 6 / fps
        assert truth["duration_s"] == pytest.approx(truth["frames"] / fps, abs=1e-6)
        assert shots[0]["start_s"] == 0 and shots[0]["start_frame"] == 0 and shots[0]["transition_in"] == "start"
        assert shots[-1]["end_s"] == truth["duration_s"] and shots[-1]["end_frame"] == truth["frames"]
        assert len(bounds) == len(shots) - 1
        for prev, shot, b in zip(shots, shots[1:], bounds):
            assert prev["end_s"] == shot["start_s"] == b["time_s"]
            assert prev["end_frame"] == shot["start_frame"] == b["frame"]
            assert b["kind"] == shot["transition_in"] in ("cut", "fade")
            if b["kind"] == "cut":
                assert shot["rendered_start_frame"] == b["frame"] == prev["rendered_end_frame"]
            else:
                black = (b["black_end_s"] - b["black_start_s"]) * fps
                assert round(black) in (2, 4, 6)
                assert b["fade_out_start_s"] < b["black_start_s"] < b["time_s"] < b["black_end_s"] < b["fade_in_end_s"]
                assert b["time_s"] == pytest.approx((b["black_start_s"] + b["black_end_s"]) / 2, abs=1e-6)
                assert 0.3 <= b["black_start_s"] - b["fade_out_start_s"] <= 0.65
        kinds = collections.Counter(b["kind"] for b in bounds)
        assert kinds["fade"] == round(0.3 * len(bounds))


def test_truth_labels_match_the_definitions(default_truths: list[dict]) -> None:
    for shot in (s for t in default_truths for s in t["shots"]):
        cam, head, body = shot["camera_mid"], shot["head_height_frac"]["mid"], shot["subject_height_frac"]["mid"]
        framing, angle = shot["framing"], shot["angle"]
        if framing == "extreme_close_up":
            assert head > 0.8
        elif framing == "close_up":
            assert 0.3 <= head <= 0.6
        elif framing == "medium_shot":
            assert 0.15 <= head <= 0.4 and body > 1.0
        elif framing == "full_shot":
            assert 0.6 <= body <= 0.9
        else:
            assert body <= 0.3
        eye = shot["eye_height_m"]
        if angle in ("eye_level", "dutch_angle"):
            assert abs(cam["z"] - eye) < 0.01 and abs(cam["pitch"]) <= 5
            assert (cam["roll"] == 0) == (angle == "eye_level")
            if angle == "dutch_angle":
                assert 15 <= abs(cam["roll"]) <= 30
        elif angle == "high_angle":
            assert -45 <= cam["pitch"] <= -20 and cam["roll"] == 0 and cam["z"] > eye
        elif angle == "low_angle":
            assert 15 <= cam["pitch"] <= 35 and cam["roll"] == 0
            assert max(shot[k]["z"] for k in ("camera_start", "camera_mid", "camera_end")) < eye
        else:
            assert cam["pitch"] <= -80 and shot["subject_pose"] == "lying"


def test_truth_camera_moves_as_labelled(default_truths: list[dict]) -> None:
    """Each movement changes only what it should, with DESIGN.md's signs in expected_motion."""
    keys = ("x", "y", "z", "yaw", "pitch", "roll", "vfov_deg")
    for shot in (s for t in default_truths for s in t["shots"]):
        a, b, motion = shot["camera_start"], shot["camera_end"], shot["expected_motion"]
        kind, sign = movement_kind(shot["movement"])
        delta = {k: b[k] - a[k] for k in keys}
        delta["yaw"] = (delta["yaw"] + 180) % 360 - 180
        changed = {k for k, v in delta.items() if abs(v) > 1e-6}
        expected = {"pan": {"yaw"}, "tilt": {"pitch"}, "zoom": {"vfov_deg"}, "static": set()}.get(kind)
        if expected is not None:
            assert changed == expected, shot
        else:  # dolly and truck translate only
            assert changed <= {"x", "y", "z"} and changed, shot
            step = np.array([delta["x"], delta["y"], delta["z"]])
            yaw, pitch = math.radians(a["yaw"]), math.radians(a["pitch"])
            forward = np.array([math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
            right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
            axis = forward if kind == "dolly" else right
            assert np.dot(step, axis) * sign > 0.99 * np.linalg.norm(step), shot
        assert shot["speed"] == 0 if kind == "static" else shot["speed"] > 0
        assert shot["speed_unit"] == {"pan": "deg/s", "tilt": "deg/s", "zoom": "zoom_factor/s", "dolly": "m/s",
                                      "truck": "m/s", "static": 0}[kind]
        if kind in ("pan", "truck"):
            assert sign * motion["pan"] > 0.02 and abs(motion["zoom"]) < 1e-3
        elif kind == "tilt":
            assert sign * motion["tilt"] > 0.02 and abs(motion["zoom"]) < 1e-3
        elif kind in ("zoom", "dolly"):
            assert sign * motion["zoom"] > 0.02 and abs(motion["pan"]) < 1e-6
        else:
            assert all(abs(v) < 1e-6 for v in motion.values())


def test_ellipsoid_bounds_are_exact() -> None:
    rng = np.random.default_rng(0)
    view = View(CameraPose(0.3, -3, 1.5, 5, -10, 12, 40), 640, 360)
    centres = np.array([[0.2, 0, 1.2], [0.5, 1, 0.3]])
    axes = np.stack([np.diag([0.1, 0.2, 0.3]), np.linalg.qr(rng.normal(size=(3, 3)))[0] * 0.3])
    bounds, in_front = ellipsoid_bounds(view, centres, axes)
    assert in_front.all()
    u = rng.normal(size=(100_000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for k in range(2):
        uv, _ = view.project(centres[k] + u @ axes[k].T)
        np.testing.assert_allclose(bounds[k], np.r_[uv.min(0), uv.max(0)], atol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# Camera physics: dolly is not zoom, truck is not pan
# ---------------------------------------------------------------------------------------------------------------


def test_dolly_differs_from_zoom_and_truck_from_pan_in_projection() -> None:
    near = np.array([[0.3, 0.0, 1.7]])  # on the subject, 4 m away
    far = np.array([[6.0, 30.0, 5.0]])  # on a far wall
    start = CameraPose(0, -4, 1.6, 0, 0, 0, 40)

    def offset(pose: CameraPose, p: np.ndarray) -> np.ndarray:
        view = View(pose, 640, 360)
        return view.project(p)[0][0] - [view.cx, view.cy]

    def scale(end: CameraPose, p: np.ndarray) -> float:
        return float(np.linalg.norm(offset(end, p)) / np.linalg.norm(offset(start, p)))

    # zoom (focal length x1.4): everything grows alike
    zoom = CameraPose(0, -4, 1.6, 0, 0, 0, math.degrees(2 * math.atan(math.tan(math.radians(20)) / 1.4)))
    assert scale(zoom, near) == pytest.approx(1.4, rel=1e-6) and scale(zoom, far) == pytest.approx(1.4, rel=1e-6)
    # dolly in until the subject is x1.4: the far wall hardly grows (parallax)
    dolly = CameraPose(0, -4 + 4 * (1 - 1 / 1.4), 1.6, 0, 0, 0, 40)
    assert scale(dolly, near) == pytest.approx(1.4, rel=0.01) and scale(dolly, far) < 1.06
    # pan 3 degrees vs truck 0.2 m: a pan shifts near and far alike, a truck shifts the near point far more
    pan = CameraPose(0, -4, 1.6, 3, 0, 0, 40)
    truck = CameraPose(0.2, -4, 1.6, 0, 0, 0, 40)
    shift = {name: [offset(end, p)[0] - offset(start, p)[0] for p in (near, far)] for name, end in
             (("pan", pan), ("truck", truck))}
    assert shift["pan"][0] == pytest.approx(shift["pan"][1], rel=0.05) and shift["pan"][0] < -10
    assert shift["truck"][0] < -10 and abs(shift["truck"][1]) < 0.2 * abs(shift["truck"][0])


def _background_similarity(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """Scale and x shift of the dominant similarity between two frames, from ORB matches outside ``box``."""
    mask = np.full(a.shape[:2], 255, np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = 0
    orb = cv2.ORB_create(1500)
    ka, da = orb.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), mask)
    kb, db = orb.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), mask)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    pa = np.float32([ka[m.queryIdx].pt for m in matches])
    pb = np.float32([kb[m.trainIdx].pt for m in matches])
    m, inliers = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=2.0)
    assert m is not None and inliers.sum() >= 20
    return float(math.hypot(m[0, 0], m[1, 0])), float(m[0, 2] + (m[0, 0] - 1) * 320 + m[0, 1] * 180)


def test_dolly_differs_from_zoom_in_rendered_frames() -> None:
    """Render a zoom and a dolly that both magnify the subject x1.35: the background follows the zoom only."""
    subject = SubjectSpec(facing=180.0)
    start = CameraPose(0.0, -3.0, 1.64, 0.0, -3.0, 0.0, 50.0)
    zoom = CameraPose(0.0, -3.0, 1.64, 0.0, -3.0, 0.0, math.degrees(2 * math.atan(math.tan(math.radians(25)) / 1.35)))
    travel = 3.0 * (1 - 1 / 1.35)  # along the optical axis, which points at the subject's chest
    dolly = CameraPose(0.0, -3.0 + travel * math.cos(math.radians(3)), 1.64 - travel * math.sin(math.radians(3)),
                       0.0, -3.0, 0.0, 50.0)
    scene = build_scene(11, "plaza", subject, [start.position, dolly.position])
    renderer = Renderer(scene, 640, 360)
    body = Body(subject)
    frames = {name: renderer.render(pose, 0.0).copy() for name, pose in
              (("start", start), ("zoom", zoom), ("dolly", dolly))}
    boxes = {name: subject_extent(View(pose, 640, 360), body).body for name, pose in
             (("start", start), ("zoom", zoom), ("dolly", dolly))}
    for name in ("zoom", "dolly"):
        subject_scale = (boxes[name][3] - boxes[name][1]) / (boxes["start"][3] - boxes["start"][1])
        assert subject_scale == pytest.approx(1.35, rel=0.05)
        box = np.r_[np.minimum(boxes["start"][:2], boxes[name][:2]), np.maximum(boxes["start"][2:], boxes[name][2:])]
        bg_scale, _ = _background_similarity(frames["start"], frames[name], box)
        if name == "zoom":
            assert bg_scale == pytest.approx(subject_scale, rel=0.05)
        else:
            assert bg_scale < 1.0 + 0.5 * (subject_scale - 1)  # far less than the subject: parallax


def test_truck_differs_from_pan_in_rendered_frames() -> None:
    """A pan and a truck that move the subject by the same amount in the image: the background moves with the pan,
    much less with the truck."""
    subject = SubjectSpec(facing=180.0)
    start = CameraPose(0.0, -4.0, 1.64, 0.0, -3.0, 0.0, 36.0)
    pan = CameraPose(0.0, -4.0, 1.64, 4.0, -3.0, 0.0, 36.0)
    truck = CameraPose(4.0 * math.tan(math.radians(4.0)), -4.0, 1.64, 0.0, -3.0, 0.0, 36.0)
    scene = build_scene(12, "plaza", subject, [start.position, truck.position])
    renderer = Renderer(scene, 640, 360)
    body = Body(subject)
    views = {name: View(pose, 640, 360) for name, pose in (("start", start), ("pan", pan), ("truck", truck))}
    frames = {name: renderer.render(view.pose, 0.0).copy() for name, view in views.items()}
    boxes = {name: subject_extent(view, body).body for name, view in views.items()}
    for name in ("pan", "truck"):
        subject_shift = (boxes[name][0] + boxes[name][2] - boxes["start"][0] - boxes["start"][2]) / 2
        assert subject_shift < -25
        box = np.r_[np.minimum(boxes["start"][:2], boxes[name][:2]), np.maximum(boxes["start"][2:], boxes[name][2:])]
        _, bg_shift = _background_similarity(frames["start"], frames[name], box)
        if name == "pan":
            assert bg_shift == pytest.approx(subject_shift, rel=0.1)
        else:
            assert abs(bg_shift) < 0.7 * abs(subject_shift)


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def test_roll_rotates_the_picture_about_its_centre() -> None:
    """A dutch camera sees the level picture turned anticlockwise by its roll (roll > 0: camera clockwise)."""
    scene = build_scene(3, "street", SubjectSpec(facing=180.0), [np.array([0.0, -5.0, 1.64])])
    renderer = Renderer(scene, 320, 180, background_scale=1)
    level = renderer.render(CameraPose(0.0, -5.0, 1.64, 0.0, -4.0, 0.0, 45.0)).copy()
    rolled = renderer.render(CameraPose(0.0, -5.0, 1.64, 0.0, -4.0, 20.0, 45.0)).copy()
    turned = cv2.warpAffine(level, cv2.getRotationMatrix2D((159.5, 89.5), 20.0, 1.0), (320, 180))
    yy, xx = np.mgrid[0:180, 0:320]
    centre = (xx - 159.5) ** 2 + (yy - 89.5) ** 2 < 80 ** 2
    diff = np.abs(rolled.astype(int) - turned.astype(int)).sum(axis=2)[centre]
    wrong = np.abs(rolled.astype(int) - cv2.warpAffine(
        level, cv2.getRotationMatrix2D((159.5, 89.5), -20.0, 1.0), (320, 180)).astype(int)).sum(axis=2)[centre]
    assert np.median(diff) < 12 < np.median(wrong)


def test_face_is_where_the_camera_says() -> None:
    """OpenCV's frontal face detector finds the subject's face in an eye-level close-up, at the projected eyes."""
    subject = SubjectSpec(facing=180.0)
    pose = CameraPose(0.0, -1.2, 1.64, 0.0, -2.0, 0.0, 30.0)
    frame = Renderer(build_scene(5, "park", subject, [pose.position]), 640, 360).render(pose, 0.0)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 4, minSize=(40, 40))
    assert len(faces) >= 1
    eyes = View(pose, 640, 360).project(Body(subject).point("eyes")[None])[0][0]
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    assert x < eyes[0] < x + w and y < eyes[1] < y + h


def test_renders_at_720p() -> None:
    subject = SubjectSpec(facing=180.0)
    pose = CameraPose(0.0, -6.0, 1.64, 0.0, -4.0, 0.0, 40.0)
    frame = Renderer(build_scene(2, "yard", subject, [pose.position]), 1280, 720).render(pose, 0.5)
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8 and frame.std() > 10


def test_rendered_frames_are_deterministic() -> None:
    plan = plan_reel(seed=2, films=1, shots_per_film=2, shot_seconds=(0.4, 0.4), fade_fraction=1.0)[0]

    def digest() -> str:
        h = hashlib.sha256()
        for frame in iter_frames(plan, 160, 90, 12):
            h.update(frame.tobytes())
        return h.hexdigest()

    assert digest() == digest()


# ---------------------------------------------------------------------------------------------------------------
# Writing films
# ---------------------------------------------------------------------------------------------------------------


def _decode_means(video: Path) -> np.ndarray:
    """Mean grey level of every frame of a video, decoded by ffmpeg."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vf", "scale=32:18", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 18 * 32).mean(axis=1)


def test_tiny_reel(tmp_path: Path) -> None:
    out = tmp_path / "reel"
    videos = generate_reel(out, seed=1, films=2, shots_per_film=3, width=320, height=180, fps=24, workers=2,
                           shot_seconds=(1.5, 1.5))
    assert [v.name for v in videos] == ["reel_00.mp4", "reel_01.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["reel.json", "reel_00.mp4", "reel_00.truth.json",
                                                     "reel_01.mp4", "reel_01.truth.json"]  # no temporary files
    manifest = json.loads((out / "reel.json").read_text())
    assert manifest["seed"] == 1 and manifest["settings"]["width"] == 320
    assert [f["film"] for f in manifest["films"]] == ["reel_00", "reel_01"]
    for video in videos:
        truth = json.loads(video.with_suffix(".truth.json").read_text())
        assert (truth["width"], truth["height"], truth["fps"]) == (320, 180, 24)
        means = _decode_means(video)
        assert len(means) == truth["frames"]
        fades = [b for b in truth["boundaries"] if b["kind"] == "fade"]
        assert len(fades) == 1
        for b in fades:
            black = range(round(b["black_start_s"] * 24), round(b["black_end_s"] * 24))
            assert all(means[k] < 3 for k in black)
            assert means[black.start - 1] < means[round(b["fade_out_start_s"] * 24)]
            assert means[black.stop] < means[round(b["fade_in_end_s"] * 24)]
        for shot in truth["shots"]:
            assert means[(shot["rendered_start_frame"] + shot["rendered_end_frame"]) // 2] > 30
    # a second run finds everything in place and renders nothing
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".mp4"}
    generate_reel(out, seed=1, films=2, shots_per_film=3, width=320, height=180, fps=24, workers=1,
                  shot_seconds=(1.5, 1.5))
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".mp4"}


def test_a_dead_render_worker_is_survived(tmp_path: Path) -> None:
    from cinepipe.reel import _render_films, film_truth, plan_reel
    from media_fixtures import render_job_dying_once

    out = tmp_path / "reel"
    out.mkdir()
    plans = plan_reel(2, 2, 2, (1.0, 1.0))
    todo = [(plan, str(out / f"{plan.name}.mp4"), 160, 90, 12) for plan in plans]
    _render_films(todo, workers=2, render=render_job_dying_once)  # returns: no wait for the dead worker's film
    assert sorted(p.name for p in out.iterdir()) == ["reel_00.mp4", "reel_01.mp4"]  # its temporary file is gone
    for plan in plans:
        assert len(_decode_means(out / f"{plan.name}.mp4")) == film_truth(plan, 160, 90, 12)["frames"]


def test_render_film_reports_ffmpeg_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr("cinepipe.reel.ffmpeg_exe", lambda: str(fake))
    plan = plan_reel(seed=4, films=1, shots_per_film=1, shot_seconds=(0.3, 0.3))[0]
    out = tmp_path / "films"
    with pytest.raises(ReelError, match="Unknown encoder libx264"):
        render_film(plan, out / "film.mp4", 160, 90, 12)
    assert list(out.iterdir()) == []


def test_main_reel_prints_one_line_per_film(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_reel(str(tmp_path / "r"), seed=3, films=2, shots_per_film=1, width=64, height=36, fps=4, workers=1) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "r" / "reel_00.mp4"))

"""The built-in reel: a few synthetic films with exact ground truth, rendered by :mod:`cinepipe.render`.

Each film is a sequence of shots joined by hard cuts or fades through black; each shot is a new 3-D set-up (its
own location, palette, props and subject) filmed by a camera whose framing, angle and movement are known exactly.
Every value of every family of the taxonomy (``cinepipe/data/taxonomy.json``) is used, evenly.

Definitions (what the labels mean, and how the camera is placed to honour them). Framing and angle hold at the
shot's middle rendered frame; the measures are vertical extents in the image (fractions of its height):

* framing: ``extreme_close_up`` - part of the face fills the frame, the head is taller than ~0.95 frame height
  (the eyes stay in view); ``close_up`` - head and shoulders, the head 0.34-0.5 of the frame height and wholly in
  it; ``medium_shot`` - waist up: waist and head in frame, the knees out of it, waist to top of head 0.6-0.92
  of the frame; ``full_shot`` - the whole body in frame, 0.62-0.85 of its height; ``long_shot`` - the whole
  body in frame and at most 0.28 of its height, the environment dominant.
* angle: ``eye_level`` - the camera at the subject's eye height, |pitch| <= 5 degrees, no roll; ``high_angle`` -
  above, looking down 22-42 degrees; ``low_angle`` - below eye height, looking up 17-32 degrees;
  ``overhead`` - looking straight down (pitch -85 to -90) at a subject lying on the ground on its back (so that
  framing keeps its meaning from above); ``dutch_angle`` - eye level with a roll of 16-28 degrees, either sign.
* movement (the camera's; signs as in DESIGN.md): ``pan_left/right`` - yaw rotation about the vertical, no
  translation; ``tilt_up/down`` - pitch rotation; ``zoom_in/out`` - focal length only, the camera fixed;
  ``dolly_in/out`` - translation along the optical axis, focal fixed; ``truck_left/right`` - horizontal
  translation perpendicular to the optical axis, orientation and focal fixed; ``static`` - nothing moves (the
  subject keeps a tiny idle motion). Speeds vary per shot: pans 4-20 degrees/s, tilts 4-12 (at most ~0.9 of the
  field of view over the shot, so the subject, centred at the middle frame, stays near the frame); zooms and
  dollies change the subject's scale by a factor 1.15-1.6 over the shot; trucks move the subject across the
  frame at 6-14 % of the field of view per second. Overhead shots never pan or tilt.

The camera at a shot's middle frame is solved numerically from these rules for a 16:9 frame (the lens, the pitch
within its range and the distance are searched until the framing's measure is met and what must be in frame
is); the subject faces the camera, give or take 15 degrees.

Ground truth per film (JSON, see :func:`film_truth`): frame count, boundaries (a cut at the first frame of the
new shot; a fade at the middle of its black segment, with the fade-out start, black start/end and fade-in end),
and per shot its time span (shots tile the film), labels, speed, the camera at its first/middle/last rendered
frame, the subject's projected height, and the expected global image motion at the frame centre.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import subprocess
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from cinepipe.ffmpeg_tools import ffmpeg_exe
from cinepipe.media import atomic_path, partial_files, write_text_atomic
from cinepipe.render import (
    LOCATIONS,
    Body,
    CameraPose,
    Renderer,
    SubjectSpec,
    View,
    build_scene,
    Extent,
    camera_axes,
    random_subject,
    subject_extent,
)
from cinepipe.taxonomy import STATIC, TAXONOMY

GENERATOR_VERSION = "reel-1"  # in every truth file: bump it when plans or pictures change, to re-render cached reels
PLAN_SIZE = (640, 360)  # camera placement is solved for a 16:9 frame; framing is by height, so it holds at any size
FADE_SECONDS = (0.4, 0.6)
BLACK_FRAMES = (2, 4, 6)  # even, so that the middle of the black segment falls between two frames


class ReelError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Rules: how each taxonomy value places or moves the camera
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FramingRule:
    """How a framing value places the camera (see the module docstring)."""

    span: str  # the measured vertical extent: "head", "waist_up" (waist to top of head) or "body"
    target: tuple[float, float]  # its fraction of the frame height at the middle frame
    aim: str  # the body key point the camera looks at
    inside: tuple[str, ...]  # what must be in frame: "eyes", "head", "waist", "body"; "no_knees": knees out
    vfov: tuple[float, float]  # preferred vertical field of view, degrees
    offset: float  # largest horizontal off-centring of the subject, as a fraction of the horizontal field of view


@dataclass(frozen=True)
class AngleRule:
    """How an angle value places the camera (see the module docstring)."""

    mode: str  # "eye": at eye height, pitch aims at the subject within the limits; "elevated": on a line of sight
    pitch: tuple[float, float]  # degrees
    roll: tuple[float, float]  # magnitude, degrees (random sign)
    pose: str  # the subject's pose
    still: tuple[str, ...] = ()  # movement kinds that do not go with this angle


FRAMINGS: dict[str, FramingRule] = {
    "extreme_close_up": FramingRule("head", (0.95, 1.25), "eyes", ("eyes",), (22, 32), 0.0),
    "close_up": FramingRule("head", (0.34, 0.5), "chin", ("head",), (24, 38), 0.03),
    "medium_shot": FramingRule("waist_up", (0.6, 0.92), "chest", ("head", "waist", "no_knees"), (24, 40), 0.08),
    "full_shot": FramingRule("body", (0.62, 0.85), "centre", ("body",), (26, 46), 0.08),
    "long_shot": FramingRule("body", (0.12, 0.28), "centre", ("body",), (30, 46), 0.15),
}
ANGLES: dict[str, AngleRule] = {
    "eye_level": AngleRule("eye", (-5, 5), (0, 0), "standing"),
    "high_angle": AngleRule("elevated", (-42, -22), (0, 0), "standing"),
    "low_angle": AngleRule("elevated", (17, 32), (0, 0), "standing"),
    "overhead": AngleRule("elevated", (-90, -85), (0, 0), "lying", still=("pan", "tilt")),
    "dutch_angle": AngleRule("eye", (-5, 5), (16, 28), "standing"),
}
MOVE_KINDS = ("pan", "tilt", "zoom", "dolly", "truck")
_DIRECTIONS = {"left": -1, "right": 1, "up": 1, "down": -1, "in": 1, "out": -1}
SPEED_UNITS = {"pan": "deg/s", "tilt": "deg/s", "zoom": "zoom_factor/s", "dolly": "m/s", "truck": "m/s"}


def movement_kind(movement: str) -> tuple[str, int]:
    """(kind, sign) of a movement value: ``pan_left`` -> ("pan", -1); the static value -> ("static", 0)."""
    if movement == STATIC:
        return "static", 0
    kind, _, direction = movement.partition("_")
    if kind not in MOVE_KINDS or direction not in _DIRECTIONS:
        raise ReelError(f"the reel does not know how to film movement {movement!r} (expected <kind>_<direction>, "
                        f"kind in {MOVE_KINDS}, direction in {tuple(_DIRECTIONS)})")
    return kind, _DIRECTIONS[direction]


def _check_rules() -> None:
    for family, rules in (("framing", FRAMINGS), ("angle", ANGLES)):
        missing = [v for v in TAXONOMY.values(family) if v not in rules]
        if missing:
            raise ReelError(f"the reel has no camera rule for {family} value(s) {missing}")
    for value in TAXONOMY.values("movement"):
        movement_kind(value)


# ----------------------------------------------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShotPlan:
    """One shot: labels, set-up, the camera at the middle frame and how it moves (``pose_at``)."""

    index: int
    framing: str
    angle: str
    movement: str
    duration_s: float  # rendered (non-black) time of the shot
    transition_in: str  # "start", "cut" or "fade"
    fade_s: float  # duration of the fade-out before and the fade-in of this shot (fades only, else 0)
    black_frames: int  # fully black frames before this shot (fades only, else 0)
    location: str
    scene_seed: int
    subject: SubjectSpec
    camera: CameraPose  # at the middle frame
    rate: float  # signed, per second: deg (pan, tilt), ln(magnification) (zoom), m (dolly, truck)

    def pose_at(self, tau: float) -> CameraPose:
        """The camera ``tau`` seconds after the middle frame (negative: before)."""
        kind, _ = movement_kind(self.movement)
        cam = self.camera
        if kind == "pan":
            return replace(cam, yaw=cam.yaw + self.rate * tau)
        if kind == "tilt":
            return replace(cam, pitch=cam.pitch + self.rate * tau)
        if kind == "zoom":
            half = math.tan(math.radians(cam.vfov) / 2) / math.exp(self.rate * tau)
            return replace(cam, vfov=math.degrees(2 * math.atan(half)))
        if kind == "dolly":
            step = camera_axes(cam.yaw, cam.pitch, cam.roll)[2] * self.rate * tau
        elif kind == "truck":
            yaw = math.radians(cam.yaw)
            step = np.array([math.cos(yaw), -math.sin(yaw), 0.0]) * self.rate * tau  # horizontal right
        else:
            return cam
        return replace(cam, x=cam.x + float(step[0]), y=cam.y + float(step[1]), z=cam.z + float(step[2]))

    @property
    def speed(self) -> float:
        """Magnitude of the movement per second, in ``speed_unit`` (a zoom: its magnification factor per second,
        >= 1 whichever the direction); 0 when static."""
        kind, _ = movement_kind(self.movement)
        if kind == "static":
            return 0.0
        return math.exp(abs(self.rate)) if kind == "zoom" else abs(self.rate)

    @property
    def speed_unit(self) -> str | int:
        return SPEED_UNITS.get(movement_kind(self.movement)[0], 0)


@dataclass(frozen=True)
class FilmPlan:
    name: str
    seed: int
    shots: tuple[ShotPlan, ...]


def _balanced(rng: np.random.Generator, values: Sequence[str], n: int) -> list[str]:
    """``n`` values cycling through shuffled copies of ``values``: every value as often as possible, evenly."""
    out: list[str] = []
    while len(out) < n:
        out += [values[i] for i in rng.permutation(len(values))]
    return out[:n]


def _allowed(angle: str, movement: str) -> bool:
    return movement_kind(movement)[0] not in ANGLES[angle].still


def plan_reel(seed: int = 0, films: int = 6, shots_per_film: int = 8, shot_seconds: tuple[float, float] = (3.0, 5.0),
              fade_fraction: float = 0.3) -> list[FilmPlan]:
    """Deterministic shot plans for ``films`` films of ``shots_per_film`` shots each.

    Every value of every taxonomy family appears across the reel as evenly as the shot count allows (framings,
    angles and movements each cycle through shuffled lists); overhead shots get no pan or tilt. A fraction
    ``fade_fraction`` of the transitions in each film are fades through black, the others hard cuts.
    """
    _check_rules()
    if films < 1 or shots_per_film < 1:
        raise ValueError("films and shots_per_film must be at least 1")
    if not 0 < shot_seconds[0] <= shot_seconds[1]:
        raise ValueError(f"bad shot_seconds {shot_seconds}")
    rng = np.random.default_rng(seed)
    n = films * shots_per_film
    framings = _balanced(rng, TAXONOMY.values("framing"), n)
    angles = _balanced(rng, TAXONOMY.values("angle"), n)
    movements = _balanced(rng, TAXONOMY.values("movement"), n)
    # repair combinations that do not go together by swapping movements (keeps every family balanced)
    for i in range(n):
        if _allowed(angles[i], movements[i]):
            continue
        for j in rng.permutation(n):
            if _allowed(angles[i], movements[j]) and _allowed(angles[j], movements[i]):
                movements[i], movements[j] = movements[j], movements[i]
                break
        else:
            raise ReelError(f"cannot pair angle {angles[i]!r} with an allowed movement")
    out = []
    location = None
    for f in range(films):
        n_trans = shots_per_film - 1
        fades = set(rng.choice(n_trans, size=int(round(fade_fraction * n_trans)), replace=False).tolist())
        shots = []
        for k in range(shots_per_film):
            i = f * shots_per_film + k
            location = str(rng.choice([loc for loc in LOCATIONS if loc != location]))
            transition = "start" if k == 0 else ("fade" if (k - 1) in fades else "cut")
            shots.append(_plan_shot(
                rng, k, framings[i], angles[i], movements[i], float(rng.uniform(*shot_seconds)), transition, location))
        out.append(FilmPlan(name=f"reel_{f:02d}", seed=seed, shots=tuple(shots)))
    return out


def _plan_shot(rng: np.random.Generator, index: int, framing: str, angle: str, movement: str, duration: float,
               transition: str, location: str) -> ShotPlan:
    rule_a = ANGLES[angle]
    camera_az = float(rng.uniform(0, 360))  # direction from the subject to the camera
    if rule_a.pose == "lying":
        facing = camera_az  # the head points this way; the camera looks along it from the feet's side
    else:
        facing = camera_az + float(rng.uniform(-15, 15))  # the subject faces the camera, more or less
    subject = random_subject(rng, facing=facing % 360, pose=rule_a.pose)
    body = Body(subject)
    kind, sign = movement_kind(movement)
    z_min = 0.25
    for _ in range(6):
        camera = _place(rng, body, FRAMINGS[framing], rule_a, camera_az, z_min, duration / 2)
        rate = _rate(rng, kind, sign, camera, body, framing, duration)
        shot = ShotPlan(
            index=index, framing=framing, angle=angle, movement=movement, duration_s=duration,
            transition_in=transition, fade_s=float(rng.uniform(*FADE_SECONDS)) if transition == "fade" else 0.0,
            black_frames=int(rng.choice(BLACK_FRAMES)) if transition == "fade" else 0,
            location=location, scene_seed=int(rng.integers(2**31)), subject=subject, camera=camera, rate=rate)
        lowest = min(shot.pose_at(-duration / 2).z, shot.pose_at(duration / 2).z)
        if lowest >= 0.15:
            return shot
        z_min += 0.2 - lowest  # a dolly would take the camera into the ground: start higher
    raise ReelError(f"cannot keep the camera above the ground for a {angle} {movement} shot")


def _span(view: View, body: Body, rule: FramingRule, parts: tuple[np.ndarray, np.ndarray]) -> tuple[float, Extent]:
    """The framing's measured extent (fraction of the frame height), and the subject's extent."""
    ext = subject_extent(view, body, parts=parts)
    H = view.height
    if rule.span == "head":
        span = (ext.head[3] - ext.head[1]) / H
    elif rule.span == "body":
        span = (ext.body[3] - ext.body[1]) / H
    else:
        span = (view.project(body.point("waist")[None])[0][0, 1] - ext.head[1]) / H
    return float(span), ext


def _inside(view: View, body: Body, rule: FramingRule, ext: Extent) -> bool:
    W, H = view.width, view.height
    if not (ext.head_whole if rule.span == "head" else ext.body_whole):
        return False

    def box_in(box: np.ndarray, margin: float) -> bool:
        return bool(box[0] >= margin * W and box[1] >= margin * H and box[2] <= (1 - margin) * W
                    and box[3] <= (1 - margin) * H)

    for need in rule.inside:
        if need == "eyes":
            uv, z = view.project(np.stack([body.point("eye_l"), body.point("eye_r")]))
            if (z <= 0).any() or not box_in(np.concatenate([uv.min(0), uv.max(0)]), 0.08):
                return False
        elif need == "head" and not box_in(ext.head, 0.02):
            return False
        elif need == "body" and not box_in(ext.body, 0.02):
            return False
        elif need in ("waist", "no_knees"):
            uv, _ = view.project(body.point("waist" if need == "waist" else "knees")[None])
            inside = 0 <= uv[0, 0] < W and 0 <= uv[0, 1] < 0.98 * H
            if inside != (need == "waist"):
                return False
    return True


def _place(rng: np.random.Generator, body: Body, rule: FramingRule, angle: AngleRule, camera_az: float, z_min: float,
           t_mid: float) -> CameraPose:
    """The camera at the middle frame, meeting the framing and angle rules (see the module docstring)."""
    W, H = PLAN_SIZE
    aim = body.point(rule.aim)
    eye_z = float(body.point("eyes")[2])
    look = camera_az + 180.0 if angle.pose == "standing" else camera_az  # yaw looking at the subject
    roll = float(rng.uniform(*angle.roll)) * (1 if rng.random() < 0.5 else -1)
    pitch0 = float(rng.uniform(*angle.pitch))
    off = float(rng.uniform(-1, 1)) * rule.offset
    vfov0 = float(rng.uniform(*rule.vfov))
    target0 = float(rng.uniform(*rule.target))
    jitter = float(rng.uniform(-1, 1))

    def pose(dist: float, pitch: float, vfov: float) -> CameraPose:
        hfov = math.degrees(2 * math.atan(W / H * math.tan(math.radians(vfov) / 2)))
        if angle.mode == "eye":
            ps = math.radians(look)
            pos = aim - dist * np.array([math.sin(ps), math.cos(ps), 0.0])
            pos[2] = eye_z
            p = float(np.clip(math.degrees(math.atan2(aim[2] - eye_z, dist)) + jitter, *angle.pitch))
        else:
            p = pitch
            pos = aim - dist * camera_axes(look, p, 0.0)[2]
            if pos[2] < z_min:  # too low: raise the camera to the floor height, keeping its pitch
                pos[2] = z_min
        return CameraPose(float(pos[0]), float(pos[1]), float(pos[2]), (look + off * hfov) % 360, p, roll, vfov)

    pitches = [pitch0] if angle.mode == "eye" else [pitch0, min(angle.pitch, key=abs)]
    # other lenses, nearest first: a longer one from further away flattens the view, a wider one from closer
    vfovs = [vfov0] + [v for k in range(1, 12) for v in (vfov0 + 4 * k, vfov0 - 4 * k) if 12 <= v <= 62]
    lo_t, hi_t = rule.target
    parts = body.parts(t_mid)

    def excess(log_dist: float, pitch: float, vfov: float, target: float) -> float:
        """log(span / target): > 0 when too close, < 0 when too far."""
        span = _span(View(pose(math.exp(log_dist), pitch, vfov), W, H), body, rule, parts)[0]
        return math.log(span / target) if span > 0 else 10.0  # (nan: nothing in front, far too close)

    for pitch in pitches:
        for vfov in vfovs:
            for target in (target0, (lo_t + hi_t) / 2, lo_t + 0.02, hi_t - 0.02):
                fun = partial(excess, pitch=pitch, vfov=vfov, target=target)
                cam = pose(math.exp(_falling_root(fun, math.log(0.12), math.log(400.0))), pitch, vfov)
                view = View(cam, W, H)
                span, ext = _span(view, body, rule, parts)
                if abs(span - target) < 0.02 and _inside(view, body, rule, ext):
                    return cam
    raise ReelError(f"cannot place the camera for framing {rule} at angle {angle}")


def _falling_root(fun: Callable[[float], float], lo: float, hi: float, tol: float = 1e-4) -> float:
    """A root of a decreasing function between ``lo`` and ``hi`` (Illinois false position; the framing spans are
    close to linear in log distance, so a few evaluations do), or the nearer end if it has none."""
    f_lo, f_hi = fun(lo), fun(hi)
    if f_lo <= 0 or f_hi >= 0:
        return lo if f_lo <= 0 else hi
    kept = 0
    x = lo
    for _ in range(60):
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        fx = fun(x)
        if abs(fx) < tol:
            break
        if fx > 0:
            lo, f_lo = x, fx
            f_hi = f_hi / 2 if kept == 1 else f_hi
            kept = 1
        else:
            hi, f_hi = x, fx
            f_lo = f_lo / 2 if kept == -1 else f_lo
            kept = -1
    return x


def _subject_depth(cam: CameraPose, body: Body, framing: str) -> float:
    """Depth along the optical axis of the point the framing aims at (eyes, chin, chest or the body's middle)."""
    forward = cam.axes()[2]
    return max(0.05, float((body.point(FRAMINGS[framing].aim) - cam.position) @ forward))


def _rate(rng: np.random.Generator, kind: str, sign: int, cam: CameraPose, body: Body, framing: str,
          duration: float) -> float:
    """A clearly visible speed for the movement (signed, natural units per second)."""
    W, H = PLAN_SIZE
    hfov, vfov = cam.hfov(W, H), cam.vfov
    if kind == "pan":
        speed = min(max(rng.uniform(0.15, 0.3) * hfov, 5.0), 20.0, 0.9 * hfov / duration)
    elif kind == "tilt":
        speed = min(max(rng.uniform(0.15, 0.3) * vfov, 4.0), 12.0, 0.9 * vfov / duration)
        speed = min(speed, 2 * (85 - abs(cam.pitch)) / duration)  # never past the vertical
    elif kind == "zoom":
        speed = math.log(rng.uniform(1.15, 1.6)) / duration
    elif kind == "dolly":
        factor = rng.uniform(1.15, 1.6)  # the subject's scale changes by this factor over the shot
        speed = 2 * _subject_depth(cam, body, framing) * (factor - 1) / (duration * (factor + 1))
    elif kind == "truck":
        sweep = min(rng.uniform(0.06, 0.14), 0.7 / duration)  # fraction of the field of view per second
        speed = _subject_depth(cam, body, framing) * math.tan(math.radians(sweep * hfov))
    else:
        return 0.0
    return sign * float(speed)


# ----------------------------------------------------------------------------------------------------------------
# Timeline and ground truth
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShotFrames:
    start: int  # first frame of the shot's time span (its boundary)
    end: int  # one past the last frame of its span (the next boundary)
    first: int  # first rendered frame
    count: int  # rendered frames
    fade_in: int  # dimmed frames at the start
    fade_out: int  # dimmed frames at the end


def _timeline(plan: FilmPlan, fps: int) -> tuple[list[_ShotFrames], int]:
    counts = [shot_frame_count(s, fps) for s in plan.shots]
    fades = [0] * len(plan.shots)  # fade frames on each side of the transition into shot i
    for i, shot in enumerate(plan.shots):
        if shot.transition_in == "fade" and i > 0:
            fades[i] = max(1, min(int(round(shot.fade_s * fps)), counts[i - 1] // 3, counts[i] // 3))
    firsts, boundaries, cursor = [], [0], 0
    for i, shot in enumerate(plan.shots):
        black = shot.black_frames if shot.transition_in == "fade" and i > 0 else 0
        if i > 0:
            boundaries.append(cursor + black // 2)
        cursor += black
        firsts.append(cursor)
        cursor += counts[i]
    boundaries.append(cursor)
    frames = [_ShotFrames(boundaries[i], boundaries[i + 1], firsts[i], counts[i], fades[i],
                          fades[i + 1] if i + 1 < len(plan.shots) else 0) for i in range(len(plan.shots))]
    return frames, cursor


def _round(x: float) -> float:
    return round(float(x), 6) + 0.0  # (+ 0.0 turns -0.0 into 0.0)


def _frac(box: np.ndarray, height: int) -> float | None:
    """Height of a projected box as a fraction of the frame height (None if nothing of it is in front)."""
    size = (box[3] - box[1]) / height
    return None if math.isnan(size) else _round(size)


def _pose_dict(cam: CameraPose, width: int, height: int) -> dict[str, float]:
    return {"x": _round(cam.x), "y": _round(cam.y), "z": _round(cam.z), "yaw": _round(cam.yaw % 360),
            "pitch": _round(cam.pitch), "roll": _round(cam.roll), "vfov_deg": _round(cam.vfov),
            "hfov_deg": _round(cam.hfov(width, height)), "focal_px": _round(cam.focal_px(height))}


def _expected_motion(shot: ShotPlan, body: Body, width: int, height: int) -> dict[str, float]:
    """Global image motion per second at the frame centre (DESIGN.md signs), from points at the subject's depth
    seen around the centre at the middle frame: pan/tilt in frame widths per second, zoom as d ln(scale)/dt,
    roll in radians per second (> 0 when the camera turns clockwise, the picture anticlockwise)."""
    view = View(shot.camera, width, height)
    depth = _subject_depth(shot.camera, body, shot.framing)
    r = 0.1 * width
    centre = np.array([view.cx, view.cy])
    pixels = centre + np.array([[0, 0], [r, 0], [-r, 0], [0, r], [0, -r]])
    points = view.unproject(pixels, np.full(len(pixels), depth))
    h = 0.05
    tracks = [View(shot.pose_at(tau), width, height).project(points)[0] for tau in (-h, h)]
    d_centre = (tracks[1][0] - tracks[0][0]) / (2 * h)
    spokes = [t[1:] - t[:1] for t in tracks]
    scale = [np.linalg.norm(s, axis=1).mean() for s in spokes]
    angle = [np.arctan2(s[:, 1], s[:, 0]) for s in spokes]
    turn = float(np.mean(np.angle(np.exp(1j * (angle[1] - angle[0]))))) / (2 * h)  # clockwise on screen
    return {"pan": _round(-d_centre[0] / width), "tilt": _round(d_centre[1] / width),
            "zoom": _round(math.log(scale[1] / scale[0]) / (2 * h)), "roll": _round(-turn)}


def film_truth(plan: FilmPlan, width: int = 640, height: int = 360, fps: int = 24) -> dict[str, Any]:
    """The ground truth of a film rendered at this size and frame rate (pure: no rendering needed).

    ``{film, seed, generator, fps, width, height, frames, duration_s, boundaries, shots}``. A boundary is
    ``{time_s, frame, kind: cut|fade}``, plus ``fade_out_start_s, black_start_s, black_end_s, fade_in_end_s`` for
    a fade (its time is the middle of the black frames). A shot is ``{index, start_s, end_s, start_frame,
    end_frame (exclusive), rendered_start_frame, rendered_end_frame, transition_in: start|cut|fade, framing, angle,
    movement, speed, speed_unit, camera_start, camera_mid, camera_end, subject_height_frac {start, mid, end},
    head_height_frac {start, mid, end}, subject_pose, subject_height_m, eye_height_m (above the ground, at rest),
    location, scene_seed, expected_motion {pan, tilt, zoom, roll}}``; shots tile the film (each ends where the
    next starts). Cameras are ``{x, y, z, yaw, pitch, roll, vfov_deg, hfov_deg, focal_px}`` at the first, middle
    and last rendered frame; heights are the projected vertical extent of the whole body / head as fractions of
    the frame height (beyond 1 when cropped); ``expected_motion`` is the image motion at the frame centre at the
    middle frame, per second: pan and tilt in frame widths, zoom as d ln(scale)/dt, roll in radians (see
    :func:`_expected_motion`)."""
    frames, total = _timeline(plan, fps)
    boundaries: list[dict[str, Any]] = []
    shots: list[dict[str, Any]] = []
    for i, (shot, fr) in enumerate(zip(plan.shots, frames)):
        if i > 0:
            b: dict[str, Any] = {"time_s": _round(fr.start / fps), "frame": fr.start, "kind": shot.transition_in}
            if shot.transition_in == "fade":
                black_start = fr.first - shot.black_frames
                b.update(fade_out_start_s=_round((black_start - frames[i - 1].fade_out) / fps),
                         black_start_s=_round(black_start / fps), black_end_s=_round(fr.first / fps),
                         fade_in_end_s=_round((fr.first + fr.fade_in) / fps))
            boundaries.append(b)
        body = Body(shot.subject)
        half = (fr.count - 1) / (2 * fps)
        poses = {"start": shot.pose_at(-half), "mid": shot.camera, "end": shot.pose_at(half)}
        times = {"start": 0.0, "mid": half, "end": 2 * half}
        extents = {k: subject_extent(View(p, width, height), body, times[k]) for k, p in poses.items()}
        shots.append({
            "index": shot.index, "start_s": _round(fr.start / fps), "end_s": _round(fr.end / fps),
            "start_frame": fr.start, "end_frame": fr.end,
            "rendered_start_frame": fr.first, "rendered_end_frame": fr.first + fr.count,
            "transition_in": shot.transition_in, "framing": shot.framing, "angle": shot.angle,
            "movement": shot.movement, "speed": _round(shot.speed), "speed_unit": shot.speed_unit,
            "camera_start": _pose_dict(poses["start"], width, height),
            "camera_mid": _pose_dict(poses["mid"], width, height),
            "camera_end": _pose_dict(poses["end"], width, height),
            "subject_height_frac": {k: _frac(e.body, height) for k, e in extents.items()},
            "head_height_frac": {k: _frac(e.head, height) for k, e in extents.items()},
            "subject_pose": shot.subject.pose, "subject_height_m": _round(shot.subject.height),
            "eye_height_m": _round(body.point("eyes")[2]), "location": shot.location, "scene_seed": shot.scene_seed,
            "expected_motion": _expected_motion(shot, body, width, height),
        })
    return {"film": plan.name, "seed": plan.seed, "generator": GENERATOR_VERSION, "fps": fps, "width": width,
            "height": height, "frames": total, "duration_s": _round(total / fps), "boundaries": boundaries,
            "shots": shots}


# ----------------------------------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------------------------------


def shot_frame_count(shot: ShotPlan, fps: int = 24) -> int:
    """Rendered (non-black) frames of a shot at ``fps``, as the film's timeline gives them."""
    return max(3, int(round(shot.duration_s * fps)))


def shot_renderer(shot: ShotPlan, count: int, width: int, height: int, fps: int = 24) -> Callable[[int], np.ndarray]:
    """``render(j)``: frame j (0 .. count-1) of a shot of ``count`` rendered frames, BGR uint8, without fades; any
    frame can be rendered alone (a shot's frames need not be rendered in order, nor all of them)."""
    half = (count - 1) / (2 * fps)
    ends = [shot.pose_at(-half).position, shot.camera.position, shot.pose_at(half).position]
    renderer = Renderer(build_scene(shot.scene_seed, shot.location, shot.subject, ends), width, height)
    if movement_kind(shot.movement)[0] in ("pan", "tilt", "zoom"):  # the camera only turns: one panorama
        renderer.hold_background([shot.pose_at(tau) for tau in np.linspace(-half, half, 9)])
    return lambda j: renderer.render(shot.pose_at(j / fps - half), j / fps)


def iter_frames(plan: FilmPlan, width: int = 640, height: int = 360, fps: int = 24) -> Iterator[np.ndarray]:
    """Every frame of the film in order, BGR uint8 (black frames and fades included)."""
    frames, _ = _timeline(plan, fps)
    black = np.zeros((height, width, 3), np.uint8)
    for shot, fr in zip(plan.shots, frames):
        for _ in range(fr.first - fr.start):  # the second half of the black segment before the shot
            yield black
        render = shot_renderer(shot, fr.count, width, height, fps)
        for j in range(fr.count):
            frame = render(j)
            gain = min((j + 1) / (fr.fade_in + 1) if j < fr.fade_in else 1.0,
                       (fr.count - j) / (fr.fade_out + 1) if j >= fr.count - fr.fade_out else 1.0)
            yield cv2.convertScaleAbs(frame, alpha=gain) if gain < 1 else frame
        for _ in range(fr.end - fr.first - fr.count):  # the first half of the next black segment
            yield black


def _to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """BGR -> planar YUV 4:2:0, BT.601 limited range: what ffmpeg's own conversion gives, at half its cost."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)


def render_film(plan: FilmPlan, path: str | os.PathLike[str], width: int = 640, height: int = 360,
                fps: int = 24, *, encoder_threads: int = 0) -> Path:
    """Render a film to an H.264 mp4 at ``path`` (written to a temporary file, then renamed into place).
    ``encoder_threads``: x264's threads (0: its own choice; 1 when other processes already use every core)."""
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    path = Path(path)
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as err:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-an", "-c:v", "libx264", "-preset",
               "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", str(encoder_threads),
               "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            try:
                for frame in iter_frames(plan, width, height, fps):
                    proc.stdin.write(memoryview(_to_yuv420p(frame)))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg died: its exit status and message tell why
            code = proc.wait()
            if code != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip()[-2000:]
                raise ReelError(f"ffmpeg failed (exit {code}) writing {path}: {tail}")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return path


def _render_job(job: tuple[FilmPlan, str, int, int, int, int]) -> str:
    plan, path, width, height, fps, threads = job
    return str(render_film(plan, path, width, height, fps, encoder_threads=threads))


def single_opencv_thread() -> None:
    cv2.setNumThreads(1)  # one process per core does the parallelism


def _render_films(todo: list[tuple], workers: int, render: Callable[[tuple], str] = _render_job) -> None:
    """Render the jobs, ``workers`` processes at a time (1: in this process). The pool fails loudly if a worker
    dies (multiprocessing.Pool waited forever for a dead worker's film, seen once in CI); the films not rendered
    then are rendered here, after the dead worker's temporary file is removed."""
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            render(job + (0,))
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=single_opencv_thread) as pool:
            for _ in pool.map(render, [job + (1,) for job in todo]):
                pass
    except BrokenProcessPool:
        for job in todo:
            video = Path(job[1])
            if not video.exists():
                for partial in partial_files(video):
                    partial.unlink(missing_ok=True)
                render(job + (0,))


def _truth_text(truth: dict[str, Any]) -> str:
    return json.dumps(truth, indent=1) + "\n"


def generate_reel(out_dir: str | os.PathLike[str], seed: int = 0, films: int = 6, shots_per_film: int = 8,
                  width: int = 640, height: int = 360, fps: int = 24, workers: int = 2,
                  shot_seconds: tuple[float, float] = (3.0, 5.0)) -> list[Path]:
    """Render the reel into ``out_dir``: ``reel_NN.mp4`` and ``reel_NN.truth.json`` per film and a ``reel.json``
    manifest. A film whose video and identical truth already exist is not rendered again. Films are rendered by
    ``workers`` processes (1: in this process). Returns the video paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_reel(seed, films, shots_per_film, tuple(shot_seconds))
    truths = [film_truth(p, width, height, fps) for p in plans]
    videos = [out / f"{p.name}.mp4" for p in plans]
    truth_paths = [out / f"{p.name}.truth.json" for p in plans]
    todo = []
    for plan, truth, video, tpath in zip(plans, truths, videos, truth_paths):
        cached = video.exists() and tpath.exists() and tpath.read_text() == _truth_text(truth)
        if not cached:
            tpath.unlink(missing_ok=True)  # a truth file always describes the video next to it
            todo.append((plan, str(video), width, height, fps))
    todo.sort(key=lambda job: -sum(s.duration_s for s in job[0].shots))  # longest first
    _render_films(todo, workers)
    for truth, tpath in zip(truths, truth_paths):
        if not tpath.exists():
            write_text_atomic(tpath, _truth_text(truth))
    manifest = {
        "generator": GENERATOR_VERSION, "seed": seed,
        "settings": {"films": films, "shots_per_film": shots_per_film, "width": width, "height": height, "fps": fps,
                     "shot_seconds": list(shot_seconds)},
        "films": [{"film": t["film"], "video": v.name, "truth": tp.name, "frames": t["frames"],
                   "duration_s": t["duration_s"], "shots": len(t["shots"]),
                   "truth_sha256": hashlib.sha256(_truth_text(t).encode()).hexdigest()}
                  for t, v, tp in zip(truths, videos, truth_paths)],
    }
    write_text_atomic(out / "reel.json", json.dumps(manifest, indent=1) + "\n")
    return videos


def main_reel(out: str, seed: int, films: int, shots_per_film: int, width: int, height: int, fps: int,
              workers: int) -> int:
    """Command-line hook (``cinepipe reel``): render the reel and print one line per film."""
    for video in generate_reel(out, seed=seed, films=films, shots_per_film=shots_per_film, width=width,
                               height=height, fps=fps, workers=workers):
        truth = json.loads(video.with_suffix(".truth.json").read_text())
        print(f"{video}\t{truth['duration_s']:.2f}s\t{len(truth['shots'])} shots\t{len(truth['boundaries'])} "
              f"boundaries")
    return 0

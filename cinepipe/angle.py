"""Camera angle from scene geometry: eye level, high angle, low angle, overhead, dutch angle.

Method. Man-made and natural scenes are full of vertical things (poles, walls' edges, window frames, trees). Their
images converge to the *vertical vanishing point* V: for a camera pitched by ``p`` (> 0 looking up) and rolled by
``r``, V lies at a distance ``f / tan|p|`` from the image centre (``f`` the focal length in pixels), above the
centre when the camera looks up, below when it looks down, and in the direction rotated by the roll. So:

* near-vertical line segments (OpenCV's LSD, at least ``min_segment`` of the frame height long, within
  ``max_tilt`` degrees of the image vertical) are intersected pairwise (RANSAC) and V is the point most of them
  pass through (within ``inlier_deg``); segments nearly parallel give V at infinity: pitch 0;
* pitch = 90 deg - atan(|V - centre| / f), signed by the side of V; roll = the angle between the image vertical
  and the direction from the centre to V (pointing to V's side) - for near-parallel verticals, their mean tilt;
* the focal length is unknown: we assume a nominal horizontal field of view ``nominal_hfov_deg`` (50 degrees:
  ``f = (W/2) / tan(25 deg)``). A lens twice as long or short scales tan(pitch) by two; the thresholds below
  leave room for that (eye level is within 5 deg, high and low angles are 17 deg or more).

A second, independent cue is the sky (blue, unsaturated-bright pixels excluded): the sky only shows above the
horizon, and the horizon lies ``f tan(p)`` below the centre. Sky reaching below the centre means the camera looks
up; no sky at all in a frame with a large ground share suggests it looks down; the tilt of the sky's lower edge
is a second roll measure.

Decision per shot (medians over the sample frames that gave a measure; thresholds in degrees):

* ``overhead``: pitch <= -``overhead_deg`` (60): V inside or near the frame;
* ``dutch_angle``: |roll| >= ``dutch_deg`` (10) with |pitch| < ``tilted_deg`` (12);
* ``high_angle``: pitch <= -``tilted_deg``; ``low_angle``: pitch >= ``tilted_deg``;
* ``eye_level``: |pitch| < ``tilted_deg`` and |roll| < ``dutch_deg``, with the sky (if any) not below the centre.

An upward convergence with no sky in any frame is suspect (a camera looking up outdoors sees sky): it is read as
lines on the ground seen from above, a weak ``overhead`` (0.3-0.35), whatever the lines' roll. A roll with no sky in
any frame (and no such convergence) is a weak ``dutch_angle`` (confidence at most 0.4: one family of parallel lines
could be lines on a ground seen from straight above), and an ``overhead`` when a second, perpendicular family of
lines is parallel too (a flat ground seen from above has no perspective along either family; at eye level the
ground's lines converge). A high angle whose sky reaches lower than the horizon of that pitch could be (with a lens
twice as wide) gets at most 0.5. Dutch calls whose frames disagree on the roll by more than ``roll_spread`` get the
lowest confidence.
Without line evidence, the sky cue alone decides low angle (sky below the centre) with lower confidence; otherwise
the label is ``None``. Roll sign: > 0 clockwise (DESIGN.md), i.e. the scene's verticals appear turned
counter-clockwise in the picture.

A third cue, from the subject (:func:`with_face_view`, applied by the pipeline after framing, which finds the face):
where the nose tip lies between the eyes and the mouth (:func:`cinepipe.framing.nose_ratio`). Seen level it lies
about half-way; a camera looking down on the face sees the nose, nearer to it than eyes and mouth, drop towards the
mouth. A face seen from above (ratio at least ``face_from_above``, 0.59) makes the shot a ``high_angle`` where the
geometry said overhead, eye level, low angle or nothing: an overhead looks straight down at a face turned up to the
camera (seen level), and a ground seen from above under a standing subject is what the lines of a high angle and
an overhead share. It assumes the subject holds the head level (a bowed head reads as a high angle). On seeds 1-5
and 8 of the reel the ratio is 0.57-0.72 (10th-90th percentile) for high angles and at most 0.57 (90th) for the
other angles; a low angle's face (0.39-0.49) overlaps the others too much to be used.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from cinepipe.label_types import Label, bgr_at_height

VERSION = 5
LABELLER = f"auto:angle@{VERSION}"


@dataclass(frozen=True)
class AngleSettings:
    analysis_height: int = 270
    nominal_hfov_deg: float = 50.0
    min_segment: float = 0.08  # fraction of the frame height
    max_tilt: float = 40.0  # degrees from the image vertical for a "near-vertical" segment
    inlier_deg: float = 2.0
    min_inliers: int = 4
    ransac_pairs: int = 150
    overhead_deg: float = 60.0
    tilted_deg: float = 12.0
    dutch_deg: float = 10.0
    flat_up_deg: float = 35.0  # upward convergence this steep with no sky at all: read as overhead (weak)
    grid_deg: float = 5.0  # the second line family's convergence below this (degrees of pseudo-pitch): parallel
    roll_spread: float = 8.0  # rolls of the frames spread wider than this: a dutch call gets the lowest confidence
    sky_low: float = 0.1  # sky reaching this far below the centre (fraction of height) means looking up
    face_from_above: float = 0.59  # a face's nose ratio from this: the camera looks down on it (a high angle)


_per_thread = threading.local()  # OpenCV's line segment detector keeps its picture: one per thread


def _lsd() -> cv2.LineSegmentDetector:
    if not hasattr(_per_thread, "lsd"):
        _per_thread.lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_NONE)
    return _per_thread.lsd


def _segments(grey: np.ndarray, settings: AngleSettings, frame_height: int | None = None) -> np.ndarray:
    """Near-vertical segments as rows (x1, y1, x2, y2), y1 < y2, in pixels; at least ``min_segment`` of the
    frame's height long (``frame_height``: the untransposed frame's, when ``grey`` is transposed)."""
    lines = _lsd().detect(grey)[0]
    if lines is None:
        return np.empty((0, 4))
    s = lines.reshape(-1, 4).astype(float)
    d = s[:, 2:] - s[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    tilt = np.degrees(np.arctan2(np.abs(d[:, 0]), np.abs(d[:, 1])))
    keep = (length >= settings.min_segment * (frame_height or grey.shape[0])) & (tilt <= settings.max_tilt)
    s = s[keep]
    flip = s[:, 1] > s[:, 3]
    s[flip] = s[flip][:, [2, 3, 0, 1]]
    return s


def _vanishing(seg: np.ndarray, centre: np.ndarray, settings: AngleSettings, rng: np.random.Generator
               ) -> tuple[np.ndarray, int] | None:
    """The vertical vanishing point as a homogeneous unit vector (x, y, w) in centred pixel coordinates, and its
    inlier count; RANSAC over pairs of segments, scored by summed inlier length."""
    if len(seg) < settings.min_inliers:
        return None
    p1 = np.c_[seg[:, :2] - centre, np.ones(len(seg))]
    p2 = np.c_[seg[:, 2:] - centre, np.ones(len(seg))]
    lines = np.cross(p1, p2)
    mids = (p1 + p2) / 2
    direction = seg[:, 2:] - seg[:, :2]
    length = np.hypot(direction[:, 0], direction[:, 1])
    unit = direction / length[:, None]
    tol = math.sin(math.radians(settings.inlier_deg))

    def inliers(v: np.ndarray) -> np.ndarray:
        # direction from each segment's middle towards v (or v's direction when v is at infinity)
        to_v = v[:2][None, :] - mids[:, :2] * v[2]
        norm = np.hypot(to_v[:, 0], to_v[:, 1]) + 1e-12
        return np.abs(unit[:, 0] * to_v[:, 1] - unit[:, 1] * to_v[:, 0]) / norm < tol

    n = len(seg)
    pairs = rng.integers(0, n, size=(settings.ransac_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    cand = np.cross(lines[pairs[:, 0]], lines[pairs[:, 1]])  # all candidate points at once
    norms = np.linalg.norm(cand, axis=1)
    cand = cand[norms > 0] / norms[norms > 0, None]
    if not len(cand):
        return None
    # direction from each segment's middle towards each candidate (or its direction when at infinity)
    to_x = cand[:, None, 0] - mids[None, :, 0] * cand[:, None, 2]
    to_y = cand[:, None, 1] - mids[None, :, 1] * cand[:, None, 2]
    sin = np.abs(unit[None, :, 0] * to_y - unit[None, :, 1] * to_x) / (np.hypot(to_x, to_y) + 1e-12)
    scores = ((sin < tol) * length[None, :]).sum(1)
    best = cand[int(np.argmax(scores))]
    mask = inliers(best)
    if mask.sum() < settings.min_inliers:
        return None
    # refine: the point nearest to all inlier lines (smallest singular vector of the normalised lines)
    L = lines[mask] / np.linalg.norm(lines[mask][:, :2], axis=1, keepdims=True)
    v = np.linalg.svd(L * length[mask][:, None])[2][-1]
    return v / np.linalg.norm(v), int(mask.sum())


def pitch_roll_from_vanishing(v: np.ndarray, focal: float) -> tuple[float, float]:
    """(pitch, roll) in degrees from the vertical vanishing point (homogeneous, centred pixel coordinates, y down).

    The world's up direction seen from the camera is (vx, vy, f*w) up to sign; the camera looks up (pitch > 0)
    when V is above the centre."""
    x, y, w = float(v[0]), float(v[1]), float(v[2]) * focal
    if y > 0 or (y == 0 and w < 0):
        x, y, w = -x, -y, -w  # orient towards the image's "up" (y < 0)
    # now (x, y, w) points up in the world; pitch: elevation of the optical axis = angle of `up` from the image
    # plane towards the viewing direction (w > 0: up is in front -> looking up)
    pitch = math.degrees(math.atan2(w, math.hypot(x, y)))
    roll = math.degrees(math.atan2(x, -y))  # up direction turned right on screen: camera rolled anticlockwise
    return pitch, -roll


def _sky(bgr: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (h >= 95) & (h <= 125) & (s >= 45) & (v >= 130)


def measure_frame(frame: np.ndarray, settings: AngleSettings = AngleSettings(), seed: int = 0) -> dict:
    """Per-frame measures: pitch/roll from the verticals (or None), segment count, sky share and extent."""
    bgr = bgr_at_height(frame, settings.analysis_height)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    focal = (w / 2) / math.tan(math.radians(settings.nominal_hfov_deg) / 2)
    centre = np.array([w / 2, h / 2])
    seg = _segments(grey, settings)
    out: dict = {"segments": len(seg), "pitch": None, "roll": None}
    vp = _vanishing(seg, centre, settings, np.random.default_rng(seed))
    if vp is not None:
        pitch, roll = pitch_roll_from_vanishing(vp[0], focal)
        out.update(pitch=round(pitch, 2), roll=round(roll, 2), inliers=vp[1])
    sky = _sky(bgr)
    rows = np.nonzero(sky.mean(1) > 0.2)[0]
    out["sky"] = round(float(sky.mean()), 4)
    out["sky_bottom"] = round(float((rows.max() - h / 2) / h), 4) if len(rows) else None  # > 0: below the centre
    return out


def _cross_family(frame: np.ndarray, settings: AngleSettings, seed: int = 0) -> float | None:
    """The convergence of the near-horizontal lines, as the pitch their vanishing point would mean (degrees, 0 when
    parallel), from the transposed frame; None without enough such lines."""
    grey = np.ascontiguousarray(cv2.cvtColor(bgr_at_height(frame, settings.analysis_height), cv2.COLOR_BGR2GRAY).T)
    h, w = grey.shape
    focal = (h / 2) / math.tan(math.radians(settings.nominal_hfov_deg) / 2)
    vp = _vanishing(_segments(grey, settings, frame_height=w), np.array([w / 2, h / 2]), settings,
                    np.random.default_rng(seed))
    return None if vp is None else pitch_roll_from_vanishing(vp[0], focal)[0]


def label_angle(frames: list[np.ndarray], settings: AngleSettings = AngleSettings()) -> Label:
    """The camera angle of a shot from a few sample frames (BGR uint8); see the module docstring."""
    frames = [f for f in frames if f is not None and getattr(f, "size", 0)]
    if not frames:
        return Label(None, 0.0, {"reason": "no frames"}, LABELLER)
    measures = [measure_frame(f, settings, seed=i) for i, f in enumerate(frames)]
    pitches = [m["pitch"] for m in measures if m["pitch"] is not None]
    rolls = [m["roll"] for m in measures if m["roll"] is not None]
    skies = [m["sky_bottom"] for m in measures if m["sky_bottom"] is not None]
    n = len(frames)
    details: dict = {"frames": n, "line_frames": len(pitches),
                     "sky_frames": len(skies), "nominal_hfov_deg": settings.nominal_hfov_deg}
    sky_low = len(skies) > n / 2 and float(np.median(skies)) > settings.sky_low
    if skies:
        details["sky_bottom"] = round(float(np.median(skies)), 3)
    if len(pitches) * 2 >= n:
        pitch, roll = float(np.median(pitches)), float(np.median(rolls))
        details.update(pitch_deg=round(pitch, 1), roll_deg=round(roll, 1))
        share = len(pitches) / n
        if pitch <= -settings.overhead_deg:
            value, margin = "overhead", (-pitch - settings.overhead_deg) / 15
        elif pitch <= -settings.tilted_deg:
            value, margin = "high_angle", (-pitch - settings.tilted_deg) / 8
        elif pitch >= settings.tilted_deg and not skies:
            # looking up steeply outdoors shows sky; with none in any frame, the "verticals" are more likely
            # lines on a ground seen from straight above (or a close subject): a weak overhead, whatever their
            # roll (on 288 reel shots no dutch angle measured a pitch this steep; 4 overheads did, and their
            # ground's lines, turned in the picture, had been called dutch)
            if pitch >= settings.flat_up_deg:
                details["reason"] = "steep upward convergence without any sky: a flat ground seen from above"
                return Label("overhead", 0.35 * share, details, LABELLER)
            details["reason"] = "upward convergence without any sky: likely the ground seen from above"
            return Label("overhead", round(0.3 * share, 3), details, LABELLER)
        elif pitch >= settings.tilted_deg and (skies or abs(roll) < settings.dutch_deg):
            value, margin = "low_angle", (pitch - settings.tilted_deg) / 8
        elif abs(roll) >= settings.dutch_deg:
            spread = float(np.ptp(rolls)) if len(rolls) > 1 else 0.0
            details["roll_spread_deg"] = round(spread, 1)
            if not skies:
                across = [_cross_family(f, settings, seed=i) for i, f in enumerate(frames[:3])]
                across = [a for a in across if a is not None]
                if across and len(across) * 2 > min(3, n) and float(np.max(np.abs(across))) < settings.grid_deg:
                    # both line families parallel (no perspective along either) in every frame that shows the
                    # second one, and no sky: a flat ground seen from straight above, turned in the picture,
                    # rather than a tilted horizon
                    details.update(reason="two parallel line families, no sky",
                                   cross_pitch_deg=round(float(np.median(across)), 1))
                    return Label("overhead", round(0.5 * share, 3), details, LABELLER)
            value, margin = "dutch_angle", (abs(roll) - settings.dutch_deg) / 6
            if spread > settings.roll_spread or abs(pitch) >= settings.tilted_deg:  # frames disagree, or tilted too
                margin = min(margin, 0.0)
            if not skies:  # one family of parallel lines and no horizon: could be lines on a ground seen from above
                details["reason"] = "tilted lines but no sky or horizon to confirm the roll"
                return Label(value, round(min(0.4, share * (0.5 + 0.5 * min(1.0, max(0.0, margin)))), 3), details,
                             LABELLER)
        else:
            value = "eye_level"
            margin = min(settings.tilted_deg - abs(pitch), settings.dutch_deg - abs(roll)) / 6
        conf = share * (0.5 + 0.5 * min(1.0, max(0.0, margin)))
        if value == "high_angle" and len(skies) * 2 > n:
            # sky shows only above the horizon, which lies f tan|pitch| above the centre when looking down: sky
            # reaching lower than half that (a lens twice as wide) contradicts the lines (or the sky is not sky)
            aspect = frames[0].shape[1] / frames[0].shape[0]
            focal_frac = 0.5 * aspect / math.tan(math.radians(settings.nominal_hfov_deg) / 2)  # f / frame height
            bound = -0.5 * focal_frac * math.tan(math.radians(-pitch))
            if float(np.median(skies)) > bound:
                details["conflict"] = "sky below where the horizon of this pitch would be"
                conf = min(conf, 0.5)
        return Label(value, round(conf, 3), details, LABELLER)
    if sky_low:
        return Label("low_angle", 0.4, details, LABELLER)
    details["reason"] = "too few vertical lines"
    return Label(None, 0.0, details, LABELLER)


def with_face_view(angle: Label, nose_ratio: float | None, settings: AngleSettings = AngleSettings()) -> Label:
    """The geometry's angle label revised by the face's view (see the module docstring): a face seen from above
    makes a ``high_angle`` of an overhead, eye-level, low-angle or unknown label; dutch angles and high angles stay.
    ``nose_ratio`` is the framing labeller's (``details["nose_ratio"]``: the median over the frames whose faces
    agree), None when no face was measured."""
    if nose_ratio is None or nose_ratio < settings.face_from_above or angle.value in ("high_angle", "dutch_angle"):
        return angle
    margin = min(1.0, (nose_ratio - settings.face_from_above) / 0.06)
    details = {**angle.details, "face_nose_ratio": round(float(nose_ratio), 3), "geometry": angle.value}
    return Label("high_angle", round(0.5 + 0.3 * margin, 3), details, LABELLER)

"""Camera-motion estimation from the pixels: pan, tilt, zoom, roll and a movement label per window and per shot.

Method. Between consecutive frames, corners (Shi-Tomasi) are tracked with pyramidal Lucas-Kanade and kept only if
the backward track returns to the start. Two global models are fitted with RANSAC:

- a similarity (translation, scale, rotation about the image centre) gives the components;
- a homography tells rotation from translation. A camera that only rotates or zooms moves every scene point by one
  homography whatever its depth; a camera that translates (dolly, truck) moves near points more than far ones, and
  no single homography explains that: the *parallax*, the part of the flow left after the homography, measured as
  a fraction of the flow itself.

So pan and truck both slide the picture sideways, but only the truck has parallax; zoom and dolly both magnify it,
but only the dolly has parallax. This is a decision from the geometry, not a guess from speed or texture.

Where the parallax cannot decide, the magnification's course over the shot can. A flat scene facing the camera (the
ground seen from overhead, a wall) shows no parallax whatever the camera does, and a subject that moves on its own
in a close-up shows some under a zoom. But a camera moving along its axis at a steady speed v towards a surface at
depth D magnifies it at the rate r(t) = v / (D - v t), so dr/dt = r^2 whatever the depth; a zoom at a steady rate
has dr/dt = 0 (and one at a steady focal-length speed dr/dt = -r^2). The measured ``kappa`` = (dr/dt) / r^2 over a
shot's windows is about 1 for a dolly and at most 0 for a zoom; it decides when its standard error is small
(``MotionSettings.dolly_kappa``, ``kappa_max_error``), and the parallax decides otherwise.

Magnification or sideways move: by the flow's shape where it is clear (every point moving away from the centre or
towards it, against every point moving the same way; ``MotionSettings.shape_margin``), else by the larger of the two
components. A truck past things at many depths has a divergence of its own, often as large as its sideways flow.

Signs (the camera's, as DESIGN.md): ``pan`` > 0 when the camera turns right (the scene moves left in the frame),
``tilt`` > 0 when it tilts up (the scene moves down), ``zoom`` > 0 when the image magnifies (zoom in or dolly in),
``roll`` > 0 clockwise. ``pan`` and ``tilt`` are image shifts per second as a fraction of the frame width, ``zoom``
is d ln(scale)/dt per second, ``roll`` is radians per second.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from cinepipe.media import ProxyInfo, full_range, i420_luma, iter_frames
from cinepipe.taxonomy import STATIC, TAXONOMY

MOVEMENTS = TAXONOMY.families["movement"]
VERSION = 6  # bump when the estimator's output changes for the same input (labels record it)


@dataclass(frozen=True)
class MotionSettings:
    width: int = 320  # analysis width (frames are scaled to it)
    # corners per window and the Lucas-Kanade search (window side, iterations, convergence in pixels): 250, 15 px,
    # 10 and 0.03 cost 0.55x what 400, 21 px, 20 and 0.01 did for the same accuracy (with stride 3: 0.910 against
    # 0.912 on 432 reel shots, benchmarks/eval_motion.py)
    max_corners: int = 250
    lk_window: int = 15
    lk_iterations: int = 10
    lk_epsilon: float = 0.03
    window: int = 12  # frames a corner is tracked through before the window's motion is measured
    # track on every stride-th frame (the others are not even converted), where the pyramid (3 levels) still
    # follows the fastest reel moves: on 432 reel shots (seeds 0-6, 8, 11) strides 3, 4 and 6 label 415, 415 and 416
    # right; 4 (a sixth of a second at 24 fps) costs three quarters of 3 and keeps a margin for real pans
    stride: int = 4
    # a shot moves when one component reaches these (per second)
    min_shift: float = 0.015  # fraction of frame width per second
    min_zoom: float = 0.015  # d ln(scale) / dt
    # above this parallax (median residual of the best rotation-and-zoom flow, as a fraction of the median flow)
    # the camera translates
    parallax_translation: float = 0.17
    lens_hfov_deg: tuple[float, ...] = (25.0, 35.0, 45.0, 60.0, 80.0)  # lenses tried for the rotation fit
    flow_floor: float = 0.3  # pixels: flows below this are noise, not a scale for the parallax
    # a sideways move whose flow a plain shift explains within this factor of the rotation fit is a truck
    flat_perspective: float = 1.4
    # a translating camera whose magnification and sideways flow are within this factor of each other is a dolly
    # or a truck by the direction of its parallax (radial or along the flow), not by the larger component
    tie_ratio: float = 1.5
    min_points: int = 12
    # a sideways move whose residual flow leans along the motion by more than this (tail, / median flow) is a truck
    # even when the typical point shows no parallax (a near subject or prop against a far background)
    along_translation: float = 0.3
    # a dolly whose parallax does not lean along the radius by this much (tail, / median flow) is labelled less surely
    dolly_radial_support: float = 0.4
    # below min_shift and min_zoom, a translating camera whose points' divergences lean one way by this much (90th
    # plus 10th percentile, per second) is a slow dolly onto a near subject
    min_dolly_tail: float = 0.03
    # a magnifying shot whose rate grows as kappa * rate^2 is a dolly when kappa is above this (1 for a steady
    # dolly, at most 0 for a zoom), provided its standard error is below kappa_max_error and there are min_kappa_windows
    dolly_kappa: float = 0.5
    kappa_max_error: float = 0.5
    min_kappa_windows: int = 3
    # the flow radiates from the centre (a magnification) or runs one way (a sideways move) when one of the two shape
    # measures exceeds the other by this
    shape_margin: float = 0.3


@dataclass
class PairMotion:
    """One window's motion. The first four come from the rotation-and-zoom fit (right for a turning or zooming
    camera); the three ``raw_`` values describe the flow itself (right for a translating one, whose flow depends
    on depth and has no single rotation to speak of)."""

    dx: float  # image shift at the centre, pixels (x right)
    dy: float  # image shift at the centre, pixels (y down)
    log_scale: float
    rotation: float  # radians, counter-clockwise in image coordinates (y down: clockwise on screen)
    parallax: float  # median residual of the rotation fit / median flow magnitude
    flow: float  # median flow magnitude, pixels
    points: int
    raw_dx: float = 0.0  # mean horizontal flow, pixels (near points, which move most, count fully)
    raw_dy: float = 0.0  # mean vertical flow, pixels
    raw_divergence: float = 0.0  # median radial flow / radius (ln-scale like), away from the centre
    perspective: float = 1.0  # residual of a plain shift-and-scale / residual of the rotation fit
    radial_parallax: float = 0.0  # residual along the radius beyond that across it (tail), / median flow
    along_parallax: float = 0.0  # residual along the mean flow beyond that across it (tail), / median flow
    divergence_tail: float = 0.0  # 90th + 10th percentile of each point's radial flow / radius (ln-scale like)
    # the flow's shape: mean cosine between each point's flow and its direction from the centre (1: every point moves
    # straight away from the centre, or towards it), and the length of the mean unit flow (1: every point moves the
    # same way); points off the centre with flow above the floor only, 0 for both with fewer than 8 of them
    radiating: float = 0.0
    parallel: float = 0.0
    start_frame: int = 0  # the window's first frame, counted from the first frame of the input
    frames: int = 0  # frames between the window's first and last frame


@dataclass
class WindowMotion:
    start_s: float
    end_s: float
    pan: float
    tilt: float
    zoom: float
    roll: float
    parallax: float
    label: str
    confidence: float
    points: int = field(default=0)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("pan", "tilt", "zoom", "roll", "parallax", "confidence"):
            d[k] = round(float(d[k]), 5)
        return d


def _corners(grey: np.ndarray, settings: MotionSettings) -> np.ndarray:
    pts = cv2.goodFeaturesToTrack(grey, maxCorners=settings.max_corners, qualityLevel=0.01, minDistance=6,
                                  blockSize=7)
    return np.empty((0, 1, 2), np.float32) if pts is None else pts.astype(np.float32)


def _step(prev: np.ndarray, nxt: np.ndarray, pts: np.ndarray, settings: MotionSettings
          ) -> tuple[np.ndarray, np.ndarray]:
    """Track points one step with a forward-backward check; returns the new points and the survivors' mask."""
    if len(pts) == 0:
        return pts, np.zeros(0, bool)
    lk = dict(winSize=(settings.lk_window,) * 2, maxLevel=3,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, settings.lk_iterations, settings.lk_epsilon))
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, pts, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, fwd, None, **lk)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < 0.5)
    return fwd, ok


def _rotation_fit(x: np.ndarray, v: np.ndarray, focal: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares fit of the flow a camera makes by rotating and zooming only (any scene depth), for a focal
    length in pixels: v = rotation field(wx, wy, wz) + zoom * x. Returns the parameters (wx, wy, wz, zoom), in
    radians and ln-scale over the window, each point's residual size and its x and y parts. Refit twice without the
    worst fifth."""
    X, Y = x[:, 0], x[:, 1]
    ax = np.stack([-X * Y / focal, focal + X * X / focal, -Y, X], 1)
    ay = np.stack([-(focal + Y * Y / focal), X * Y / focal, X, Y], 1)
    a, b = np.concatenate([ax, ay]), np.concatenate([v[:, 0], v[:, 1]])
    keep = np.ones(len(b), bool)
    params = np.zeros(4)
    residual = np.zeros(len(X))
    for _ in range(3):
        params, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
        r = a @ params - b
        residual = np.hypot(r[:len(X)], r[len(X):])
        cut = max(0.3, _percentile(residual, 80))
        keep = np.concatenate([residual <= cut, residual <= cut])
    return params, residual, r[:len(X)], r[len(X):]


def _directed_excess(along: np.ndarray, across: np.ndarray, use: np.ndarray) -> float:
    """How much the residual flow leans one way: the tail (90th percentile) of its component ``along`` a direction
    beyond the tail of its component ``across`` it, in pixels (0 when it does not lean that way).

    A translating camera leaves a residual (after the best rotation-and-zoom flow) that points along the epipolar
    lines: away from the centre for a dolly, along the motion for a truck, its size set by each point's depth.
    Tracking noise and things that move on their own (a face nodding, a passing bike) leave residuals in every
    direction, as much across as along. The tail is used because depth structure (a prop, the near edge of a
    thing) is often a minority of the points, which a median would not see."""
    if use.sum() < 8:
        return 0.0
    a = _percentile(np.abs(along[use]), 90)
    c = _percentile(np.abs(across[use]), 90)
    return math.sqrt(max(0.0, a * a - c * c))


def window_motion(a: np.ndarray, b: np.ndarray, size: tuple[int, int],
                  settings: MotionSettings = MotionSettings()) -> PairMotion | None:
    """Global motion between matched points ``a`` (window start) and ``b`` (window end) in an image of ``size``
    (w, h). The best rotation-and-zoom flow over a range of lenses gives the components; what it cannot explain,
    relative to the flow itself, is the parallax of a translating camera."""
    if len(a) < settings.min_points:
        return None
    centre = np.array([size[0] / 2.0, size[1] / 2.0])
    x = a.astype(np.float64) - centre
    v = b.astype(np.float64) - a.astype(np.float64)
    best = None
    for hfov in settings.lens_hfov_deg:
        focal = size[0] / 2.0 / math.tan(math.radians(hfov) / 2.0)
        params, residual, rx, ry = _rotation_fit(x, v, focal)
        score = float(np.median(residual))
        if best is None or score < best[0]:
            best = (score, params, focal, rx, ry)
    score, (wx, wy, wz, zoom), focal, rx, ry = best
    flow = float(np.median(np.hypot(v[:, 0], v[:, 1])))
    parallax = score / max(flow, settings.flow_floor)
    radial = np.hypot(x[:, 0], x[:, 1])
    unit = x / np.maximum(radial, 1.0)[:, None]
    radial_parallax = _directed_excess(rx * unit[:, 0] + ry * unit[:, 1], rx * unit[:, 1] - ry * unit[:, 0],
                                       radial > 0.1 * size[0]) / max(flow, settings.flow_floor)
    heading = np.array([np.mean(v[:, 0]), np.mean(v[:, 1])])
    heading = heading / max(float(np.hypot(*heading)), 1e-9)
    along_parallax = _directed_excess(rx * heading[0] + ry * heading[1], rx * heading[1] - ry * heading[0],
                                      np.ones(len(rx), bool)) / max(flow, settings.flow_floor)
    # A camera that turns shears the picture in perspective (points off-centre move more); one that slides past a
    # flat scene facing it (a truck over the ground, seen from overhead) moves every point alike. When a plain
    # shift-and-scale explains the flow as well as the best rotation does, there is no rotation to see.
    shift_scale = np.stack([np.ones_like(x[:, 0]), np.zeros_like(x[:, 0]), x[:, 0]], 1)
    a2 = np.concatenate([shift_scale, np.stack([np.zeros_like(x[:, 1]), np.ones_like(x[:, 1]), x[:, 1]], 1)])
    b2 = np.concatenate([v[:, 0], v[:, 1]])
    p2, *_ = np.linalg.lstsq(a2, b2, rcond=None)
    r2 = a2 @ p2 - b2
    flat_residual = float(np.median(np.hypot(r2[:len(x)], r2[len(x):])))
    perspective = flat_residual / max(score, 0.02)
    # the similarity-style components: image shift at the centre (pixels), ln-scale and image rotation
    radius2 = (x ** 2).sum(1)
    off_centre = radius2 > (0.1 * size[0]) ** 2
    point_divergence = ((x * v).sum(1) / np.maximum(radius2, 1.0))[off_centre]
    divergence = float(np.median(point_divergence)) if off_centre.any() else 0.0
    # a camera moving forward spreads every point away from the centre, near ones most: the divergences lean to one
    # side; a static camera's noise, a pan or a truck leave them balanced about zero (see _label)
    divergence_tail = (_percentile(point_divergence, 90) + _percentile(point_divergence, 10)
                       if point_divergence.size >= 8 else 0.0)
    moving = off_centre & (np.hypot(v[:, 0], v[:, 1]) > settings.flow_floor)
    radiating = parallel = 0.0
    if moving.sum() >= 8:
        heading_each = v[moving] / np.hypot(v[moving, 0], v[moving, 1])[:, None]
        outward = x[moving] / np.sqrt(radius2[moving])[:, None]
        radiating = abs(float(np.mean((heading_each * outward).sum(1))))
        parallel = float(np.hypot(*heading_each.mean(0)))
    return PairMotion(dx=float(wy * focal), dy=float(-wx * focal), log_scale=float(zoom), rotation=float(wz),
                      parallax=parallax, flow=flow, points=int(len(a)), raw_dx=float(np.mean(v[:, 0])),
                      raw_dy=float(np.mean(v[:, 1])), raw_divergence=divergence, perspective=perspective,
                      radial_parallax=radial_parallax, along_parallax=along_parallax,
                      divergence_tail=divergence_tail, radiating=radiating, parallel=parallel)


def _label(pan: float, tilt: float, zoom: float, parallax: float, settings: MotionSettings,
           perspective: float = 10.0, radial_parallax: float | None = None,
           along_parallax: float | None = None, divergence_tail: float | None = None,
           kappa: tuple[float, float] | None = None, shape: tuple[float, float] | None = None
           ) -> tuple[str, float]:
    """Movement label and confidence from per-second components, the parallax and, for a sideways move with no
    parallax, the perspective signature of a turning camera. When a translating camera's flow magnifies about as
    much as it slides sideways (within ``tie_ratio``), the larger component is no evidence: the direction its
    parallax points to decides (see :func:`_directed_excess`): along the radius (``radial_parallax``), a dolly;
    along the flow (``along_parallax``), a truck. None: not known, the larger component decides. A magnifying
    shot's ``kappa`` (value, standard error; see :func:`magnification_kappa`), when sure enough, tells a dolly from
    a zoom instead of the parallax. The flow's ``shape`` (radiating, parallel; see :class:`PairMotion`), when one
    clearly exceeds the other (``settings.shape_margin``), tells a magnification from a sideways move instead of
    the sizes of the components (a sideways move past things at many depths has a divergence of its own)."""
    shift = max(abs(pan), abs(tilt))
    zoom_strength = abs(zoom) / settings.min_zoom
    shift_strength = shift / settings.min_shift
    if max(zoom_strength, shift_strength) < 1.0:
        # A slow dolly towards a near subject: the subject grows, the far background hardly moves, so the typical
        # point shows no magnification; but the divergences lean one way (all points move away from, or towards,
        # the centre), which a static camera's noise and a subject's own small movements do not do.
        lean = (divergence_tail or 0.0) / settings.min_dolly_tail
        if parallax > settings.parallax_translation and abs(lean) >= 1.0:
            return ("dolly_in" if lean > 0 else "dolly_out"), float(min(0.8, 0.3 + 0.25 * (abs(lean) - 1.0)))
        return STATIC, float(min(1.0, 1.0 - 0.5 * max(zoom_strength, shift_strength)))
    translates = parallax > settings.parallax_translation
    # how far the parallax is from the decision line, as a confidence in [0.5, 1]
    sure = 0.5 + 0.5 * min(1.0, abs(parallax - settings.parallax_translation) / settings.parallax_translation)
    zoom_wins = zoom_strength >= shift_strength
    radiating, parallel = shape if shape is not None else (0.0, 0.0)
    if abs(radiating - parallel) > settings.shape_margin:
        zoom_wins = radiating > parallel
    elif (translates and radial_parallax is not None and along_parallax is not None and abs(pan) >= abs(tilt)
            and min(zoom_strength, shift_strength) >= max(zoom_strength, shift_strength) / settings.tie_ratio):
        zoom_wins = radial_parallax >= along_parallax
    if zoom_wins:
        by_course = False
        if kappa is not None and kappa[1] < settings.kappa_max_error:
            by_course = True
            dolly = kappa[0] > settings.dolly_kappa
            course_sure = 0.5 + 0.5 * min(1.0, abs(kappa[0] - settings.dolly_kappa) / max(kappa[1], 0.05) / 4.0)
            sure = max(sure, course_sure) if dolly == translates else course_sure
            translates = dolly
        label = ("dolly_in" if zoom > 0 else "dolly_out") if translates else ("zoom_in" if zoom > 0 else "zoom_out")
        if (translates and not by_course and radial_parallax is not None
                and radial_parallax < settings.dolly_radial_support):
            # a dolly's parallax points along the radius; residual flow in every direction is as likely a
            # subject moving on its own in front of a zooming lens: less sure
            sure = min(sure, 0.6)
        margin = abs(1.0 - shift_strength / zoom_strength) if zoom_strength else 0.0
    elif abs(pan) >= abs(tilt):
        if not translates and along_parallax is not None and along_parallax > settings.along_translation:
            # most points move as one rotation would move them, but a tail of them (a near prop, the subject)
            # slides further the same way: depth-dependent flow, so the camera slides sideways
            translates = True
            sure = 0.5 + 0.5 * min(1.0, along_parallax / settings.along_translation - 1.0)
        if not translates and perspective < settings.flat_perspective:
            translates = True  # the picture slides without the perspective shear of a pan: a truck past a flat scene
            sure = 0.5 + 0.5 * min(1.0, (settings.flat_perspective - perspective) / settings.flat_perspective)
        label = ("truck_right" if pan > 0 else "truck_left") if translates else ("pan_right" if pan > 0 else "pan_left")
        margin = 1.0 - abs(tilt) / abs(pan) if pan else 0.0
    else:
        label = "tilt_up" if tilt > 0 else "tilt_down"
        margin = 1.0 - abs(pan) / abs(tilt)
        sure = 1.0
    strength = min(1.0, max(zoom_strength, shift_strength) - 1.0)
    confidence = sure * (0.5 + 0.5 * min(1.0, margin + 0.3)) * (0.6 + 0.4 * strength)
    return label, float(min(1.0, confidence))


def summarise(windows: list[PairMotion | None], seconds_each: float, width: int, start_s: float, end_s: float,
              settings: MotionSettings = MotionSettings()) -> WindowMotion:
    """Combine window motions (each over ``seconds_each``) into per-second components and a label."""
    good = [w for w in windows if w is not None]
    if not good:
        return WindowMotion(start_s, end_s, 0.0, 0.0, 0.0, 0.0, 0.0, "unknown", 0.0, 0)
    dt = max(seconds_each, 1e-6)
    dx = float(np.median([p.dx for p in good]))
    dy = float(np.median([p.dy for p in good]))
    ls = float(np.median([p.log_scale for p in good]))
    rot = float(np.median([p.rotation for p in good]))
    parallax = float(np.median([p.parallax for p in good]))
    if parallax > settings.parallax_translation:  # a translating camera: describe the flow itself
        dx = float(np.median([p.raw_dx for p in good]))
        dy = float(np.median([p.raw_dy for p in good]))
        ls = float(np.median([p.raw_divergence for p in good]))
    pan = -dx / width / dt  # the scene moving left means the camera turns (or trucks) right
    tilt = dy / width / dt  # the scene moving down means the camera tilts up
    zoom = ls / dt
    roll = -rot / dt  # image-space counter-clockwise (y down) is a clockwise camera roll
    perspective = float(np.median([p.perspective for p in good]))
    radial_parallax = float(np.median([p.radial_parallax for p in good]))
    along_parallax = float(np.median([p.along_parallax for p in good]))
    divergence_tail = float(np.median([p.divergence_tail for p in good])) / dt
    label, confidence = _label(pan, tilt, zoom, parallax, settings, perspective, radial_parallax, along_parallax,
                               divergence_tail, magnification_kappa(good, settings),
                               (float(np.median([p.radiating for p in good])),
                                float(np.median([p.parallel for p in good]))))
    coverage = len(good) / max(1, len(windows))
    return WindowMotion(start_s, end_s, pan, tilt, zoom, roll, parallax, label, confidence * coverage,
                        int(np.median([p.points for p in good])))


def magnification_kappa(windows: list[PairMotion], settings: MotionSettings = MotionSettings()
                        ) -> tuple[float, float] | None:
    """How the magnification rate r (ln-scale per frame, from each window's median point divergence) changes over
    the windows, as kappa = (dr/dt) / mean(r)^2, with its standard error in the same unit; None with fewer than
    ``settings.min_kappa_windows`` windows or no magnification. About 1 for a dolly at a steady speed (r = v / (D -
    v t) gives dr/dt = r^2 at any depth D), 0 for a zoom at a steady rate, -1 for one at a steady focal speed."""
    placed = [w for w in windows if w.frames > 0]
    if len(placed) < max(3, settings.min_kappa_windows):
        return None
    t = np.array([w.start_frame + w.frames / 2.0 for w in placed])
    r = np.array([math.log1p(max(w.raw_divergence, -0.9)) / w.frames for w in placed])
    scale = float(np.mean(r)) ** 2
    spread = float(((t - t.mean()) ** 2).sum())
    if scale < 1e-12 or spread <= 0:
        return None
    slope, intercept = np.polyfit(t, r, 1)
    residual = r - (slope * t + intercept)
    error = math.sqrt(float((residual ** 2).sum()) / max(1, len(r) - 2) / spread)
    return float(slope / scale), float(error / scale)


def _grey(frame: np.ndarray, width: int, video_range: bool = False) -> np.ndarray:
    """A frame (BGR, or grey) as grey at ``width``; ``video_range``: grey frames are video-range luma (16-235),
    stretched to full range once scaled."""
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if grey.shape[1] != width:
        h = int(round(grey.shape[0] * width / grey.shape[1]))
        grey = cv2.resize(grey, (width, h), interpolation=cv2.INTER_AREA)
    return full_range(grey) if video_range and frame.ndim == 2 else grey


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation, the same value to the last bit), a tenth of its cost:
    the estimator takes thousands of them per film."""
    a = np.asarray(values, dtype=np.float64).ravel()
    pos = q / 100.0 * (a.size - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, a.size - 1)
    part = np.partition(a, [lo, hi] if hi != lo else lo)
    low, high, t = part[lo], part[hi], pos - lo
    return float(high - (high - low) * (1 - t) if t >= 0.5 else low + (high - low) * t)


def track_windows(frames: Iterable[np.ndarray], settings: MotionSettings = MotionSettings(),
                  video_range: bool = False) -> tuple[list[PairMotion | None], int, tuple[int, int]]:
    """Track corners through the frames (every ``settings.stride``-th one) in windows of ``settings.window``
    frames (fresh corners at each window's start) and measure each window's global motion between its first and
    last frame. ``video_range``: grey frames are the decoder's video-range luma (see :func:`_grey`)."""
    windows: list[PairMotion | None] = []
    prev = None
    start_pts = pts = alive = None
    count, in_window, window_start, size = 0, 0, 0, (settings.width, 0)
    stride = max(1, min(settings.stride, settings.window // 2))
    for frame in frames:
        count += 1
        if (count - 1) % stride:
            continue
        grey = _grey(frame, settings.width, video_range)
        size = (grey.shape[1], grey.shape[0])
        if prev is None:
            window_start = count - 1
            prev, start_pts = grey, _corners(grey, settings)
            pts, alive, in_window = start_pts.copy(), np.ones(len(start_pts), bool), 0
            continue
        pts, ok = _step(prev, grey, pts, settings)
        alive &= ok if len(ok) else alive
        in_window += stride
        prev = grey
        if in_window >= settings.window:
            windows.append(_placed(window_motion(start_pts[alive, 0], pts[alive, 0], size, settings),
                                   window_start, in_window))
            window_start += in_window
            start_pts = _corners(grey, settings)
            pts, alive, in_window = start_pts.copy(), np.ones(len(start_pts), bool), 0
    # a last, shorter window; a shot too short for half a window is measured over the steps it has
    if in_window >= max(2, settings.window // 2) or (not windows and in_window >= max(2, stride)):
        windows.append(_placed(window_motion(start_pts[alive, 0], pts[alive, 0], size, settings),
                               window_start, in_window))
    return windows, count, size


def _placed(motion: PairMotion | None, start_frame: int, frames: int) -> PairMotion | None:
    if motion is not None:
        motion.start_frame, motion.frames = start_frame, frames
    return motion


def estimate(frames: Iterable[np.ndarray], fps: float, start_s: float = 0.0, window_s: float | None = None,
             settings: MotionSettings = MotionSettings(), video_range: bool = False
             ) -> tuple[list[WindowMotion], WindowMotion]:
    """Per-window results (``window_s`` seconds each, or one for the whole input) and the whole-input summary.
    ``video_range``: grey frames are the decoder's video-range luma (:func:`luma_frames`)."""
    measured, count, size = track_windows(frames, settings, video_range)
    seconds_each = settings.window / fps
    end_s = start_s + count / fps
    whole = summarise(measured, seconds_each, size[0], start_s, end_s, settings)
    if not window_s:
        return [whole], whole
    per = max(1, int(round(window_s / seconds_each)))
    out = []
    for k in range(0, len(measured), per):
        a = start_s + k * seconds_each
        b = min(end_s, a + per * seconds_each)
        out.append(summarise(measured[k:k + per], seconds_each, size[0], a, b, settings))
    return out, whole


def luma_frames(path, width: int, height: int, analysis_width: int) -> Iterator[np.ndarray]:
    """A video's frames as the decoder's luma planes (video range, no colour conversion: the pictures the labelling
    pass tracks; pass ``video_range=True`` to :func:`estimate`), scaled to about ``analysis_width`` (even sizes)."""
    w = max(2, analysis_width // 2 * 2)
    h = max(2, int(round(height * w / width / 2)) * 2)
    return (i420_luma(frame) for frame in iter_frames(path, w, h, pix_fmt="yuv420p"))


def shots_motion(proxy: ProxyInfo, shots: list[dict], window_s: float | None = 1.0,
                 settings: MotionSettings = MotionSettings()) -> list[dict]:
    """Camera motion of every shot of a film, from one decode of its proxy: per shot, the whole-shot summary and
    its windows (a window never crosses a shot boundary). ``shots`` rows carry ``index``, ``start_s``, ``end_s``,
    ``start_frame`` and ``end_frame`` (proxy frames, end exclusive)."""
    stream = luma_frames(proxy.path, proxy.width, proxy.height, settings.width)
    out = []
    for shot in sorted(shots, key=lambda s: s["start_frame"]):
        length = int(shot["end_frame"]) - int(shot["start_frame"])
        windows, whole = estimate(itertools.islice(stream, length), proxy.fps, float(shot["start_s"]), window_s,
                                  settings, video_range=True)
        out.append({"index": int(shot["index"]), "start_s": float(shot["start_s"]), "end_s": float(shot["end_s"]),
                    "motion": whole.to_dict(), "windows": [w.to_dict() for w in windows]})
    return out


@dataclass(frozen=True)
class ImageMotionSettings:
    """Dense-flow settings for tiny videos (a generated 32-pixel clip has too few corners to track)."""

    width: int = 128  # frames are scaled to this width before the flow
    min_shift: float = 0.008  # fraction of frame width per second for a pan/tilt-like image motion
    min_zoom: float = 0.006  # d ln(scale) / dt
    margin: float = 0.1  # border left out of the fit (flow is unreliable at the edges)


def image_motion(frames: list[np.ndarray], fps: float, settings: ImageMotionSettings = ImageMotionSettings()
                 ) -> dict:
    """The global image motion of a short, small video (BGR or grey frames) from dense optical flow (Farneback)
    between consecutive frames and a robust shift-and-scale fit per pair: ``pan``, ``tilt`` (per second, fraction
    of the width, the camera's signs as everywhere), ``zoom`` (d ln scale / dt) and the image-motion class of
    ``TAXONOMY.image_motion`` (``pan-``, ``pan+``, ``tilt-``, ``tilt+``, ``zoom-``, ``zoom+``) or ``static``.
    It cannot tell a dolly from a zoom or a truck from a pan (no parallax at this size): that is not its job."""
    greys = [_grey(f, settings.width) for f in frames]
    if len(greys) < 2:
        return {"pan": 0.0, "tilt": 0.0, "zoom": 0.0, "label": STATIC, "confidence": 0.0}
    h, w = greys[0].shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = xs - w / 2.0, ys - h / 2.0
    m = int(settings.margin * min(h, w))
    inner = np.zeros((h, w), bool)
    inner[m:h - m, m:w - m] = True
    shifts, scales = [], []
    for a, b in zip(greys, greys[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        u, v = flow[..., 0][inner], flow[..., 1][inner]
        px, py = x[inner], y[inner]
        # u = dx + s * x, v = dy + s * y (shift and scale), solved robustly by two rounds of reweighting
        weights = np.ones_like(u)
        for _ in range(3):
            a_mat = np.concatenate([np.stack([np.ones_like(px), np.zeros_like(px), px], 1),
                                    np.stack([np.zeros_like(py), np.ones_like(py), py], 1)])
            rhs = np.concatenate([u, v])
            wts = np.concatenate([weights, weights])
            params, *_ = np.linalg.lstsq(a_mat * wts[:, None], rhs * wts, rcond=None)
            resid = np.hypot(u - (params[0] + params[2] * px), v - (params[1] + params[2] * py))
            weights = 1.0 / np.maximum(1.0, resid / max(1e-3, float(np.median(resid)) * 2.0))
        shifts.append(params[:2])
        scales.append(params[2])
    dx, dy = np.median(np.array(shifts), axis=0)
    pan = float(-dx / w * fps)
    tilt = float(dy / w * fps)
    zoom = float(np.log1p(np.median(scales)) * fps)
    parts = {"pan": abs(pan) / settings.min_shift, "tilt": abs(tilt) / settings.min_shift,
             "zoom": abs(zoom) / settings.min_zoom}
    axis = max(parts, key=parts.get)
    if parts[axis] < 1.0:
        return {"pan": pan, "tilt": tilt, "zoom": zoom, "label": STATIC, "confidence": float(1 - parts[axis])}
    sign = {"pan": pan, "tilt": tilt, "zoom": zoom}[axis] > 0
    ranked = sorted(parts.values(), reverse=True)
    return {"pan": pan, "tilt": tilt, "zoom": zoom, "label": f"{axis}{'+' if sign else '-'}",
            "confidence": float(1 - ranked[1] / ranked[0]) if ranked[0] > 0 else 0.0}

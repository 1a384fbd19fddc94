"""Shot framing from the size of the main subject: extreme close-up ... long shot.

Method. Framing is defined by how tall the subject's head (or whole body) is in the picture, as a fraction of
the frame height (see :mod:`cinepipe.reel` for the definitions the reel honours):

==================  ==============================  =====================================
framing             head height / frame height      whole body / frame height
==================  ==============================  =====================================
extreme_close_up    >= ~0.95 (eyes in view)         -
close_up            0.34 - 0.5                      -
medium_shot         ~0.2 - 0.3 (waist up in view)   body cut by the frame
full_shot           ~0.09 - 0.11                    0.62 - 0.85, whole body in frame
long_shot           <= ~0.04                        <= 0.28
==================  ==============================  =====================================

The frames are searched, most reliable detector first, and the search stops as soon as enough frames agree:

1. faces: MTCNN (:mod:`cinepipe.face_detector`, with facenet-pytorch's trained networks; their weights ship inside
   the PyPI wheel, nothing is downloaded), faces of probability at least ``face_min_prob``, on the frames middle-out
   (middle, first, last, ...). First the ``face_batch`` first frames for faces from ``face_coarse_px`` (24 px of the
   270 px analysis height: the coarse pyramid levels, a third of the cost; decides most close-ups and medium
   shots), then, on those of them without a face, only the fine levels (faces from ``min_face_px`` up to what the
   coarse levels find); then the other frames (up to ``face_frames``) the same way, only if a face was found.
   MTCNN's box runs from the brows to the chin, about ``face_to_head`` (0.78) of the head height, so head height =
   box height / 0.78. It finds faces seen from below or above, tilted, and of every skin tone, where OpenCV's Haar
   cascades (the detector before labeller v5) missed many: on six reels framing went from 0.837 to 0.931;
2. on at most ``fallback_frames`` frames without a face: a level pair of large eyes (``haarcascade_eye``; an
   extreme close-up's face overflows the frame, the eye distance is about ``eyes_to_head`` of the head height),
   else, on ``upper_frames`` of them and only in a shot where a face was found (it confirms the face's size where
   the detector missed it), a head-and-shoulders box (``haarcascade_upperbody``, about ``upper_to_head`` head
   heights tall);
3. a standing person (OpenCV's HOG people detector) on those frames at the analysis size; its box is the body
   height times ``hog_pad`` (1.08). A box cut by the frame's top or bottom edge is not a whole body;
4. a whole figure below the HOG window: the people detector on the middle frame upscaled ``upscale`` times (a
   second frame only if the first shows one): a long shot;
5. a small whole figure (``haarcascade_fullbody`` at the analysis size, boxes up to ``fullbody_max`` of the frame
   height, about ``fullbody_pad`` body heights): a long shot; weak unless a second frame confirms it.

Per shot, a measure is kept only if frames agree (at least ``min_frames`` frames and more than half of those where
something was found, sizes within a factor ``size_spread`` of the median): one stray detection does not label a
shot. The median head (or body) fraction is then compared with the boundaries below (geometric midpoints between
the classes); the confidence falls as the measure nears a boundary, and with the share of frames that agree. When
nothing is found the label is ``None`` (unknown); no framing is guessed from the absence of a subject.

Frames are BGR uint8 arrays of any size (the pipeline hands proxy frames, long side 480 px). ``details`` holds the
measured ``head_frac`` or ``body_frac``, the detector that decided, per-frame counts and, when faces decided, the
median ``nose_ratio`` of their landmarks (:func:`nose_ratio`; the angle labeller reads a high angle from it).
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import cv2
import numpy as np

from cinepipe.label_types import Label, bgr_at_height
from cinepipe.taxonomy import TAXONOMY

VERSION = 6
LABELLER = f"auto:framing@{VERSION}"
FRAMINGS = TAXONOMY.families["framing"]


@dataclass(frozen=True)
class FramingSettings:
    analysis_height: int = 270  # frames are scaled to this height first (proxy size)
    min_face_px: int = 12  # smallest face searched, pixels at the analysis size (MTCNN's P-Net window)
    face_min_prob: float = 0.9  # MTCNN face probability kept
    face_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's P-, R- and O-Net stage thresholds
    face_to_head: float = 0.78  # MTCNN face box height / head height (box: brows to chin)
    upper_to_head: float = 2.9  # head-and-shoulders box height / head height
    eyes_to_head: float = 0.29  # distance between the eye centres / head height
    min_eye: float = 0.12  # smallest eye box searched / frame height (an extreme close-up's eyes are large)
    hog_pad: float = 1.08  # HOG box height / body height
    hog_min_full: float = 0.55  # HOG boxes below this (the 128 px window is 0.47 of 270) may hold a smaller figure
    fullbody_max: float = 0.45  # largest full-body cascade box searched / frame height
    fullbody_pad: float = 1.3  # full-body cascade box height / body height
    fullbody_frames: int = 3  # frames searched for a small whole figure (stops after two without one)
    # head-height boundaries (fraction of the frame height): ECU | CU | MS | full | long
    head_bounds: tuple[float, float, float, float] = (0.68, 0.31, 0.155, 0.05)
    body_full_min: float = 0.42  # whole body at least this tall: full shot, else long shot
    min_frames: int = 2  # frames whose sizes must agree for a confident label
    face_batch: int = 2  # frames searched for faces in one batch first (middle, first)
    face_coarse_px: int = 24  # those frames are searched for faces from this size first (the cheap pyramid levels)
    face_frames: int = 5  # most frames searched for faces (the rest only when the first batch finds some)
    fallback_frames: int = 3  # frames searched by the dearer detectors (eyes, head and shoulders, people)
    upper_frames: int = 3  # frames searched for a head and shoulders (in shots where a face was found)
    upscaled_frames: int = 2  # frames searched for small people in the frame upscaled by ``upscale``
    upscale: float = 2.0
    hog_scale: float = 1.1  # HOG pyramid step
    fallback_step: float = 1.1  # pyramid step of the eye, head-and-shoulders and full-body cascades
    size_spread: float = 1.5
    level_min_roll: float = 8.0  # a camera roll (given by the angle labeller) from this many degrees is levelled


_per_thread = threading.local()  # OpenCV's cascade classifiers are not safe to share between threads


def _cascade(name: str) -> cv2.CascadeClassifier:
    """OpenCV's Haar cascade ``name``, loaded once per thread."""
    loaded = _per_thread.__dict__.setdefault("cascades", {})
    if name not in loaded:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if cascade.empty():
            raise RuntimeError(f"OpenCV Haar cascade {name} is missing")
        loaded[name] = cascade
    return loaded[name]


def _hog() -> cv2.HOGDescriptor:
    """OpenCV's HOG people detector, built once per thread."""
    if not hasattr(_per_thread, "hog"):
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        _per_thread.hog = hog
    return _per_thread.hog


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=4)
def _face_detector(thresholds: tuple[float, float, float]):
    """The MTCNN face detector on the CPU (built once: its networks stay loaded). Imported here: torch is heavy to
    import, and many shots never need it."""
    from cinepipe.face_detector import FaceDetector

    return FaceDetector(thresholds=thresholds)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``count`` (None: left alone), then restore it."""
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def nose_ratio(landmarks: np.ndarray) -> float | None:
    """Where the nose tip lies between the eyes and the mouth, vertically: (nose - eyes) / (mouth - eyes), from
    MTCNN's five landmarks (eyes, nose, mouth corners) of an upright face. About 0.5 for a face seen level; the
    nose, nearer the camera than the eyes and mouth, drops towards the mouth when the camera looks down on the face
    (a high angle) and rises towards the eyes when it looks up. None when the points are not in that order."""
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, dtype=float)
    eyes_y = (left_eye[1] + right_eye[1]) / 2
    span = (mouth_left[1] + mouth_right[1]) / 2 - eyes_y
    return float((nose[1] - eyes_y) / span) if span > 0 else None


def _faces(bgrs: list[np.ndarray], settings: FramingSettings, faces_from: float | None = None,
           faces_below: float | None = None) -> list[tuple[float, float | None] | None]:
    """Per frame, for the largest face (MTCNN from ``min_face_px``, probability at least ``face_min_prob``; only the
    pyramid levels for faces from ``faces_from`` px and below ``faces_below`` px): (box height / frame height,
    :func:`nose_ratio`), or None. The frames (all one size) are searched in one batch."""
    if not bgrs:
        return []
    if len({f.shape for f in bgrs}) > 1:  # a batch holds frames of one size
        return [_faces([f], settings, faces_from, faces_below)[0] for f in bgrs]
    if min(bgrs[0].shape[:2]) < settings.min_face_px:
        return [None] * len(bgrs)
    detector = _face_detector(tuple(settings.face_thresholds))
    found = detector.detect(bgrs, settings.min_face_px, faces_from, faces_below)
    out: list[tuple[float, float | None] | None] = []
    for faces in found:
        faces = [f for f in faces if f.prob >= settings.face_min_prob]
        if faces:
            face = max(faces, key=lambda f: f.height)
            out.append((face.height / bgrs[0].shape[0], nose_ratio(face.landmarks)))
        else:
            out.append(None)
    return out


def _eyes(grey: np.ndarray, settings: FramingSettings) -> float | None:
    """Distance between the centres of a level pair of large eyes / frame height, or None."""
    h = grey.shape[0]
    min_eye = max(8, int(settings.min_eye * h))
    boxes = _cascade("haarcascade_eye.xml").detectMultiScale(grey, scaleFactor=settings.fallback_step, minNeighbors=4,
                                                              minSize=(min_eye, min_eye))
    best = None
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (x1, y1, w1, h1), (x2, y2, w2, h2) = boxes[i], boxes[j]
            c1, c2 = np.array([x1 + w1 / 2, y1 + h1 / 2]), np.array([x2 + w2 / 2, y2 + h2 / 2])
            d = float(np.linalg.norm(c1 - c2))
            size = (w1 + w2) / 2
            if not (0.67 < w1 / w2 < 1.5 and 1.2 * size < d < 2.6 * size):
                continue
            if abs(c1[1] - c2[1]) > 0.45 * d:  # the pair must be roughly level (dutch angles allowed)
                continue
            if best is None or d > best:
                best = d
    return None if best is None else best / h


def _upper_body(grey: np.ndarray, settings: FramingSettings) -> float | None:
    """Height of the largest head-and-shoulders box (``haarcascade_upperbody``) / frame height, or None."""
    boxes = _cascade("haarcascade_upperbody.xml").detectMultiScale(grey, scaleFactor=settings.fallback_step,
                                                                   minNeighbors=3, minSize=(22, 18))
    return None if len(boxes) == 0 else float(max(b[3] for b in boxes)) / grey.shape[0]


def _whole_figure(grey: np.ndarray, settings: FramingSettings) -> float | None:
    """Height of the tallest small whole figure (``haarcascade_fullbody``, boxes up to ``fullbody_max`` of the
    frame height) / frame height, or None."""
    h = grey.shape[0]
    top = max(29, int(settings.fullbody_max * h))
    boxes = _cascade("haarcascade_fullbody.xml").detectMultiScale(grey, scaleFactor=settings.fallback_step,
                                                                  minNeighbors=2, minSize=(14, 28),
                                                                  maxSize=(top // 2, top))
    return None if len(boxes) == 0 else float(max(b[3] for b in boxes)) / h


def _bodies(bgr: np.ndarray, scale: float = 1.0, hog_scale: float = 1.08) -> list[tuple[float, bool]]:
    """(box height / frame height, box inside the frame vertically) of HOG people detections."""
    img = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h = img.shape[0]
    boxes, weights = _hog().detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=hog_scale)
    out = []
    for (x, y, w, bh), wt in zip(boxes, np.ravel(weights) if len(boxes) else []):
        if float(wt) < 0.3:
            continue
        inside = y > 0.01 * h and y + bh < 0.99 * h
        out.append((float(bh) / h, bool(inside)))
    return out


def _agreeing(values: list[float], settings: FramingSettings) -> list[float]:
    """The values within a factor ``size_spread`` of their median."""
    if not values:
        return []
    med = float(np.median(values))
    return [v for v in values if med / settings.size_spread <= v <= med * settings.size_spread]


def framing_from_head(head: float, settings: FramingSettings = None) -> tuple[str, float]:
    """The framing for a head height (fraction of the frame height), and a margin in [0, 1]: the distance in log
    units to the nearest boundary, 1 at a third of a class's width or more."""
    settings = settings or FramingSettings()
    bounds = settings.head_bounds
    index = sum(head < b for b in bounds)
    value = FRAMINGS[index] if len(FRAMINGS) == len(bounds) + 1 else None
    margin = min(abs(math.log(head / b)) for b in bounds) / 0.25
    return value, float(min(1.0, margin))


def _search_order(n: int) -> list[int]:
    """Frame indices from the middle outwards, alternating sides: spread-out frames first."""
    if n <= 2:
        return list(range(n))
    order = [n // 2, 0, n - 1]
    order += [i for i in range(n) if i not in order]
    return order


def label_framing(frames: list[np.ndarray], settings: FramingSettings = FramingSettings(),
                  roll_deg: float | None = None) -> Label:
    """The framing of a shot from a few sample frames (BGR uint8); see the module docstring.

    ``roll_deg``, the camera's roll as the angle labeller measures it (a dutch angle): frames rolled by at least
    ``level_min_roll`` are turned level first, so the detectors, which look for upright faces and people, find the
    subject (most subjects of a dutch-angle shot were missed before).

    Cost control: faces are searched on ``face_batch`` frames first (middle, then first), in one batch, at half
    size, then at full size; the other frames (up to ``face_frames``) only when that found faces that do not yet
    agree. The dearer searches (eyes, head and shoulders, people) run on ``fallback_frames`` frames only, and the
    deepest (an upscaled people search) on one, a second only to confirm what the first found.
    """
    frames = [f for f in frames if f is not None and getattr(f, "size", 0)]
    if not frames:
        return Label(None, 0.0, {"reason": "no frames"}, LABELLER)
    details: dict = {"frames": len(frames)}
    if roll_deg is not None and abs(roll_deg) >= settings.level_min_roll:
        frames = [_rotate(f, -roll_deg) for f in frames]
        details["levelled_deg"] = round(-roll_deg, 1)
    n = len(frames)
    order = _search_order(n)
    need = max(1, min(settings.min_frames, n))
    prepared: dict[int, tuple] = {}

    def prep(i: int) -> tuple:
        """Frame i at the analysis size (bgr), its grey and its grey at half size."""
        if i not in prepared:
            bgr = bgr_at_height(frames[i], settings.analysis_height)
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            half = (max(1, round(grey.shape[1] / 2)), max(1, round(grey.shape[0] / 2)))
            prepared[i] = (bgr, grey, cv2.resize(grey, half, interpolation=cv2.INTER_AREA))
        return prepared[i]

    heads: dict[int, float] = {}
    source: dict[int, str] = {}
    noses: dict[int, float | None] = {}  # per face frame, where its nose lies (the angle labeller's face view)
    searched: list[int] = []

    def decided(minimum: int) -> Label | None:
        values = list(heads.values())
        agree = _agreeing(values, settings)
        if len(agree) < minimum or len(agree) * 2 <= len(values):
            return None
        head = float(np.median(agree))
        value, margin = framing_from_head(head, settings)
        used = list(source.values())
        # the most frequent detector; a tie goes to the one that found its subject first (not to set order)
        details.update(head_frac=round(head, 4), detector=max(used, key=used.count),
                       detections={s: used.count(s) for s in dict.fromkeys(used)}, searched=len(searched))
        ratios = [noses[i] for i in noses if noses[i] is not None and heads[i] in agree]
        if len(ratios) >= need:
            details["nose_ratio"] = round(float(np.median(ratios)), 3)
        support = min(1.0, len(agree) / need) * (len(agree) / max(1, len(values)))
        return Label(value, round(support * (0.5 + 0.5 * margin), 3), details, LABELLER)

    # faces: large ones first (the coarse pyramid levels, a third of the cost) on ``face_batch`` frames, then the
    # small ones (the fine levels) on those of them without a face; the other frames only if a face was found, and
    # only at the levels that found one (a face of another size would not agree with it)
    def record_faces(indices: list[int], band: str) -> set[str]:
        """Search frames ``indices`` for faces in one batch at the ``band`` levels; keep each face's head height.
        Returns {band} if a face was found, else an empty set."""
        limits = {"coarse": (coarse, None), "fine": (None, coarse), "all": (None, None)}[band]
        found = set()
        for i, face in zip(indices, _faces([prep(i)[0] for i in indices], settings, *limits)):
            if face is not None:
                heads[i], source[i], noses[i] = face[0] / settings.face_to_head, "face", face[1]
                found.add(band)
        return found

    coarse = max(settings.face_coarse_px, settings.min_face_px)
    bands = ["coarse", "fine"] if coarse > settings.min_face_px else ["all"]
    for batch in (order[:settings.face_batch], order[settings.face_batch:settings.face_frames]):
        if not batch or (searched and not heads):  # the first frames found no face at all: the others are not searched
            break
        searched += batch
        found: set[str] = set()
        for band in bands:
            left = [i for i in batch if i not in heads]
            if left:
                found |= record_faces(left, band)
                label = decided(need)
                if label:
                    return label
        bands = [band for band in bands if band in found]
    # eyes (an extreme close-up's face overflows the frame), then a head and shoulders, on few frames; the head
    # and shoulders only where a face was found in another frame (it confirms the face's size where the face
    # detector missed it; on its own it decided 3 of 432 reel shots, one wrongly, for a sixth of framing's time)
    with_face = "face" in source.values()
    for k, i in enumerate([i for i in order if i not in heads][:settings.fallback_frames]):
        eye = _eyes(prep(i)[2], settings)
        if eye is not None:
            heads[i], source[i] = eye / settings.eyes_to_head, "eyes"
        elif k < settings.upper_frames and with_face:
            upper = _upper_body(prep(i)[2], settings)
            if upper is not None:
                heads[i], source[i] = upper / settings.upper_to_head, "upper_body"
        label = decided(need)
        if label:
            return label
    label = decided(1) if len(heads) >= 2 else None
    if label:  # fewer frames than wanted agree, none disagree: a weaker label
        return Label(label.value, round(0.6 * label.confidence, 3), label.details, LABELLER)
    # people: a whole figure at least the HOG window's height is a full shot; a figure found only at the
    # smallest window (or only in the upscaled frame) is smaller than that: a long shot
    bodies: list[float] = []
    smallest = 0
    hog_frames = order[:settings.fallback_frames]
    for i in hog_frames:
        bgr = prep(i)[0]
        found = [frac for frac, inside in _bodies(bgr, hog_scale=settings.hog_scale) if inside]
        if not found:
            continue
        best = max(found)
        if best >= settings.hog_min_full:
            bodies.append(best / settings.hog_pad)
        else:
            smallest += 1
    agree = _agreeing(bodies, settings)
    m = len(hog_frames)
    if agree and len(agree) * 2 > m:
        body = float(np.median(agree))
        value = "full_shot" if body >= settings.body_full_min else "long_shot"
        margin = min(1.0, abs(math.log(body / settings.body_full_min)) / 0.25)
        details.update(body_frac=round(body, 4), detector="hog", detections={"hog": len(agree)})
        return Label(value, round((len(agree) / m) * (0.4 + 0.4 * margin), 3), details, LABELLER)
    if smallest * 2 > m:
        details.update(detector="hog_smallest_window", detections={"hog_small": smallest})
        return Label("long_shot", round(0.5 * smallest / m, 3), details, LABELLER)
    # a whole figure below the HOG window (a long shot's): the people detector on the frame upscaled, on few frames
    small_bodies: list[float] = []
    for i in order[:settings.upscaled_frames]:
        found = [frac for frac, inside in _bodies(prep(i)[0], settings.upscale, settings.hog_scale) if inside]
        if not found:
            break  # dear (a quarter of the frame's cost): a second frame only confirms what the first found
        small_bodies.append(max(found) / settings.hog_pad)
    agree = _agreeing(small_bodies, settings)
    if agree and len(agree) * 2 > settings.upscaled_frames and max(agree) < settings.body_full_min:
        body = float(np.median(agree))
        details.update(body_frac=round(body, 4), detector="hog_upscaled", detections={"hog_upscaled": len(agree)})
        return Label("long_shot", 0.6 if len(agree) >= 2 else 0.4, details, LABELLER)
    # a small whole figure: the full-body cascade at the analysis size (its 28 px window is about a tenth of the
    # frame height, the size of a long shot's figure), on the middle frame, confirmed on a second one
    figures = []
    for k, i in enumerate(order[:settings.fullbody_frames]):
        if k >= 2 and not figures:  # nothing in the first two frames
            break
        found = _whole_figure(prep(i)[1], settings)
        if found is not None:
            figures.append(found / settings.fullbody_pad)
            if len(figures) >= 2:
                break
    if figures and max(figures) < settings.body_full_min:
        agree = _agreeing(figures, settings)
        details.update(body_frac=round(float(np.median(figures)), 4), detector="fullbody_cascade",
                       detections={"fullbody": len(figures)})
        return Label("long_shot", 0.5 if len(agree) >= 2 else 0.3, details, LABELLER)
    details["reason"] = "no subject found in enough frames"
    return Label(None, 0.0, details, LABELLER)

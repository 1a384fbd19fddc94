"""The framing and angle labellers: robustness on degenerate input, geometry on synthetic lines, reel accuracy."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cinepipe.angle import LABELLER as ANGLE_LABELLER
from cinepipe.angle import label_angle, pitch_roll_from_vanishing, with_face_view
from cinepipe.framing import LABELLER as FRAMING_LABELLER
from cinepipe.framing import framing_from_head, label_framing, nose_ratio
from cinepipe.label_eval import accuracy, confusion, reel_shot_frames, sample_indices
from cinepipe.labelling import still_labels
from cinepipe.label_types import Label
from cinepipe.taxonomy import TAXONOMY


def _poles(roll_deg: float, size=(270, 480)) -> np.ndarray:
    """Parallel vertical bars on a sky-free background, rotated by -roll (a camera rolled clockwise turns the
    scene anticlockwise in the picture)."""
    h, w = size
    img = np.full((h, w, 3), 90, np.uint8)
    for x in range(40, w - 20, 45):
        cv2.rectangle(img, (x, -50), (x + 12, h + 50), (230, 230, 230), -1)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), roll_deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("labeller", [label_framing, label_angle])
def test_featureless_frames_give_no_confident_label(labeller):
    for frames in ([np.zeros((270, 480, 3), np.uint8)] * 3, [np.full((90, 160, 3), 128, np.uint8)], []):
        label = labeller(frames)
        assert isinstance(label, Label)
        assert label.value is None or label.confidence < 0.5
        assert 0.0 <= label.confidence <= 1.0


def test_single_grey_frame_and_sources():
    frame = np.random.default_rng(0).integers(0, 255, (180, 320), np.uint8)  # grey, noise
    assert label_framing([frame]).source == FRAMING_LABELLER == "auto:framing@6"
    assert label_angle([frame]).source == ANGLE_LABELLER == "auto:angle@5"


@pytest.mark.parametrize("roll", [22.0, -22.0, 0.0])
def test_roll_sign_from_rotated_lines(roll):
    label = label_angle([_poles(roll)])
    assert label.details["roll_deg"] == pytest.approx(roll, abs=3)
    assert label.value == ("eye_level" if roll == 0 else "dutch_angle")


def test_pitch_from_vanishing_point():
    f = 500.0
    up = np.array([0.0, -f / math.tan(math.radians(30)), 1.0])  # above the centre: looking up 30 degrees
    pitch, roll = pitch_roll_from_vanishing(up / np.linalg.norm(up), f)
    assert pitch == pytest.approx(30, abs=0.1) and roll == pytest.approx(0, abs=0.1)
    down = np.array([0.0, f / math.tan(math.radians(60)), 1.0])
    assert pitch_roll_from_vanishing(down, f)[0] == pytest.approx(-60, abs=0.1)


def test_framing_from_head_boundaries():
    assert framing_from_head(1.1)[0] == "extreme_close_up"
    assert framing_from_head(0.42)[0] == "close_up"
    assert framing_from_head(0.24)[0] == "medium_shot"
    assert framing_from_head(0.1)[0] == "full_shot"
    assert framing_from_head(0.025)[0] == "long_shot"


def test_confusion_and_accuracy_count_none_as_wrong():
    values = ("a", "b")
    table = confusion(["a", "a", "b"], ["a", None, "a"], values)
    assert table.loc["a", "a"] == 1 and table.loc["a", "None"] == 1 and table.loc["b", "a"] == 1
    assert accuracy(["a", "a", "b"], ["a", None, "a"]) == pytest.approx(1 / 3)
    assert sample_indices(0, 100, 5, 10, 10) == [12, 31, 50, 68, 87]


# A reel at the size the labellers are tuned for (640x360 rendered, sampled at the proxy's 480x270), on a seed
# used neither for tuning (0, 11) nor for the reported checks (23, 37); 3 films, short shots: ~20 s to render.
LABEL_REEL = {"seed": 5, "films": 3, "shots_per_film": 8, "width": 640, "height": 360, "fps": 24,
              "shot_seconds": (1.5, 2.5)}


@pytest.fixture(scope="session")
def label_reel(tmp_path_factory):
    from cinepipe.reel import generate_reel

    out = tmp_path_factory.mktemp("label_reel")
    generate_reel(out, **LABEL_REEL)
    return out


def _reel_samples(reel, count: int) -> list[tuple[dict, list]]:
    """(truth shot, sample frames) for every shot of a reel, from one decode per film."""
    samples = []
    for video in sorted(reel.glob("reel_*.mp4")):
        film, frames = reel_shot_frames(video, count=count)
        samples += list(zip(film["shots"], frames))
    return samples


@pytest.fixture(scope="session")
def label_reel_samples(label_reel):
    return _reel_samples(label_reel, count=5)


def _reel_accuracy(samples) -> dict[str, float]:
    truth = {"framing": [], "angle": []}
    predicted = {"framing": [], "angle": []}
    for shot, shot_frames in samples:
        framing, angle = still_labels(shot_frames)  # as the pipeline labels: the angle's roll levels framing's
        for family, label in (("framing", framing), ("angle", angle)):
            truth[family].append(shot[family])
            predicted[family].append(label.value)
    for family, values in truth.items():
        print(family, accuracy(values, predicted[family]))
        print(confusion(values, predicted[family], TAXONOMY.values(family)).to_string())
    return {family: accuracy(values, predicted[family]) for family, values in truth.items()}


def test_reel_accuracy(label_reel_samples):
    """Regression floors at the proxy size (see benchmarks/eval_labellers.py for the full measurement; measured
    0.875 framing (0.92 with the Haar cascades of labeller v4) and 0.92 angle on this reel with 5 frames a shot)."""
    measured = _reel_accuracy(label_reel_samples)
    assert measured["framing"] >= FLOORS["framing"]
    assert measured["angle"] >= FLOORS["angle"]


def test_dutch_angle_frames_are_levelled_for_framing(label_reel_samples):
    """The upright face and people detectors miss the subject of a rolled frame: levelled by the roll the angle
    labeller measures, they find it (on this reel's dutch shots: 4 of 4 right, against 2 of 4 unlevelled)."""
    levelled = unlevelled = shots = 0
    for shot, shot_frames in label_reel_samples:
        if shot["angle"] != "dutch_angle":
            continue
        shots += 1
        framing, angle = still_labels(shot_frames)
        assert framing.details.get("levelled_deg") is not None or angle.value != "dutch_angle"
        levelled += framing.value == shot["framing"]
        unlevelled += label_framing(shot_frames).value == shot["framing"]
    assert shots >= 3
    assert levelled > unlevelled, (levelled, unlevelled, shots)


def test_small_reel_accuracy(small_reel):
    """Regression floors on the tests' small reel (320x180: long shots' figures are too small to find)."""
    measured = _reel_accuracy(_reel_samples(small_reel, count=4))
    assert measured["framing"] >= SMALL_FLOORS["framing"]
    assert measured["angle"] >= SMALL_FLOORS["angle"]


FLOORS = {"framing": 0.8, "angle": 0.8}  # measured 0.875, 0.92
SMALL_FLOORS = {"framing": 0.6, "angle": 0.7}  # measured 0.79, 0.75 (4 frames a shot)


def test_nose_ratio_reads_where_the_nose_lies():
    eyes_nose_mouth = [(40, 50), (60, 50), (50, 60), (43, 70), (57, 70)]
    assert nose_ratio(np.array(eyes_nose_mouth)) == pytest.approx(0.5)
    seen_from_above = [(40, 50), (60, 50), (50, 64), (43, 70), (57, 70)]
    assert nose_ratio(np.array(seen_from_above)) == pytest.approx(0.7)
    upside_down = [(40, 70), (60, 70), (50, 60), (43, 50), (57, 50)]
    assert nose_ratio(np.array(upside_down)) is None


@pytest.mark.parametrize("geometry, ratio, expected", [
    ("overhead", 0.66, "high_angle"), ("eye_level", 0.62, "high_angle"), (None, 0.7, "high_angle"),
    ("low_angle", 0.6, "high_angle"), ("overhead", 0.52, "overhead"), ("eye_level", None, "eye_level"),
    ("dutch_angle", 0.7, "dutch_angle"), ("high_angle", 0.5, "high_angle"),
])
def test_a_face_seen_from_above_makes_a_high_angle(geometry, ratio, expected):
    revised = with_face_view(Label(geometry, 0.35, {"pitch_deg": -70.0}, ANGLE_LABELLER), ratio)
    assert revised.value == expected
    if expected != geometry:
        assert revised.details["geometry"] == geometry and revised.details["pitch_deg"] == -70.0
        assert 0.5 <= revised.confidence <= 0.8 and revised.source == ANGLE_LABELLER

"""cinepipe.face_detector: facenet-pytorch's MTCNN networks driven by cinepipe, pyramid levels chosen by face size."""

import itertools

import numpy as np
import pytest

from cinepipe.face_detector import FaceDetector
from cinepipe.media import iter_frames, probe
from conftest import real_clip


@pytest.fixture(scope="module")
def street_frames() -> list[np.ndarray]:
    """Frames of bikes.mp4 (real street footage) at the proxy's size: a man cycling past (1.2-3.0 s), a cyclist
    seen whole (3.0-5.5 s), cars."""
    path = real_clip("bikes.mp4")
    info = probe(path)
    height = int(round(info.height * 480 / info.width / 2)) * 2
    frames = list(itertools.islice(iter_frames(path, 480, height), 0, 140, 10))
    return [f.copy() for f in frames]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_same_faces_as_facenet_pytorch(street_frames, detector):
    """Same networks, stages and resampling: the boxes, probabilities and landmarks are facenet-pytorch's own."""
    from facenet_pytorch import MTCNN

    reference = MTCNN(keep_all=True, min_face_size=12, thresholds=[0.6, 0.7, 0.7], device="cpu")
    found = 0
    for frame in street_frames:
        boxes, probs, marks = reference.detect(np.ascontiguousarray(frame[..., ::-1])[None], landmarks=True)
        ours = detector.detect([frame])[0]
        theirs = [] if boxes[0] is None else sorted(zip(boxes[0], probs[0], marks[0]), key=lambda t: -t[1])
        assert len(ours) == len(theirs)
        for face, (box, prob, mark) in zip(ours, theirs):
            np.testing.assert_allclose(face.box, np.asarray(box, float), atol=1e-3)
            assert face.prob == pytest.approx(float(prob), abs=1e-5)
            np.testing.assert_allclose(face.landmarks, np.asarray(mark, float), atol=1e-3)
        found += len(ours)
    assert found >= 3  # the clip's faces are found at all


def test_coarse_and_fine_levels_split_the_pyramid(detector):
    every = detector.scales(270, 480)
    coarse = detector.scales(270, 480, faces_from=24)
    fine = detector.scales(270, 480, faces_below=24)
    assert sorted(coarse + fine, reverse=True) == every
    assert fine == pytest.approx([1.0, 0.709])
    assert all(12 / s >= 0.95 * 24 for s in coarse)


def test_large_faces_only_search_finds_the_large_faces(street_frames, detector):
    """A search from 24 px finds the large faces a full search finds, at the same size."""
    checked = 0
    for frame in street_frames:
        full = [f for f in detector.detect([frame])[0] if f.prob >= 0.9]
        large = [f for f in detector.detect([frame], faces_from=24)[0] if f.prob >= 0.9]
        if full and max(f.height for f in full) >= 40:
            assert large and max(f.height for f in large) == pytest.approx(max(f.height for f in full), rel=0.15)
            checked += 1
    assert checked >= 1


def test_batches_of_one_size_only(detector):
    assert detector.detect([]) == []
    with pytest.raises(ValueError, match="one size"):
        detector.detect([np.zeros((90, 160, 3), np.uint8), np.zeros((100, 160, 3), np.uint8)])
    assert detector.detect([np.zeros((90, 160, 3), np.uint8)]) == [[]]  # a blank picture: no face, no error

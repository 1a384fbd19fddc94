"""Label-aware augmentation: each transform's label mapping agrees with the motion the estimator measures on the
transformed clip, and a LoRA's training set gathers the clips that show its pattern once transformed."""

import cv2
import numpy as np
import pandas as pd
import pytest

from cinepipe import camera_diff as cd
from cinepipe.clip_augment import TRANSFORMS, Transform, transform_clips, transformed_movement
from cinepipe.clip_data import FrameCache
from cinepipe.taxonomy import TAXONOMY


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    grey = cv2.GaussianBlur((rng.random((160, 160)) * 255).astype(np.uint8), (0, 0), 2.0)
    return np.repeat(grey[:, :, None], 3, axis=2)


def camera_clip(texture, movement: str) -> np.ndarray:
    """A 32 px, 8-frame clip of the textured plane filmed with ``movement`` (a window sliding over it: the
    window moving right is the camera panning right; shrinking is zooming in)."""
    boxes = {
        "pan_right": [(40 + 2 * t, 40, 64) for t in range(8)],
        "pan_left": [(60 - 2 * t, 40, 64) for t in range(8)],
        "tilt_up": [(40, 60 - 2 * t, 64) for t in range(8)],
        "tilt_down": [(40, 40 + 2 * t, 64) for t in range(8)],
        "zoom_in": [(40 + 2 * t, 40 + 2 * t, 68 - 4 * t) for t in range(8)],
        "zoom_out": [(54 - 2 * t, 54 - 2 * t, 40 + 4 * t) for t in range(8)],
    }[movement]
    return np.stack([cv2.resize(texture[y:y + s, x:x + s], (32, 32), interpolation=cv2.INTER_AREA)
                     for x, y, s in boxes])


@pytest.mark.parametrize("movement", ["pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out"])
def test_each_transform_shows_the_movement_it_is_labelled_with(texture, movement):
    clip = camera_clip(texture, movement)
    assert cd.video_motion(clip, 8.0)["label"] == TAXONOMY.image_motion[movement]
    for transform in TRANSFORMS:
        shown = transformed_movement(movement, transform)
        measured = cd.video_motion(transform_clips(clip, transform), 8.0)["label"]
        assert measured == TAXONOMY.image_motion[shown], (movement, transform.name, shown, measured)


def test_transforms_keep_stillness_and_unknowns_and_batches():
    for transform in TRANSFORMS:
        assert transformed_movement("static", transform) == "static"
        assert transformed_movement(None, transform) is None
    assert transformed_movement("truck_left", Transform(mirror=True)) == "truck_right"
    assert transformed_movement("dolly_in", Transform(reverse=True)) == "dolly_out"
    assert transformed_movement("truck_left", Transform(mirror=True, reverse=True)) == "truck_left"
    batch = np.arange(2 * 3 * 2 * 4 * 3, dtype=np.uint8).reshape(2, 3, 2, 4, 3)
    both = transform_clips(batch, Transform(mirror=True, reverse=True))
    assert np.array_equal(both[1, 0, 1, 0], batch[1, 2, 1, 3]) and both.flags["C_CONTIGUOUS"]


def test_a_lora_trains_on_its_own_clips_and_the_transformed_clips_that_show_its_pattern(texture):
    movements = ["pan_left", "pan_right", "pan_right", "zoom_in", "static"]
    table = pd.DataFrame({
        "shot_id": [f"f:{i}" for i in range(5)], "split": ["train"] * 4 + ["val"],
        "framing": ["close_up"] * 5, "angle": ["eye_level"] * 5, "movement": movements,
        "caption": [f"caption {i}" for i in range(5)]})
    frames = np.stack([camera_clip(texture, m if m != "static" else "pan_left") for m in movements])
    cache = FrameCache(frames, table["shot_id"].tolist(), {}, None, False)
    clips, captions, counts = cd.lora_training_set(table, "pan_left", cache, augment=True)
    # its own clip; the two pan_right clips mirrored and reversed; its own clip mirrored and reversed
    assert counts == {"identity": 1, "mirror": 2, "reverse": 2, "mirror+reverse": 1}
    assert len(clips) == len(captions) == 6 and captions[0] == "caption 0"
    assert all("pans left" in c or "pan left" in c or "panning left" in c for c in captions[1:]), captions
    assert all(cd.video_motion(c, 8.0)["label"] == "pan-" for c in clips)
    plain, _, counts = cd.lora_training_set(table, "pan_left", cache, augment=False)
    assert counts == {"identity": 1} and len(plain) == 1
    framing, _, counts = cd.lora_training_set(table, "close_up", cache, augment=True)
    assert set(counts.values()) == {5} and len(framing) == 20  # framing survives every transform

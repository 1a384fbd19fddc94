"""Label-aware augmentation of training clips: the horizontal mirror and time reversal, and what each does to a
shot's cinematic pattern.

Both transforms are exact for the camera: a pan to the left, mirrored, is a pan to the right (truck likewise);
tilt, zoom and dolly keep their direction in the mirror. Played backwards, every movement becomes its opposite
(pan_left <-> pan_right, tilt_up <-> tilt_down, zoom_in <-> zoom_out, dolly_in <-> dolly_out, truck_left <->
truck_right); a static shot stays static. Framing and angle survive both (a dutch angle's roll changes sign, it is
still a dutch angle). So the clips of a movement pattern's opposite, reversed, are positives of the pattern too:
each LoRA trains on up to four times the clips a small dataset labels with its pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinepipe.taxonomy import TAXONOMY

_MIRRORED = {"pan_left": "pan_right", "pan_right": "pan_left", "truck_left": "truck_right",
             "truck_right": "truck_left"}


@dataclass(frozen=True)
class Transform:
    mirror: bool = False  # flip left and right
    reverse: bool = False  # play backwards
    # CameraCLIP training only: the clip's generator-format view (a short window at the generator's frame rate and
    # resolution, decoded separately: see ``cinepipe.clip_synthetic``) instead of frames spread over the clip
    window: bool = False

    @property
    def name(self) -> str:
        return "+".join(n for n, on in (("mirror", self.mirror), ("reverse", self.reverse), ("window", self.window))
                        if on) or "identity"


TRANSFORMS = (Transform(), Transform(mirror=True), Transform(reverse=True), Transform(mirror=True, reverse=True))


def transformed_movement(movement: str | None, transform: Transform) -> str | None:
    """The movement a clip labelled ``movement`` shows after ``transform`` (None and ``static`` stay)."""
    if transform.mirror:
        movement = _MIRRORED.get(movement, movement)
    if transform.reverse:
        movement = TAXONOMY.opposite(movement) or movement
    return movement


def transform_clips(frames: np.ndarray, transform: Transform) -> np.ndarray:
    """The transform of uint8 clips [N, T, H, W, C] (or one clip [T, H, W, C])."""
    time_axis, width_axis = frames.ndim - 4, frames.ndim - 2
    if transform.reverse:
        frames = np.flip(frames, axis=time_axis)
    if transform.mirror:
        frames = np.flip(frames, axis=width_axis)
    return np.ascontiguousarray(frames)

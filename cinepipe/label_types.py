"""What the automatic labellers (framing, angle) share: their result type and how a frame is brought to their
analysis size.

A label names one taxonomy value of one family, or ``None`` when the labeller cannot tell; ``confidence`` is in
[0, 1] (0 for ``None``); ``details`` holds the measurements behind the decision (plain JSON-able values) and
``source`` says which labeller and version produced it, e.g. ``"auto:framing@1"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Label:
    value: str | None
    confidence: float
    details: dict = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "confidence": round(float(self.confidence), 4), "details": self.details,
                "source": self.source}


def bgr_at_height(frame: np.ndarray, height: int) -> np.ndarray:
    """A frame as BGR (grey is expanded), scaled to ``height`` rows with its aspect kept."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    if h != height:
        frame = cv2.resize(frame, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    return frame

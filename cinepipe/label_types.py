"""The result type the automatic labellers (framing, angle) share.

A label names one taxonomy value of one family, or ``None`` when the labeller cannot tell; ``confidence`` is in
[0, 1] (0 for ``None``); ``details`` holds the measurements behind the decision (plain JSON-able values) and
``source`` says which labeller and version produced it, e.g. ``"auto:framing@1"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Label:
    value: str | None
    confidence: float
    details: dict = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "confidence": round(float(self.confidence), 4), "details": self.details,
                "source": self.source}

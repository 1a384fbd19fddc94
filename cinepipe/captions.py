"""Captions in the paper's style, from a shot's labels, and the per-pattern prompts used for generation.

Several templates are used, chosen by a hash of the shot id (so a dataset is reproducible), so that a text encoder
trained on the captions does not learn one sentence. Values that are unknown are left out of the caption.
"""

from __future__ import annotations

import hashlib

from cinepipe.taxonomy import TAXONOMY

SUBJECT = "a person"

# {framing}: "a close-up", {angle}: "from a high angle", {movement}: "the camera pans left"
TEMPLATES = (
    "{Framing} of {subject} {angle}; {movement}.",
    "{Movement} in {framing} of {subject} {angle}.",
    "Shot {angle}: {framing} of {subject}, and {movement}.",
    "{Framing} {angle} showing {subject} while {movement}.",
    "A film shot: {framing} of {subject}, {angle}, {movement}.",
    "Cinematography: {movement}; {framing} {angle} of {subject}.",
)

# the same without the movement, for shots whose movement is unknown (a caption must not claim a static camera)
TEMPLATES_NO_MOVEMENT = (
    "{Framing} of {subject} {angle}.",
    "A shot {angle}: {framing} of {subject}.",
    "{Framing} {angle} showing {subject}.",
    "A film shot: {framing} of {subject}, {angle}.",
    "Cinematography: {framing} {angle} of {subject}.",
    "{Framing} of {subject}, filmed {angle}.",
)

# Held-out scene descriptions for generation prompts (never used in training captions).
PROMPT_SCENES = (
    "a woman standing in a courtyard",
    "a man waiting beside a brick wall",
    "a child in a park at dusk",
    "an old man on an empty street",
)


def _phrase(value: str | None) -> str | None:
    if not value or value == "unknown":
        return None
    return TAXONOMY.phrases.get(value, value.replace("_", " "))


def caption(shot_id: str, framing: str | None, angle: str | None, movement: str | None,
            subject: str = SUBJECT, seed: int = 0) -> str:
    """A caption for one shot; the template is picked by a hash of (seed, shot_id). Unknown values (None) are
    left out: no framing reads "a shot", no angle is omitted, no movement uses a template without one."""
    digest = hashlib.sha256(f"{seed}:{shot_id}".encode()).digest()
    return caption_from_template(digest[0] % len(TEMPLATES), framing, angle, movement, subject)


def caption_from_template(index: int, framing: str | None, angle: str | None, movement: str | None,
                          subject: str = SUBJECT) -> str:
    """The caption from template ``index`` (0 .. len(TEMPLATES) - 1)."""
    f, a, m = _phrase(framing), _phrase(angle), _phrase(movement)
    if f is None:
        f = "a shot"
    if a is None:
        a = ""
    template = TEMPLATES[index] if m is not None else TEMPLATES_NO_MOVEMENT[index % len(TEMPLATES_NO_MOVEMENT)]
    m = m or ""
    text = template.format(framing=f, Framing=f[0].upper() + f[1:], angle=a, movement=m,
                           Movement=m[:1].upper() + m[1:], subject=subject)
    text = " ".join(text.split())
    for before, after in ((" ;", ";"), (" ,", ","), (" .", "."), (" :", ":"), (",,", ","), (", filmed.", "."),
                          (",.", ".")):
        text = text.replace(before, after)
    return text


def pattern_prompt(pattern: str, scene: str = PROMPT_SCENES[0]) -> str:
    """The generation prompt for one pattern, e.g. ``"a woman standing in a courtyard, the camera zooms in"``."""
    return f"{scene}, {_phrase(pattern)}"


def pattern_prompts(pattern: str) -> list[str]:
    return [pattern_prompt(pattern, scene) for scene in PROMPT_SCENES]

"""Captions in the paper's style, from a shot's labels, and the per-pattern prompts used for generation.

Several templates are used, chosen by a hash of the shot id (so a dataset is reproducible), so that a text encoder
trained on the captions does not learn one sentence. Values that are unknown are left out of the caption.
"""

from __future__ import annotations

import hashlib

from cinepipe.taxonomy import STATIC, TAXONOMY

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
    """A caption for one shot; the template is picked by a hash of (seed, shot_id)."""
    f, a, m = _phrase(framing), _phrase(angle), _phrase(movement)
    if f is None:
        f = "a shot"
    if a is None:
        a = ""
    if m is None:
        m = "the camera moves" if movement == "unknown" else TAXONOMY.phrases.get(STATIC, "the camera is static")
    digest = hashlib.sha256(f"{seed}:{shot_id}".encode()).digest()
    template = TEMPLATES[digest[0] % len(TEMPLATES)]
    text = template.format(framing=f, Framing=f[0].upper() + f[1:], angle=a, movement=m,
                           Movement=m[0].upper() + m[1:], subject=subject)
    return " ".join(text.replace(" ;", ";").replace(" ,", ",").replace(" .", ".").replace(" :", ":").split())


def pattern_prompt(pattern: str, scene: str = PROMPT_SCENES[0]) -> str:
    """The generation prompt for one pattern, e.g. ``"a woman standing in a courtyard, the camera zooms in"``."""
    return f"{scene}, {_phrase(pattern)}"


def pattern_prompts(pattern: str) -> list[str]:
    return [pattern_prompt(pattern, scene) for scene in PROMPT_SCENES]

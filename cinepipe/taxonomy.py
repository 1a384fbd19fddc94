"""The cinematic taxonomy (framing, angle, movement), loaded from ``data/taxonomy.json``.

Everything that depends on the list of patterns (Dagster partitions, the reel's shot plans, the labellers'
outputs, captions and prompts) reads it from here, so changing the data file changes them together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Taxonomy:
    families: dict[str, tuple[str, ...]]  # family -> pattern values (without the family's 'none' value)
    none_values: dict[str, str | None]  # family -> the value that is not a pattern (movement: 'static')
    opposites: dict[str, str]  # symmetric: pan_left <-> pan_right, ...
    phrases: dict[str, str]
    image_motion: dict[str, str]  # movement -> its signed image-motion component ("pan-", "zoom+", ...)

    @property
    def patterns(self) -> tuple[str, ...]:
        """All patterns, family by family, in file order (the 20 LoRA partitions by default)."""
        return tuple(p for values in self.families.values() for p in values)

    def values(self, family: str) -> tuple[str, ...]:
        """Every value a shot may take in ``family``: the patterns plus the 'none' value if the family has one."""
        none = self.none_values[family]
        return self.families[family] + ((none,) if none else ())

    def family_of(self, value: str) -> str:
        for family in self.families:
            if value in self.values(family):
                return family
        raise KeyError(f"unknown pattern {value!r}")

    def opposite(self, pattern: str) -> str | None:
        return self.opposites.get(pattern)


@lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    raw = json.loads(resources.files("cinepipe").joinpath("data/taxonomy.json").read_text())
    families = {name: tuple(spec["values"]) for name, spec in raw["families"].items()}
    none_values = {name: spec.get("none") for name, spec in raw["families"].items()}
    opposites = dict(raw.get("opposites", {}))
    opposites.update({b: a for a, b in list(opposites.items())})
    image_motion = {k: v for k, v in raw.get("image_motion", {}).items() if not k.startswith("_")}
    tax = Taxonomy(families, none_values, opposites, dict(raw.get("phrases", {})), image_motion)
    seen: set[str] = set()
    for family in families:
        for value in tax.values(family):
            if value in seen:
                raise ValueError(f"taxonomy.json: value {value!r} appears in more than one family")
            seen.add(value)
    return tax


TAXONOMY = load_taxonomy()
FAMILIES: tuple[str, ...] = tuple(TAXONOMY.families)
PATTERNS: tuple[str, ...] = TAXONOMY.patterns
STATIC: str = TAXONOMY.none_values["movement"] or "static"

"""Train/val/test splits by film: no film in two splits, deterministic from a seed, stable as films are added.

A film keeps the split it was given in the previous dataset version. New films are placed one at a time, in the
order of a seeded hash of their ids, into the split furthest below its target share (counted in films); when only
as many new films are left as there are empty splits, each goes to an empty split, so three films already fill
train, val and test. The assignment never depends on the order films arrived in.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _key(seed: int, film_id: str) -> str:
    return hashlib.sha256(f"{seed}:{film_id}".encode()).hexdigest()


def assign_splits(film_ids: list[str], previous: dict[str, str] | None = None, seed: int = 0,
                  fractions: dict[str, float] | None = None) -> dict[str, str]:
    """film_id -> split. ``previous`` (film_id -> split) is kept for every film it names."""
    fractions = fractions or DEFAULT_FRACTIONS
    total = sum(fractions.values())
    share = {s: fractions.get(s, 0.0) / total for s in SPLITS}
    out = {f: s for f, s in (previous or {}).items() if f in set(film_ids)}
    counts = {s: sum(1 for v in out.values() if v == s) for s in SPLITS}
    new = sorted((f for f in film_ids if f not in out), key=lambda f: _key(seed, f))
    for i, film in enumerate(new):
        n = len(out) + 1
        empty = [s for s in SPLITS if share[s] > 0 and counts[s] == 0]
        if empty and len(new) - i <= len(empty):
            best = empty[-1]  # just enough films left to give every split one: test first, then val
        else:  # the split furthest below its target once this film is placed; ties by the larger share
            best = max(SPLITS, key=lambda s: (share[s] * n - counts[s], share[s]) if share[s] > 0 else (-1e9, 0))
        out[film] = best
        counts[best] += 1
    return out

"""The landing folder: which films are in it, identified by content hash.

Hashing is the costly part, so an index keyed by (path, size, mtime) remembers every file already hashed: a file is
hashed once, a renamed file is hashed again but maps to the same ``film_id`` (same content, same film), and a file
whose content changed gets a new id. Files still being copied (modified in the last ``settle_s`` seconds), hidden
files and partial downloads are skipped until they settle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cinepipe.media import film_id_for, write_json_atomic

_PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".tmp", ".download")
SKIP_NAMES = ("reel.json",)  # the reel's manifest
SKIP_SUFFIXES = (".truth.json",)  # ground truth written beside the reel's films


@dataclass(frozen=True)
class LandingFile:
    path: str
    film_id: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _candidates(folder: Path, settle_s: float) -> list[os.DirEntry]:
    now = time.time()
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or name.endswith(_PARTIAL_SUFFIXES) or name in SKIP_NAMES or \
                name.endswith(SKIP_SUFFIXES) or not entry.is_file():
            continue
        if now - entry.stat().st_mtime < settle_s:
            continue
        out.append(entry)
    return out


def scan_landing(folder: str | os.PathLike, index_path: str | os.PathLike | None = None,
                 settle_s: float = 0.0) -> list[LandingFile]:
    """Every settled file in ``folder`` with its film id; the index (if given) is read and updated atomically."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    index: dict[str, list] = {}
    if index_path and os.path.exists(index_path):
        try:
            index = json.loads(Path(index_path).read_text())
        except (OSError, ValueError):
            index = {}
    files, changed = [], False
    for entry in _candidates(folder, settle_s):
        stat = entry.stat()
        path = os.path.abspath(entry.path)
        known = index.get(path)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            film_id = known[2]
        else:
            film_id = film_id_for(path)
            index[path] = [stat.st_size, stat.st_mtime_ns, film_id]
            changed = True
        files.append(LandingFile(path, film_id, stat.st_size, stat.st_mtime_ns))
    if index_path and changed:
        write_json_atomic(index_path, index)
    return files


def unique_films(files: list[LandingFile]) -> dict[str, LandingFile]:
    """film_id -> its first file (copies of the same content are one film)."""
    out: dict[str, LandingFile] = {}
    for f in files:
        out.setdefault(f.film_id, f)
    return out

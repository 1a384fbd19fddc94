"""Ingestion cost: probe + proxy + shot split of one film, against a plain ffmpeg decode and PySceneDetect's CLI.

    python benchmarks/bench_ingest.py                 # a 60 s 720p film of the built-in reel (rendered once)
    python benchmarks/bench_ingest.py --film FILE     # any film

Prints the wall times, measured in one run, and the two ratios (targets: <= 1.5x the plain decode,
<= 1.0x `scenedetect detect-adaptive`). Each timing is the best of --repeat runs, the three
measurements taking turns.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cinepipe.ffmpeg_tools import ffmpeg_exe
from cinepipe.media import probe
from cinepipe.shots import split_film


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_interleaved(repeat: int, fns: dict) -> dict[str, float]:
    """The best of ``repeat`` timings of each function, run in turn (a, b, c, a, b, c, ...), so that a change in
    the machine's load during the run weighs on all of them alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], timed(fn))
    return best


def reel_film(cache: Path) -> Path:
    from cinepipe.reel import generate_reel

    films = generate_reel(cache, seed=123, films=1, shots_per_film=15, width=1280, height=720, fps=24,
                          shot_seconds=(3.6, 4.4), workers=2)
    return Path(films[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--film")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "cinepipe-bench-reel"))
    args = parser.parse_args()
    film = Path(args.film) if args.film else reel_film(Path(args.cache))
    info = probe(film)
    print(f"film: {film} ({info.width}x{info.height}, {info.duration_s:.1f} s, {info.fps:g} fps, {info.codec})")

    work = Path(tempfile.mkdtemp(prefix="cinepipe-bench-"))
    timings = {}

    def ours():
        t0 = time.perf_counter()
        probed = probe(film)
        t1 = time.perf_counter()
        _, shots = split_film(probed, work / "proxy.mp4")  # one decode: proxy and shot detection together
        t2 = time.perf_counter()
        timings.update(probe=t1 - t0, proxy_and_shots=t2 - t1, n=len(shots.shots))

    scenedetect = shutil.which("scenedetect") or str(Path(sys.executable).with_name("scenedetect"))
    best = best_interleaved(args.repeat, {
        "decode": lambda: subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(film), "-f", "null",
                                          "-"], check=True),
        "ours": ours,
        "scenedetect": lambda: subprocess.run([scenedetect, "-q", "-i", str(film), "detect-adaptive"], check=True,
                                              capture_output=True),
    })
    decode, pipeline, sd = best["decode"], best["ours"], best["scenedetect"]
    shutil.rmtree(work, ignore_errors=True)

    print(f"plain ffmpeg decode            {decode:7.2f} s")
    print(f"scenedetect detect-adaptive    {sd:7.2f} s")
    print(f"cinepipe probe+proxy+shots     {pipeline:7.2f} s  (probe {timings['probe']:.2f}, "
          f"proxy+shots {timings['proxy_and_shots']:.2f}; {timings['n']} shots)")
    print(f"ratio to plain decode          {pipeline / decode:7.2f}x  (target <= 1.5x)")
    print(f"ratio to scenedetect           {pipeline / sd:7.2f}x  (target <= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

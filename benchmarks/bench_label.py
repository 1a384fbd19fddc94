"""Labelling throughput per shot, against decoding the same shots once.

    python benchmarks/bench_label.py                 # the 60 s 720p reel film of bench_ingest (rendered once)
    python benchmarks/bench_label.py --film FILE     # any film

The labelling pass (``cinepipe.labelling.label_shots``) decodes the film's proxy once (the decoder's I420 planes)
and analyses the decoded frames for everything: camera motion on the luma of every fourth frame, framing and angle
on a few sample frames per shot. Its time is compared, in one run, with a plain ffmpeg decode of the same shots from
the film (``ffmpeg -i F -f null -``): target <= 1.5x. The ratio to decoding the proxy alone (the cheapest decode
there is) is printed too, and the time framing and angle take on their two worker threads (summed; they overlap
each other and the next shot's motion tracking, so on two cores they run slower than alone).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import best_interleaved, reel_film  # noqa: E402

import cinepipe.labelling as labelling  # noqa: E402
from cinepipe.ffmpeg_tools import ffmpeg_exe  # noqa: E402
from cinepipe.media import iter_frames, probe  # noqa: E402
from cinepipe.shots import split_film  # noqa: E402


def profiled(fn):
    """Wrap a labeller so its total time is counted."""
    total = [0.0]

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return wrapper, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--film")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "cinepipe-bench-reel"))
    args = parser.parse_args()
    film = Path(args.film) if args.film else reel_film(Path(args.cache))
    probed = probe(film)
    work = Path(tempfile.mkdtemp(prefix="cinepipe-bench-label-"))
    proxy, shots = split_film(probed, work / "proxy.mp4")
    print(f"film: {film} ({probed.width}x{probed.height}, {probed.duration_s:.1f} s, {len(shots.shots)} shots); "
          f"proxy {proxy.width}x{proxy.height}")

    framing, framing_s = profiled(labelling.label_framing)
    angle, angle_s = profiled(labelling.label_angle)
    labelling.label_framing, labelling.label_angle = framing, angle
    last = {}

    def label():
        framing_s[0] = angle_s[0] = 0.0
        last["out"] = labelling.label_shots(proxy, shots.shots, probed.film_id)
        last["framing"], last["angle"] = framing_s[0], angle_s[0]

    best = best_interleaved(args.repeat, {
        "decode_film": lambda: subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(film), "-f",
                                               "null", "-"], check=True),
        "decode_proxy": lambda: sum(1 for _ in iter_frames(proxy.path, proxy.width, proxy.height)),
        "label": label,
    })
    shutil.rmtree(work, ignore_errors=True)
    n = len(shots.shots)
    lab, film_decode, proxy_decode = best["label"], best["decode_film"], best["decode_proxy"]
    print(f"decode the film's shots once   {film_decode:7.2f} s  ({1000 * film_decode / n:6.1f} ms per shot)")
    print(f"decode the proxy once          {proxy_decode:7.2f} s")
    print(f"label every shot               {lab:7.2f} s  ({1000 * lab / n:6.1f} ms per shot; framing "
          f"{last['framing']:.2f} s, angle {last['angle']:.2f} s summed over two worker threads, overlapping motion "
          "and decode)")
    print(f"ratio to decoding the shots    {lab / film_decode:7.2f}x  (target <= 1.5x)")
    print(f"ratio to decoding the proxy    {lab / proxy_decode:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

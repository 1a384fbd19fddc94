"""Shot splitting against the built-in reel's exact ground truth: cut and fade F1 >= 0.98."""

import json
from pathlib import Path

from cinepipe.media import count_frames, probe
from cinepipe.shots import split_film


def match(found: list[tuple[int, str]], truth: list[dict], tolerance: dict[str, int]):
    """Greedy one-to-one matching of detected to true boundaries; a match needs the same kind and closeness."""
    unmatched = list(truth)
    tp = 0
    for frame, kind in found:
        best = None
        for t in unmatched:
            if t["kind"] == kind and abs(t["frame"] - frame) <= tolerance[kind]:
                if best is None or abs(t["frame"] - frame) < abs(best["frame"] - frame):
                    best = t
        if best is not None:
            unmatched.remove(best)
            tp += 1
    return tp, len(found) - tp, len(unmatched)


def test_reel_cut_and_fade_f1(small_reel, tmp_path):
    films = sorted(Path(small_reel).glob("*.mp4"))
    assert films
    totals = {"cut": [0, 0, 0], "fade": [0, 0, 0]}
    for film in films:
        truth = json.loads(film.with_suffix(".truth.json").read_text())
        probed = probe(film)
        proxy, shots = split_film(probed, tmp_path / f"{film.stem}.mp4")
        assert proxy.frames == truth["frames"] == count_frames(proxy.path)  # the frames delivered = those written
        found = [(s["start_frame"], s["transition_in"]) for s in shots.shots[1:]]
        fps = truth["fps"]
        for kind in totals:
            # a fade's boundary is the middle of its black segment: allow a quarter of a second either way
            tol = {"cut": 1, "fade": max(2, round(0.25 * fps))}
            tp, fp, fn = match([f for f in found if f[1] == kind],
                               [b for b in truth["boundaries"] if b["kind"] == kind], tol)
            for i, v in enumerate((tp, fp, fn)):
                totals[kind][i] += v
    report = {}
    for kind, (tp, fp, fn) in totals.items():
        report[kind] = 2 * tp / max(1, 2 * tp + fp + fn)
    tp, fp, fn = (sum(v[i] for v in totals.values()) for i in range(3))
    f1 = 2 * tp / max(1, 2 * tp + fp + fn)
    assert totals["cut"][0] > 0 and totals["fade"][0] > 0, totals
    assert f1 >= 0.98, (f1, report, totals)

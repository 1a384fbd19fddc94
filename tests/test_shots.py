import json
import subprocess
import sys


from cinepipe.ingest import check_shot_coverage
from cinepipe.media import make_proxy, probe
from cinepipe.shots import ShotSettings, split_shots
from conftest import real_clip


def shots_of(path, tmp_path, settings=ShotSettings()):
    probed = probe(path)
    proxy = make_proxy(probed, tmp_path / f"{probed.film_id}.mp4")
    return split_shots(probed.film_id, proxy, settings), proxy


def boundaries(shot_list):
    return [(s["start_frame"], s["transition_in"]) for s in shot_list.shots[1:]]


def test_bikes_hard_cuts_within_one_frame(tmp_path):
    shot_list, _ = shots_of(real_clip("bikes.mp4"), tmp_path)
    found = boundaries(shot_list)
    truth = [30, 76, 137, 187, 242]
    assert len(found) == len(truth), found
    for (frame, kind), expected in zip(found, truth):
        assert kind == "cut" and abs(frame - expected) <= 1, found


def test_testvideo_cuts_and_fades(tmp_path):
    shot_list, _ = shots_of(real_clip("testvideo.mp4"), tmp_path)
    found = boundaries(shot_list)
    cuts, fades = [30, 180, 394], [15, 198, 377]
    for expected in cuts:
        assert any(kind == "cut" and abs(f - expected) <= 1 for f, kind in found), (expected, found)
    for frame, kind in found:
        if any(abs(frame - c) <= 1 for c in cuts):
            continue
        # any other boundary only where a fade is, and called a fade
        assert kind == "fade" and any(abs(frame - f) <= 15 for f in fades), (frame, kind, found)


def test_bigbuckbunny_is_one_shot(tmp_path):
    shot_list, proxy = shots_of(real_clip("bigbuckbunny.mp4"), tmp_path)
    assert len(shot_list.shots) == 1
    assert shot_list.shots[0]["end_frame"] == proxy.frames == 132


def test_odd_films_split_at_their_cuts(tmp_path, odd_films):
    for name in ("base", "rotated", "anamorphic", "matroska"):
        shot_list, _ = shots_of(odd_films[name], tmp_path)
        assert [round(s["start_s"], 2) for s in shot_list.shots] == [0.0, 1.0, 2.0], name
    delayed, _ = shots_of(odd_films["delayed"], tmp_path)
    assert [round(s["start_s"], 2) for s in delayed.shots] == [0.5, 1.5, 2.5]
    vfr, _ = shots_of(odd_films["vfr"], tmp_path)  # frame 25 (t=1.00) was dropped: the cut shows at 1.04
    assert [round(s["start_s"], 2) for s in vfr.shots] == [0.0, 1.04, 2.0]


def test_shot_table_and_coverage_checks(tmp_path, odd_films):
    shot_list, proxy = shots_of(odd_films["base"], tmp_path)
    df = shot_list.to_frame()
    assert list(df["shot_id"]) == [f"{shot_list.film_id}:{i}" for i in range(3)]
    checks = check_shot_coverage(df, proxy, 0.25)
    assert all(passed for passed, _ in checks.values()), checks
    # the checks can fail: a gap, an overlap, a too-short shot, no shots
    gap = df.copy()
    gap.loc[1, "start_frame"] += 2
    assert not check_shot_coverage(gap, proxy, 0.25)["covers_film"][0]
    overlap = df.copy()
    overlap.loc[2, "start_frame"] -= 2
    assert not check_shot_coverage(overlap, proxy, 0.25)["covers_film"][0]
    assert not check_shot_coverage(df, proxy, 1.5)["min_shot_length"][0]
    assert not check_shot_coverage(df.iloc[0:0], proxy, 0.25)["has_shots"][0]


def test_cli_shots_contract():
    path = real_clip("bikes.mp4")
    proc = subprocess.run([sys.executable, "-m", "cinepipe.cli", "shots", str(path), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["film_id"] and len(out["shots"]) == 6
    first, last = out["shots"][0], out["shots"][-1]
    assert first["index"] == 0 and first["start_s"] == 0.0 and first["transition_in"] == "start"
    assert abs(last["end_s"] - 10.0) < 1e-6
    assert {s["transition_in"] for s in out["shots"][1:]} == {"cut"}
    for a, b in zip(out["shots"], out["shots"][1:]):
        assert a["end_s"] == b["start_s"]

"""Label sources and precedence, human label files, reel truth matching, the dataset's schema, version and reports."""

import json

import pandas as pd
import pytest

from cinepipe import dataset as c2k
from cinepipe.labels import (LabelFileError, read_human_labels, reel_truth_labels, resolve, resolve_human_labels,
                             shots_covered, wide)

SHOTS = pd.DataFrame({"shot_id": ["f1:0", "f1:1", "f1:2", "f2:0"], "film_id": ["f1", "f1", "f1", "f2"],
                      "start_s": [0.0, 2.0, 5.0, 0.0], "end_s": [2.0, 5.0, 6.0, 3.0]})
NAMES = {"f1": ["one.mp4"], "f2": ["two.mkv"]}


def test_time_ranges_cover_shots_by_half_their_duration():
    assert shots_covered(SHOTS[SHOTS.film_id == "f1"], 0.0, 2.0) == [0]
    assert shots_covered(SHOTS[SHOTS.film_id == "f1"], 1.0, 3.4) == [0]  # covers half of shot 0, 1.4/3 of shot 1
    assert shots_covered(SHOTS[SHOTS.film_id == "f1"], 1.0, 3.6) == [0, 1]
    assert shots_covered(SHOTS[SHOTS.film_id == "f1"], 9.0, 10.0) == []


def test_human_labels_by_range_and_by_shot_id(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("film,start_s,end_s,framing,movement,confidence\n"
                    "one.mp4,2,5,close_up,pan left,0.9\n"
                    "two,0,3,,static,\n"
                    "nobody,0,1,long_shot,,\n")
    rows, unmatched = resolve_human_labels(read_human_labels(path), SHOTS, NAMES)
    got = {(r.shot_id, r.family): (r.value, r.confidence, r.source) for r in rows.itertuples()}
    assert got == {("f1:1", "framing"): ("close_up", 0.9, "human:people.csv"),
                   ("f1:1", "movement"): ("pan_left", 0.9, "human:people.csv"),
                   ("f2:0", "movement"): ("static", 1.0, "human:people.csv")}
    assert unmatched == 1

    by_id = tmp_path / "ids.parquet"
    pd.DataFrame({"shot_id": ["f1:2"], "angle": ["low_angle"]}).to_parquet(by_id)
    rows, unmatched = resolve_human_labels(read_human_labels(by_id), SHOTS, NAMES)
    assert rows[["shot_id", "family", "value", "source"]].values.tolist() == [
        ["f1:2", "angle", "low_angle", "human:ids.parquet"]]
    assert unmatched == 0


@pytest.mark.parametrize("text, reason", [
    ("film,start_s,end_s,framing\none,0,1,wide\n", "row 2: 'wide' is not a framing value"),
    ("film,start_s,end_s,colour\none,0,1,red\n", "no label column"),
    ("framing\nclose_up\n", "needs a shot_id column, or film, start_s and end_s"),
    ("film,start_s,end_s,framing\none,3,1,close_up\n", "row 2: needs a film and a time range"),
    ("film,start_s,end_s,framing\none,a,1,close_up\n", "row 2: start_s/end_s are not numbers"),
    ("shot_id,angle,confidence\nf1:0,overhead,2\n", "row 2: confidence 2.0 is outside [0, 1]"),
])
def test_bad_human_label_files_name_the_file_row_and_reason(tmp_path, text, reason):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelFileError) as err:
        read_human_labels(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_unreadable_and_missing_label_files(tmp_path):
    garbage = tmp_path / "labels.parquet"
    garbage.write_bytes(b"\x00\x01not parquet")
    with pytest.raises(LabelFileError, match="not a readable CSV or Parquet"):
        read_human_labels(garbage)
    with pytest.raises(LabelFileError, match="no such file"):
        read_human_labels(tmp_path / "absent.csv")


def test_precedence_human_then_truth_then_auto_and_unknown_never_hides_a_value():
    labels = pd.DataFrame([
        ("s", "framing", "close_up", 0.6, "auto:framing@1"),
        ("s", "framing", "medium_shot", 1.0, "reel-truth"),
        ("s", "framing", "full_shot", 1.0, "human:a.csv"),
        ("s", "angle", "low_angle", 0.7, "auto:angle@1"),
        ("s", "angle", None, 0.0, "model:clip@2"),
        ("s", "movement", None, 0.0, "auto:motion@1"),
    ], columns=["shot_id", "family", "value", "confidence", "source"])
    out = wide(resolve(labels)).iloc[0]
    assert (out["framing"], out["framing_source"]) == ("full_shot", "human:a.csv")
    assert (out["angle"], out["angle_source"]) == ("low_angle", "auto:angle@1")
    assert out["movement"] is None and out["movement_source"] == "auto:motion@1"


def test_reel_truth_matches_detected_shots_by_time(tmp_path):
    truth = {"shots": [{"start_s": 0.0, "end_s": 2.0, "framing": "long_shot", "angle": "eye_level",
                        "movement": "static"},
                       {"start_s": 2.0, "end_s": 6.0, "framing": "close_up", "angle": "dutch_angle",
                        "movement": "zoom_in"}]}
    path = tmp_path / "film.truth.json"
    path.write_text(json.dumps(truth))
    rows = reel_truth_labels(path, SHOTS[SHOTS.film_id == "f1"])
    got = {(r.shot_id, r.family): r.value for r in rows.itertuples()}
    assert got[("f1:0", "movement")] == "static"
    assert got[("f1:1", "angle")] == "dutch_angle" and got[("f1:2", "framing")] == "close_up"
    assert set(rows["source"]) == {"reel-truth"}


def _table(n_films=3, framing="close_up"):
    rows = []
    for f in range(n_films):
        for i in range(2):
            rows.append({"shot_id": f"film{f}:{i}", "film_id": f"film{f}", "film_name": f"film{f}.mp4", "index": i,
                         "start_s": 2.0 * i, "end_s": 2.0 * i + 2, "duration_s": 2.0, "frames": 48,
                         "clip_path": f"/x/{f}/{i}.mp4", "thumbnail_path": None,
                         "framing": framing, "framing_confidence": 1.0, "framing_source": "reel-truth",
                         "angle": None, "angle_confidence": 0.0, "angle_source": "auto:angle@1",
                         "movement": "pan_left", "movement_confidence": 0.8, "movement_source": "auto:motion@1",
                         "pan": -0.1, "tilt": 0.0, "zoom": 0.0, "roll": 0.0, "caption": "A close-up.",
                         "split": ["train", "val", "test"][f % 3]})
    return pd.DataFrame(rows)


def test_schema_validation_and_content_version():
    table = _table()
    c2k.validate(table)
    version = c2k.content_version(table)
    moved = table.assign(clip_path="/elsewhere/clip.mp4").iloc[::-1]
    assert c2k.content_version(moved) == version  # paths and row order are not content
    assert c2k.content_version(table.assign(framing="long_shot")) != version
    with pytest.raises(c2k.DatasetError, match="'wide' is not a taxonomy value"):
        c2k.validate(table.assign(framing="wide"))
    with pytest.raises(c2k.DatasetError, match="more than one split"):
        c2k.validate(table.assign(split=["train", "val"] * 3))
    with pytest.raises(c2k.DatasetError, match="schema"):
        c2k.validate(table.drop(columns=["caption"]))


def test_reports_counts_coverage_and_drift():
    table = _table()
    counts = c2k.counts_table(table).set_index(["family", "pattern"])
    assert counts.loc[("framing", "close_up"), "total"] == 6 and counts.loc[("framing", "close_up"), "train"] == 2
    assert counts.loc[("angle", "unknown"), "total"] == 6  # the angle labeller abstained everywhere
    passed, short = c2k.pattern_coverage(table, 1)
    assert not passed and "pan_left (2)" not in short and "zoom_in (0)" in short
    drift = c2k.label_drift(table.assign(framing="long_shot"), table).set_index("family")
    assert drift.loc["framing", "tvd"] == 1.0 and drift.loc["movement", "tvd"] == 0.0

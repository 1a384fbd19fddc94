"""The one-pass labeller: the `cinepipe label` contract, featureless clips, real footage, accuracy on the reel."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cinepipe.dataset import labeller_accuracy
from cinepipe.figures import confusion_figure
from cinepipe.label_eval import confusion
from cinepipe.labelling import label_shots
from cinepipe.labels import FAMILIES, reel_truth_labels
from cinepipe.media import film_id_for, probe
from cinepipe.shots import split_film
from cinepipe.taxonomy import TAXONOMY
from cinepipe.tracking import Tracker
from conftest import real_clip
from media_fixtures import _ff

REPO = Path(__file__).resolve().parents[1]

# Floors the tests hold the labellers to on the small reel (issue 3 asks 0.95 / 0.9 / 0.85 on the reel).
FLOORS = {"movement": 0.8, "framing": 0.65, "angle": 0.6}  # measured: 0.92, 0.83, 0.71


def label_cli(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cinepipe.cli", "label", str(path), "--json", *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("source", ["color=c=black:s=320x180:r=24:d=2", "color=c=0x808080:s=320x180:r=24:d=2",
                                    "color=c=0x0a0a0c:s=320x180:r=24:d=2,noise=alls=3:allf=t",
                                    "color=c=0x3366aa:s=320x180:r=24:d=0.042"])
def test_featureless_clips_are_static_or_unknown_never_a_crash(tmp_path, source):
    clip = tmp_path / "flat.mp4"
    _ff("-f", "lavfi", "-i", source, "-frames:v", "48", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip))
    proc = label_cli(clip)
    assert proc.returncode == 0, proc.stderr
    for shot in json.loads(proc.stdout)["shots"]:
        movement = shot["labels"]["movement"]
        assert movement["value"] in ("static", None)
        assert movement["value"] is None or movement["confidence"] <= 0.5 or source.startswith("color=c=0x80")
        for family in ("framing", "angle"):
            assert shot["labels"][family]["value"] is None or shot["labels"][family]["confidence"] < 0.5


def test_label_contract_and_human_override_on_real_footage(tmp_path):
    path = real_clip("bigbuckbunny.mp4")
    human = tmp_path / "review.csv"
    human.write_text(f"film,start_s,end_s,framing\n{path.name},0,1000,long_shot\n")
    proc = label_cli(path, "--labels", str(human))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["film_id"] == film_id_for(path) and len(out["shots"]) == 1
    shot = out["shots"][0]
    assert set(shot) >= {"index", "start_s", "end_s", "labels"}
    assert set(shot["labels"]) == set(FAMILIES)
    for entry in shot["labels"].values():
        assert set(entry) == {"value", "confidence", "source"} and 0.0 <= entry["confidence"] <= 1.0
    assert shot["labels"]["movement"]["value"] == "static"  # a locked-off camera
    assert shot["labels"]["movement"]["source"].startswith("auto:motion@")
    assert shot["labels"]["framing"] == {"value": "long_shot", "confidence": 1.0, "source": "human:review.csv"}


def test_real_faces_give_framing_on_real_footage():
    """bikes.mp4 (real street footage): the face detector (MTCNN, weights from the facenet-pytorch wheel) finds the
    man cycling past, head and shoulders in frame (shot 1, 1.2-3.0 s), and the cyclist seen whole (shot 2, 3.0-5.5
    s); the shots of cars and a street have no face, and no framing is guessed for them."""
    proc = label_cli(real_clip("bikes.mp4"))
    assert proc.returncode == 0, proc.stderr
    shots = json.loads(proc.stdout)["shots"]
    assert [round(shot["start_s"]) for shot in shots[:3]] == [0, 1, 3]
    framing = [shot["labels"]["framing"] for shot in shots]
    assert framing[1]["value"] in ("close_up", "medium_shot"), framing
    assert framing[2]["value"] == "full_shot", framing
    assert framing[0]["value"] is None and framing[3]["value"] is None, framing
    assert all(f["source"].startswith("auto:framing@") for f in framing)


def test_bad_label_file_is_one_line(tmp_path):
    human = tmp_path / "review.csv"
    human.write_text("film,start_s,end_s,angle\nx,0,1,sideways\n")
    proc = label_cli(real_clip("bigbuckbunny.mp4"), "--labels", str(human))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"cinepipe: error: {human}: row 2: 'sideways' is not a angle value "
        "(dutch_angle, eye_level, high_angle, low_angle, overhead)"]


def _pipeline_accuracy(reel: Path, tmp_path: Path, run_name: str) -> dict[str, float]:
    """Every auto labeller against a reel's truth, on whole shots as the pipeline detects them; the confusion
    matrices go to MLflow as images (checked)."""
    import pandas as pd

    auto, truth = [], []
    for film in sorted(reel.glob("*.mp4")):
        probed = probe(film)
        proxy, shots = split_film(probed, tmp_path / f"{film.stem}.proxy.mp4")
        for shot in label_shots(proxy, shots.shots, probed.film_id):
            auto += [(shot["shot_id"], f, e["value"]) for f, e in shot["labels"].items()]
        frame = pd.DataFrame([{"shot_id": f"{probed.film_id}:{s['index']}", "start_s": s["start_s"],
                               "end_s": s["end_s"]} for s in shots.shots])
        truth.append(reel_truth_labels(film.with_suffix(".truth.json"), frame))
    truth = pd.concat(truth)
    auto = pd.DataFrame(auto, columns=["shot_id", "family", "predicted"])
    agreement = truth.rename(columns={"value": "truth"}).merge(auto, on=["shot_id", "family"])
    accuracy = labeller_accuracy(agreement)

    tracker = Tracker.for_home(tmp_path / "home")
    with tracker.start_run(run_name) as run:
        run.log_metrics({f"accuracy_{f}": a for f, a in accuracy.items()})
        for family in FAMILIES:
            part = agreement[agreement["family"] == family]
            matrix = confusion(part["truth"].tolist(), [p if isinstance(p, str) else None for p in part["predicted"]],
                               TAXONOMY.values(family))
            run.log_figure(confusion_figure(matrix, family), f"confusion_{family}.png")
    logged = {a.path for a in MlflowClient(tracker.tracking_uri).list_artifacts(run.run_id)}
    assert logged == {f"confusion_{f}.png" for f in FAMILIES}
    print(f"{run_name}: {accuracy}")
    return accuracy


def test_labeller_accuracy_on_the_reel(small_reel, tmp_path):
    """Regression floors on the tests' small reel (320x180, 24 shots), as the pipeline labels it."""
    accuracy = _pipeline_accuracy(small_reel, tmp_path, "labeller accuracy on the small reel")
    for family, floor in FLOORS.items():
        assert accuracy[family] >= floor, (family, accuracy)


# issue 3's targets on the reel
TARGETS = {"movement": 0.95, "framing": 0.9, "angle": 0.85}


@pytest.fixture(scope="session")
def default_reel(tmp_path_factory) -> Path:
    """The built-in reel as ``cinepipe reel`` renders it by default (seed 0: 6 films of 8 shots, 640x360)."""
    from cinepipe.reel import generate_reel

    out = tmp_path_factory.mktemp("default_reel")
    generate_reel(out, seed=0)
    return out


def test_issue_targets_on_the_default_reel(default_reel, tmp_path):
    """Issue 3's accuracy targets on the default reel, shots detected, trimmed and labelled as the pipeline does
    (measured with labellers movement v6, framing v6, angle v5: 0.979, 0.979, 0.917)."""
    accuracy = _pipeline_accuracy(default_reel, tmp_path, "labeller accuracy on the default reel")
    for family, target in TARGETS.items():
        assert accuracy[family] >= target, (family, accuracy)

"""shot_labels and cinematic2k materialized on the small reel: versions, stable splits, human overrides, MLflow."""

import json
import shutil

import pandas as pd
from dagster import instance_for_test, materialize
from mlflow.tracking import MlflowClient

from assets_defs.ingestion import INGESTION_ASSETS
from assets_defs.labelling import LABELLING_ASSETS, cinematic2k, shot_labels
from assets_defs.partitions import FILMS_PARTITION
from assets_defs.resources import CinepipeHome, MlflowTracking
from cinepipe import dataset as c2k
from cinepipe.home import FilmPaths, human_labels_dir
from cinepipe.media import film_id_for
from cinepipe.tracking import TAG_ASSET_KEY, TAG_DATASET_VERSION, Tracker
from conftest import leftovers

ALL = [*INGESTION_ASSETS, *LABELLING_ASSETS]


def _ingest(instance, res, landing, names):
    ids = []
    for name in names:
        fid = film_id_for(landing / name)
        instance.add_dynamic_partitions(FILMS_PARTITION, [fid])
        result = materialize(ALL, selection=[*INGESTION_ASSETS, shot_labels], partition_key=fid, instance=instance,
                             resources=res)
        assert result.success
        ids.append(fid)
    return ids


def _build(instance, res):
    result = materialize(ALL, selection=[cinematic2k], instance=instance, resources=res)
    assert result.success
    meta = {k: getattr(v, "value", v) for k, v in result.asset_materializations_for_node("cinematic2k")[0]
            .metadata.items()}
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return meta, checks


def test_dataset_versions_splits_and_overrides(home, small_reel, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("reel_00", "reel_01", "reel_02"):
        for suffix in (".mp4", ".truth.json"):
            shutil.copy(small_reel / f"{name}{suffix}", landing / f"{name}{suffix}")
    res = {"home": CinepipeHome(home=str(home), landing=str(landing), settle_seconds=0),
           "mlflow": MlflowTracking(home=str(home))}
    (home / "dagster").mkdir()
    with instance_for_test(temp_dir=str(home / "dagster")) as instance:
        first = _ingest(instance, res, landing, ["reel_00.mp4", "reel_01.mp4"])
        auto = pd.read_parquet(FilmPaths(home, first[0]).labels)
        assert set(auto["family"]) == {"framing", "angle", "movement"}
        assert all(s.startswith("auto:") for s in auto["source"])

        meta, checks = _build(instance, res)
        v1 = meta["dataset_version"]
        table = c2k.load_version(home, v1)
        assert len(table) == meta["dagster/row_count"] >= 14
        assert set(table["film_id"]) == set(first)
        assert set(table["framing_source"]) == {"reel-truth"}  # the reel's truth beats the auto labellers
        assert checks["no_split_leak"].passed and "label_drift" in checks and "pattern_coverage" in checks
        assert table["caption"].nunique() > 5  # several templates, not one sentence
        prompts = json.loads((c2k.version_path(home, v1).parent / "prompts.json").read_text())
        assert len(prompts) == 20 and "the camera pans left" in prompts["pan_left"][0]

        # the MLflow run: tags, the dataset as an input with its version as digest, confusion matrices
        client = MlflowClient(Tracker.for_home(home).tracking_uri)
        run = client.get_run(meta["mlflow_run_id"])
        assert run.data.tags[TAG_DATASET_VERSION] == v1 and run.data.tags[TAG_ASSET_KEY] == "cinematic2k"
        assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [v1]
        assert 0.0 <= run.data.metrics["labeller_accuracy_movement"] <= 1.0
        images = {a.path for a in client.list_artifacts(run.info.run_id, "labeller_confusion")}
        assert "labeller_confusion/confusion_movement.png" in images

        # nothing changed: the same version, nothing new written
        meta_again, _ = _build(instance, res)
        assert meta_again["dataset_version"] == v1 and meta_again["new_version"] is False

        # a new film and a human label: a new version; the old films keep their splits
        third = _ingest(instance, res, landing, ["reel_02.mp4"])
        folder = human_labels_dir(home)
        folder.mkdir()
        (folder / "review.csv").write_text(f"shot_id,angle\n{first[0]}:0,overhead\n")
        meta2, checks2 = _build(instance, res)
        v2 = meta2["dataset_version"]
        assert v2 != v1 and meta2["previous_version"] == v1
        table2 = c2k.load_version(home, v2)
        assert set(table2["film_id"]) == set(first + third)
        old_splits = c2k.split_of_films(table)
        assert {f: s for f, s in c2k.split_of_films(table2).items() if f in old_splits} == old_splits
        first_shot = table2[(table2["film_id"] == first[0]) & (table2["index"] == 0)].iloc[0]
        assert (first_shot["angle"], first_shot["angle_source"]) == ("overhead", "human:review.csv")
        assert checks2["label_drift"].metadata["previous_version"].value == v1
    assert leftovers(home / "films") == [] and leftovers(home / "datasets") == []

"""Labelling and the dataset: shot_labels (per film) -> cinematic2k (all films, one versioned Parquet table)."""

import time

import pandas as pd
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config, DataVersion,
                     MaterializeResult, MetadataValue, asset)

from assets_defs.automation import after_films_settle
from assets_defs.ingestion import _failure, shot_clips, shots
from assets_defs.partitions import FILMS_PARTITION, films_partitions
from assets_defs.resources import CinepipeHome, MlflowTracking
from assets_defs.schemas import column_schema
from cinepipe import dataset as c2k
from cinepipe.home import FilmPaths
from cinepipe.labelling import CODE_VERSION, LABEL_SCHEMA, LABELLERS, label_film
from cinepipe.labels import FAMILIES, LabelFileError
from cinepipe.media import MediaError

GROUP = "labelling"


@asset(partitions_def=films_partitions, group_name=GROUP, deps=[shots], kinds={"opencv", "parquet", "mlflow"},
       code_version=CODE_VERSION, metadata={"dagster/column_schema": column_schema(LABEL_SCHEMA)})
def shot_labels(context: AssetExecutionContext, home: CinepipeHome, mlflow: MlflowTracking) -> MaterializeResult:
    """Automatic labels for every shot of a film (camera movement from the pixels, framing from the subject's
    size, angle from the scene geometry), each with a confidence and its labeller's name and version; one decode
    of the proxy."""
    film_id = context.partition_key
    start = time.perf_counter()
    try:
        labelled = label_film(home.path, film_id)
    except MediaError as err:
        raise _failure(err) from None
    seconds = time.perf_counter() - start
    table = pd.DataFrame([{"index": s["index"], "start_s": round(s["start_s"], 3), "end_s": round(s["end_s"], 3),
                           **{f: s["labels"][f]["value"] or "unknown" for f in FAMILIES},
                           **{f"{f}_conf": s["labels"][f]["confidence"] for f in FAMILIES}} for s in labelled])
    unknown = {f"unknown_{f}": int((table[f] == "unknown").sum()) if len(table) else 0 for f in FAMILIES}
    with mlflow.run(context, f"labels {film_id}", tags={"cinepipe.film_id": film_id}) as run:
        run.log_params({f"labeller.{k}": v for k, v in LABELLERS.items()})
        run.log_metrics({"shots": len(labelled), "label_seconds": seconds,
                         "seconds_per_shot": seconds / max(1, len(labelled)), **unknown})
        run.log_artifact(FilmPaths(home.path, film_id).labelling)
        link = MlflowTracking.link_metadata(run)
    return MaterializeResult(metadata={
        **link, **unknown,
        "shots": len(labelled),
        "dagster/row_count": len(labelled) * len(FAMILIES),
        "seconds": round(seconds, 3),
        "labellers": MetadataValue.json(LABELLERS),
        "labels": MetadataValue.md(table.head(60).to_markdown(index=False) if len(table) else "(no shots)"),
    })


class DatasetConfig(Config):
    seed: int = 0
    train_fraction: float = 0.7
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    use_reel_truth: bool = True
    human_label_files: list[str] = []
    min_train_clips_per_pattern: int = 1
    drift_warn_tvd: float = 0.25  # label drift above this total-variation distance fails the drift check (WARN)

    def settings(self) -> c2k.DatasetSettings:
        return c2k.DatasetSettings(
            seed=self.seed, use_reel_truth=self.use_reel_truth, human_label_files=tuple(self.human_label_files),
            fractions={"train": self.train_fraction, "val": self.val_fraction, "test": self.test_fraction},
            min_train_clips_per_pattern=self.min_train_clips_per_pattern)


@asset(group_name=GROUP, deps=[shot_labels, shot_clips], kinds={"parquet", "mlflow"},
       automation_condition=after_films_settle(),
       metadata={"dagster/column_schema": column_schema(c2k.DATASET_SCHEMA)}, code_version=c2k.CODE_VERSION,
       check_specs=[
           AssetCheckSpec("pattern_coverage", asset="cinematic2k",
                          description="every one of the 20 patterns has the configured minimum of training clips"),
           AssetCheckSpec("no_split_leak", asset="cinematic2k", description="no film in two splits"),
           AssetCheckSpec("label_drift", asset="cinematic2k",
                          description="label distribution drift versus the previous dataset version"),
       ])
def cinematic2k(context: AssetExecutionContext, config: DatasetConfig, home: CinepipeHome, mlflow: MlflowTracking):
    """Cinematic2K: one row per shot (ids, times, clip, labels with source and confidence, caption, split by
    film), validated against its Arrow schema and versioned by a hash of its content."""
    from cinepipe.figures import confusion_figure
    from cinepipe.label_eval import confusion

    settings = config.settings()
    films = context.instance.get_dynamic_partitions(FILMS_PARTITION)
    try:
        build = c2k.build_dataset(home.path, films, settings)
    except (c2k.DatasetError, LabelFileError) as err:
        raise _failure(err) from None
    table = build.table
    previous = c2k.load_version(home.path, build.previous_version) if build.previous_version else None
    counts = c2k.counts_table(table)
    drift = c2k.label_drift(table, previous if build.previous_version != build.version else None)
    accuracy = c2k.labeller_accuracy(build.agreement)
    split_counts = table["split"].value_counts()
    with mlflow.run(context, f"cinematic2k {build.version}", dataset_version=build.version) as run:
        run.log_params({"seed": settings.seed, "fractions": settings.fractions,
                        "use_reel_truth": settings.use_reel_truth, "films": table["film_id"].nunique(),
                        "previous_version": build.previous_version, "labellers": LABELLERS})
        run.log_metrics({"rows": len(table), "skipped_films": len(build.skipped_films),
                         "human_rows_unmatched": build.human_rows_unmatched,
                         **{f"shots_{s}": int(split_counts.get(s, 0)) for s in ("train", "val", "test")},
                         **{f"labeller_accuracy_{f}": a for f, a in accuracy.items()},
                         **{f"drift_tvd_{r.family}": r.tvd for r in drift.itertuples()}})
        run.log_dataset(table, c2k.NAME, build.version, str(build.path))
        run.log_dict(counts.to_dict("records"), "counts.json")
        run.log_dict(build.manifest(), "manifest.json")
        for family in FAMILIES:
            part = build.agreement[build.agreement["family"] == family]
            if len(part):
                values = list(c2k.TAXONOMY.values(family))
                matrix = confusion(part["truth"].tolist(), part["predicted"].tolist(), values)
                run.log_figure(confusion_figure(matrix, f"{family}: auto labeller vs trusted labels "
                                                        f"(acc {accuracy[family]:.2f})"),
                               f"confusion_{family}.png", "labeller_confusion")
        link = MlflowTracking.link_metadata(run)
    context.log.info(f"cinematic2k {build.version}: {len(table)} shots from {table['film_id'].nunique()} films"
                     + (f", {len(build.skipped_films)} films skipped" if build.skipped_films else ""))
    yield MaterializeResult(
        data_version=DataVersion(build.version),
        metadata={
            **link,
            "dataset_version": build.version,
            "previous_version": build.previous_version or "",
            "new_version": build.created,
            "path": MetadataValue.path(str(build.path)),
            "dagster/row_count": len(table),
            "films": int(table["film_id"].nunique()),
            "skipped_films": MetadataValue.json(build.skipped_films),
            "counts": MetadataValue.md(counts.to_markdown(index=False)),
            "labeller_accuracy": MetadataValue.json({k: round(v, 4) for k, v in accuracy.items()}),
            "captions": MetadataValue.md("\n".join(f"- {c}" for c in table["caption"].head(8))),
        })
    passed, short = c2k.pattern_coverage(table, settings.min_train_clips_per_pattern)
    yield AssetCheckResult(check_name="pattern_coverage", passed=passed, severity=AssetCheckSeverity.ERROR,
                           metadata={"minimum": settings.min_train_clips_per_pattern,
                                     "short": MetadataValue.json(short)})
    leaks = c2k.split_leaks(table)
    yield AssetCheckResult(check_name="no_split_leak", passed=not leaks, severity=AssetCheckSeverity.ERROR,
                           metadata={"films_in_two_splits": MetadataValue.json(leaks)})
    worst = float(drift["tvd"].max()) if len(drift) else 0.0
    yield AssetCheckResult(check_name="label_drift", passed=worst <= config.drift_warn_tvd,
                           severity=AssetCheckSeverity.WARN,
                           metadata={"max_tvd": worst, "previous_version": build.previous_version or "",
                                     "drift": MetadataValue.md(drift.to_markdown(index=False))})


LABELLING_ASSETS = [shot_labels, cinematic2k]

"""The front end as assets, one dynamic partition per film: raw_films -> film_proxies -> shots -> shot_clips."""


import time
from dataclasses import asdict
from pathlib import Path

from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config, Failure,
                     MaterializeResult, MetadataValue, asset)

from assets_defs.partitions import films_partitions
from assets_defs.resources import CinepipeHome, MlflowTracking
from assets_defs.schemas import column_schema
from cinepipe import ingest
from cinepipe.home import FilmPaths
from cinepipe.media import MediaError, ProxySpec
from cinepipe.shots import SHOT_SCHEMA, ShotSettings

SOURCE_TAG = "cinepipe/source_path"
GROUP = "ingestion"


def _failure(err: Exception) -> Failure:
    """A one-line failure naming the file and the reason, shown in the UI and printed by ``cinepipe run``."""
    return Failure(description=str(err), metadata={"reason": getattr(err, "reason", str(err))})


@asset(partitions_def=films_partitions, group_name=GROUP, kinds={"video"}, code_version="1")
def raw_films(context: AssetExecutionContext, home: CinepipeHome, mlflow: MlflowTracking) -> MaterializeResult:
    """A film from the landing folder, identified by its content hash and probed with ffprobe."""
    film_id = context.partition_key
    try:
        source = ingest.find_source(home.path, home.landing_path, film_id, context.run.tags.get(SOURCE_TAG))
        probed = ingest.register_film(home.path, source)
    except (MediaError, FileNotFoundError) as err:
        raise _failure(err) from None
    with mlflow.run(context, f"probe {source.name} ({film_id})", tags={"cinepipe.film_id": film_id}) as run:
        run.log_params({f"probe.{k}": v for k, v in probed.to_dict().items()})
        link = MlflowTracking.link_metadata(run)
    return MaterializeResult(metadata={
        **link,
        "source": MetadataValue.path(source.path),
        "duration_s": probed.duration_s,
        "fps": probed.fps,
        "size": f"{probed.width}x{probed.height}",
        "codec": probed.codec,
        "container": probed.container,
        "rotation": probed.rotation,
        "variable_frame_rate": probed.variable_frame_rate,
        "probe": MetadataValue.json(probed.to_dict()),
    })


@asset(partitions_def=films_partitions, group_name=GROUP, deps=[raw_films], kinds={"video", "ffmpeg"},
       code_version="1")
def film_proxies(context: AssetExecutionContext, home: CinepipeHome, mlflow: MlflowTracking) -> MaterializeResult:
    """The film decoded once into its analysis proxy (displayed orientation, square pixels, constant frame rate);
    the same decode feeds PySceneDetect's detectors, whose boundaries the shots asset uses."""
    start = time.perf_counter()
    try:
        info = ingest.build_proxy(home.path, context.partition_key, ProxySpec())
    except MediaError as err:
        raise _failure(err) from None
    seconds = time.perf_counter() - start
    with mlflow.run(context, f"proxy {context.partition_key}", tags={"cinepipe.film_id": context.partition_key}) as run:
        run.log_params({f"proxy.{k}": v for k, v in info.to_dict().items() if k != "path"})
        run.log_metrics({"proxy_seconds": seconds, "frames": info.frames})
        link = MlflowTracking.link_metadata(run)
    return MaterializeResult(metadata={
        **link,
        "proxy": MetadataValue.path(info.path),
        "size": f"{info.width}x{info.height}",
        "fps": info.fps,
        "frames": info.frames,
        "seconds": round(seconds, 3),
    })


class ShotConfig(Config):
    adaptive_threshold: float = ShotSettings.adaptive_threshold
    min_content_val: float = ShotSettings.min_content_val
    fade_threshold: int = ShotSettings.fade_threshold
    min_shot_s: float = ShotSettings.min_shot_s

    def settings(self) -> ShotSettings:
        return ShotSettings(adaptive_threshold=self.adaptive_threshold, min_content_val=self.min_content_val,
                            fade_threshold=self.fade_threshold, min_shot_s=self.min_shot_s)


@asset(partitions_def=films_partitions, group_name=GROUP, deps=[film_proxies], kinds={"parquet", "mlflow"},
       code_version="1", metadata={"dagster/column_schema": column_schema(SHOT_SCHEMA)},
       check_specs=[AssetCheckSpec("covers_film", asset="shots",
                                   description="shots cover the film without gaps or overlaps"),
                    AssetCheckSpec("min_shot_length", asset="shots",
                                   description="no shot shorter than the minimum length"),
                    AssetCheckSpec("has_shots", asset="shots", description="the film has at least one shot")])
def shots(context: AssetExecutionContext, config: ShotConfig, home: CinepipeHome, mlflow: MlflowTracking):
    """PySceneDetect boundaries (adaptive cuts, threshold fades), one Parquet row per shot, times in seconds.
    Logs the film's ingestion run to MLflow (probe, proxy and shot statistics)."""
    film_id = context.partition_key
    settings = config.settings()
    start = time.perf_counter()
    _, reused = ingest.detect_shots(home.path, film_id, settings)
    seconds = time.perf_counter() - start
    df = ingest.load_shots(home.path, film_id)
    stats = ingest.shot_statistics(df)
    probed = ingest.load_probe(home.path, film_id)
    proxy = ingest.load_proxy(home.path, film_id)
    with mlflow.run(context, f"ingest {Path(probed.path).name} ({film_id})",
                    tags={"cinepipe.film_id": film_id}) as run:
        run.log_params({f"probe.{k}": v for k, v in probed.to_dict().items()})
        run.log_params({f"proxy.{k}": v for k, v in proxy.to_dict().items() if k != "path"})
        run.log_params({f"shots.{k}": v for k, v in asdict(settings).items()})
        run.log_metrics({**stats, "duration_s": probed.duration_s, "detect_seconds": seconds})
        run.log_artifact(FilmPaths(home.path, film_id).shots)
        link = MlflowTracking.link_metadata(run)
    yield MaterializeResult(metadata={
        **link,
        **stats,
        "detect_seconds": round(seconds, 3),
        "dagster/row_count": len(df),
        "detection": "from the proxy pass" if reused else "re-run on the proxy (settings differ)",
        "shots_table": MetadataValue.md(df[["index", "start_s", "end_s", "transition_in"]].head(50)
                                        .to_markdown(index=False)),
        "path": MetadataValue.path(str(FilmPaths(home.path, film_id).shots)),
    })
    for name, (passed, description) in ingest.check_shot_coverage(df, proxy, settings.min_shot_s).items():
        yield AssetCheckResult(check_name=name, passed=passed, severity=AssetCheckSeverity.ERROR,
                               metadata={"detail": description})


@asset(partitions_def=films_partitions, group_name=GROUP, deps=[shots], kinds={"video", "ffmpeg", "mlflow"},
       code_version="1", metadata={"dagster/column_schema": column_schema(ingest.CLIP_SCHEMA)})
def shot_clips(context: AssetExecutionContext, home: CinepipeHome, mlflow: MlflowTracking) -> MaterializeResult:
    """One clip file and a few thumbnails per shot, cut frame-exactly by ffmpeg from the proxy in one pass."""
    film_id = context.partition_key
    start = time.perf_counter()
    try:
        clips = ingest.cut_shot_clips(home.path, film_id)
    except MediaError as err:
        raise _failure(err) from None
    seconds = time.perf_counter() - start
    with mlflow.run(context, f"clips {film_id}", tags={"cinepipe.film_id": film_id}) as run:
        run.log_metrics({"clips": len(clips), "clip_frames": int(clips["frames"].sum()), "cut_seconds": seconds})
        link = MlflowTracking.link_metadata(run)
    first_thumb = clips["thumbnail_paths"].iloc[0][1] if len(clips) else None
    return MaterializeResult(metadata={
        **link,
        "clips": len(clips),
        "dagster/row_count": len(clips),
        "seconds": round(seconds, 3),
        "folder": MetadataValue.path(str(FilmPaths(home.path, film_id).clips_dir)),
        **({"first_thumbnail": MetadataValue.md(f"![thumbnail]({first_thumb})")} if first_thumb else {}),
    })


INGESTION_ASSETS = [raw_films, film_proxies, shots, shot_clips]

"""CameraDiff as assets: ``base_video_model`` (the text-to-video base, trained on the latest Cinematic2K version)
and ``camera_diff_lora`` (one LoRA per cinematic pattern, a static partition each, trained, evaluated, logged and
registered; the partitions share the ``lora_training`` pool)."""

import base64
import hashlib
import json
import shutil
from dataclasses import asdict

import pandas as pd
from dagster import (AssetExecutionContext, Config, MaterializeResult, MetadataValue, StaticPartitionsDefinition,
                     asset)

from assets_defs.automation import after_upstream_update, on_dataset_version_change
from assets_defs.ingestion import _failure
from assets_defs.labelling import cinematic2k
from assets_defs.scale_out import TRAINING_STEP_TAGS
from assets_defs.resources import CinepipeHome, MlflowTracking
from cinepipe import dataset as c2k
from cinepipe.diffusion_settings import (BaseModelSettings, GenerationSettings, LoraEvalSettings, LoraSettings,
                                         TinyVideoConfig, VideoFormat)
from cinepipe.taxonomy import TAXONOMY

GROUP = "camera_diff"
POOL = "lora_training"
LORA_SET_TAG = "cinepipe/lora_set_run_id"  # a Dagster run tag: nest the partition's MLflow run under this run

patterns_partitions = StaticPartitionsDefinition(list(TAXONOMY.patterns))


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


class BaseVideoConfig(Config):
    source: str = ""  # a local diffusers Wan pipeline directory; empty: the tiny model from config
    size: int = VideoFormat.size
    frames: int = VideoFormat.frames
    fps: float = VideoFormat.fps
    arch: str = TinyVideoConfig.arch  # "unet" (UNetMotionModel, the default) or "wan" (the earlier tiny model)
    layers: int = TinyVideoConfig.layers  # Wan's blocks
    prediction: str = TinyVideoConfig.prediction  # "x0" or "flow": what the tiny denoiser outputs
    captions: str = BaseModelSettings.captions
    steps: int = BaseModelSettings.steps
    batch_size: int = BaseModelSettings.batch_size
    lr: float = BaseModelSettings.lr
    seed: int = BaseModelSettings.seed

    def settings(self) -> BaseModelSettings:
        return BaseModelSettings(source=self.source,
                                 tiny=TinyVideoConfig(arch=self.arch, layers=self.layers,
                                                      prediction=self.prediction),
                                 format=VideoFormat(size=self.size, frames=self.frames, fps=self.fps),
                                 captions=self.captions, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                 seed=self.seed)


@asset(group_name=GROUP, deps=[cinematic2k], kinds={"pytorch", "diffusers", "mlflow"}, code_version="3",
       op_tags=TRAINING_STEP_TAGS,
       automation_condition=on_dataset_version_change())
def base_video_model(context: AssetExecutionContext, config: BaseVideoConfig, home: CinepipeHome,
                     mlflow: MlflowTracking) -> MaterializeResult:
    """The text-to-video base CameraDiff's LoRAs train on: a tiny diffusers UNetMotionModel trained with flow
    matching on every train/val clip of the latest Cinematic2K version (generic captions: it learns moving scenes,
    not the camera's vocabulary), or a local diffusers Wan pipeline. Registered as ``CameraDiff-base``."""
    from cinepipe.camera_diff import BASE_MODEL_NAME, CameraDiffError, models_dir, set_current_base, train_base
    from cinepipe.model_registry import register_model

    version = c2k.latest_version(home.path)
    if version is None:
        raise _failure(c2k.DatasetError("no Cinematic2K version yet: materialize cinematic2k first"))
    table = c2k.load_version(home.path, version)
    settings = config.settings()
    out = models_dir(home.path) / "base" / f"{version}-{_key(asdict(settings))}"
    with mlflow.run(context, f"base_video_model {version}", dataset_version=version) as run:
        run.log_params({"settings": json.dumps(asdict(settings), default=str), "dataset_rows": len(table),
                        "source": settings.source or "tiny (from config)"})
        run.log_dataset(table, c2k.NAME, version, str(c2k.version_path(home.path, version)))

        def on_step(step: int, record: dict) -> None:
            if step % 10 == 0 or step == settings.steps - 1:
                run.log_metrics({"train_loss": record["loss"], "lr": record["lr"]}, step=step)

        try:
            result = train_base(table, version, out, home.path / "cache" / "camera_diff", settings,
                                on_step=on_step)
        except (CameraDiffError, ValueError) as err:
            raise _failure(err) from None
        steps_s = [r["seconds"] for r in result.history[1:]] or [0.0]
        run.log_metrics({f"heldout_denoising_error_s{s:g}": v for s, v in result.heldout.items()})
        run.log_metrics({"clips": result.clips, "seconds": result.seconds,
                         "step_seconds_median": float(pd.Series(steps_s).median()),
                         "final_loss": result.history[-1]["loss"] if result.history else float("nan")})
        model_version = register_model(run, out, BASE_MODEL_NAME, "model", version,
                                       {"dagster.run_id": context.run.run_id},
                                       "CameraDiff's text-to-video base model")
        link = MlflowTracking.link_metadata(run)
        set_current_base(home.path, {"path": str(out), "dataset_version": version, "mlflow_run_id": run.run_id,
                                     "model_version": model_version})
    for old in out.parent.iterdir():  # earlier bases stay in the registry; keep the working copy small
        if old.is_dir() and old != out and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return MaterializeResult(metadata={
        **link, "dataset_version": version, "model": f"{BASE_MODEL_NAME} version {model_version}",
        "path": str(out), "clips": result.clips, "seconds": round(result.seconds, 1),
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
        "skipped_clips": len(result.skipped),
        "heldout_denoising_error": {f"noise {s:g}": v for s, v in result.heldout.items()}})


class LoraTrainConfig(Config):
    rank: int = LoraSettings.rank
    alpha: float = LoraSettings.alpha
    steps: int = LoraSettings.steps  # movement LoRAs
    framing_angle_steps: int = LoraSettings.framing_angle_steps
    batch_size: int = LoraSettings.batch_size
    lr: float = LoraSettings.lr
    seed: int = LoraSettings.seed
    min_clips: int = LoraSettings.min_clips
    augment: bool = LoraSettings.augment  # also the clips that show the pattern once mirrored or reversed
    eval_samples: int = LoraEvalSettings.samples
    eval_steps: int = GenerationSettings.steps
    guidance_scale: float = GenerationSettings.guidance_scale
    torch_threads: int = 0  # 0: torch's default (all cores); a pool of N partitions on C cores wants C / N

    def settings(self) -> tuple[LoraSettings, LoraEvalSettings]:
        return (LoraSettings(rank=self.rank, alpha=self.alpha, steps=self.steps,
                             framing_angle_steps=self.framing_angle_steps, batch_size=self.batch_size,
                             lr=self.lr, seed=self.seed, min_clips=self.min_clips, augment=self.augment),
                LoraEvalSettings(samples=self.eval_samples,
                                 generation=GenerationSettings(steps=self.eval_steps,
                                                               guidance_scale=self.guidance_scale)))


LORA_HEADLINE = ("motion_control_acc", "motion_control_acc_base", "motion_static_frac",
                 "motion_estimator_ceiling", "cameraclip_pattern_acc", "cameraclip_pattern_acc_base",
                 "cameraclip_score", "cameraclip_score_base", "final_loss", "clips", "train_seconds")


@asset(group_name=GROUP, deps=[base_video_model, cinematic2k], partitions_def=patterns_partitions, pool=POOL,
       kinds={"pytorch", "peft", "mlflow"}, code_version="4", automation_condition=after_upstream_update(),
       op_tags=TRAINING_STEP_TAGS)
def camera_diff_lora(context: AssetExecutionContext, config: LoraTrainConfig, home: CinepipeHome,
                     mlflow: MlflowTracking) -> MaterializeResult:
    """One pattern's LoRA on the base model: trained on the clips labelled with the pattern (their captions as
    prompts; on the UNet the motion modules and the resnets' convolutions for movements, the spatial
    transformers' cross-attention and feed-forward layers for framing and angle), evaluated on
    held-out prompts with and without it (motion-control accuracy by the project's camera-motion estimator for
    movements; CameraCLIP's zero-shot accuracy and score when a CameraCLIP model is registered), previewed, logged
    and registered as ``CameraDiff-<pattern>``."""
    import torch

    from cinepipe.camera_diff import (CameraDiffError, current_base, evaluate_lora, lora_model_name, models_dir,
                                      pattern_rows, preview_gif, train_lora, training_rows)
    from cinepipe.model_registry import register_model
    from cinepipe.video_data import video_cache
    from cinepipe.video_model import ModelLoadError, VideoModel

    pattern = context.partition_key
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    base = current_base(home.path)
    if base is None:
        raise _failure(CameraDiffError("no base video model yet: materialize base_video_model first"))
    version = base["dataset_version"]
    table = c2k.load_version(home.path, version)
    lora_settings, eval_settings = config.settings()
    out = models_dir(home.path) / "lora" / pattern
    parent = context.run.tags.get(LORA_SET_TAG)
    with mlflow.run(context, f"camera_diff_lora {pattern}", dataset_version=version, parent_run_id=parent,
                    tags={"cinepipe.pattern": pattern, "cinepipe.base_model": base.get("model_version")}) as run:
        run.log_params({"pattern": pattern, "family": TAXONOMY.family_of(pattern),
                        "lora": json.dumps(asdict(lora_settings)), "eval": json.dumps(asdict(eval_settings)),
                        "base_model_path": base["path"]})
        try:
            model = VideoModel.load(base["path"])
            result = train_lora(model, table, version, pattern, out, home.path / "cache" / "camera_diff",
                                lora_settings, on_step=lambda s, r: run.log_metrics(
                                    {"train_loss": r["loss"], "lr": r["lr"]}, step=s) if s % 5 == 0 else None)
        except (CameraDiffError, ModelLoadError, ValueError) as err:
            raise _failure(err) from None
        scorer = _camera_clip_scorer(mlflow, context)
        cache = video_cache(training_rows(table, ("train", "val")), version, home.path / "cache" / "camera_diff",
                            model.format)
        own = pattern_rows(table, pattern)
        own = own[own["shot_id"].isin(set(cache.shot_ids))]
        ceiling = cache.frames[cache.rows(own["shot_id"].tolist())]
        metrics, details = evaluate_lora(model, pattern, eval_settings, scorer, ceiling)
        metrics.update(clips=result.clips, training_clips=sum(result.training_clips.values()),
                       train_seconds=result.seconds, motion_loss_weight=result.motion_weight,
                       training_pace=result.pace, training_zoom_boost=result.zoom_boost,
                       final_loss=result.history[-1]["loss"] if result.history else float("nan"))
        run.log_metrics(metrics)
        preview = preview_gif(out.parent / f".{pattern}-preview.gif", details["base"], details["lora"],
                              model.format.fps)
        run.log_artifact(preview, "preview")
        run.log_dict({"prompts": details["prompts"], "motion": details.get("motion"), "metrics": metrics},
                     "evaluation.json")
        model_version = register_model(run, out, lora_model_name(pattern), "adapter", version,
                                       {"dagster.run_id": context.run.run_id, "cinepipe.pattern": pattern,
                                        "cinepipe.base_model": str(base.get("model_version"))},
                                       f"CameraDiff LoRA for {pattern}")
        link = MlflowTracking.link_metadata(run)
    gif = base64.b64encode(preview.read_bytes()).decode()
    preview.unlink()
    return MaterializeResult(metadata={
        **link,
        **{k: round(float(metrics[k]), 4) for k in LORA_HEADLINE if k in metrics},
        "dataset_version": version,
        "model": f"{lora_model_name(pattern)} version {model_version}",
        "adapter_path": str(out),
        "preview": MetadataValue.md(f"base (left) and with the LoRA (right), held-out prompts\n\n"
                                    f"![preview](data:image/gif;base64,{gif})"),
    })


def _camera_clip_scorer(mlflow: MlflowTracking, context: AssetExecutionContext):
    from cinepipe.clip_scorer import ClipScorer

    try:
        return ClipScorer.from_registry(mlflow.tracker())
    except LookupError:
        context.log.info("no CameraCLIP registered: the CameraCLIP metrics are skipped")
        return None


@asset(group_name=GROUP, deps=[camera_diff_lora], kinds={"mlflow"}, code_version="1",
       automation_condition=after_upstream_update())
def camera_diff_summary(context: AssetExecutionContext, home: CinepipeHome,
                        mlflow: MlflowTracking) -> MaterializeResult:
    """All twenty patterns' figures in one table, from each partition's latest MLflow run on the current base:
    motion-control accuracy with and without the LoRA (movements), CameraCLIP accuracy and score (all), and the
    averages the issue's targets are stated on."""
    from cinepipe.camera_diff import current_base, summary_table

    base = current_base(home.path)
    if base is None:
        raise _failure(ValueError("no base video model yet: materialize base_video_model first"))
    tracker = mlflow.tracker()
    table, averages = summary_table(tracker, base)
    parent = context.run.tags.get(LORA_SET_TAG)
    with mlflow.run(context, f"camera_diff summary {base['dataset_version']}", base["dataset_version"],
                    parent_run_id=parent) as run:
        run.log_metrics(averages)
        run.log_dict(table.to_dict("records"), "patterns.json")
        run.log_dict({"markdown": table.to_markdown(index=False)}, "patterns.md.json")
        link = MlflowTracking.link_metadata(run)
    if parent:  # the set's own run shows the table too, and names the Dagster run that completed it
        from cinepipe.tracking import TAG_DAGSTER_RUN, TrackedRun

        set_run = TrackedRun(tracker, parent)
        set_run.log_metrics(averages)
        set_run.log_dict(table.to_dict("records"), "patterns.json")
        set_run.set_tags({TAG_DAGSTER_RUN: context.run.run_id})
    missing = [p for p in TAXONOMY.patterns if p not in set(table["pattern"])]
    return MaterializeResult(metadata={
        **link, **{k: round(v, 4) for k, v in averages.items()},
        "patterns": MetadataValue.md(table.round(3).to_markdown(index=False)),
        "missing_patterns": MetadataValue.json(missing), "dataset_version": base["dataset_version"]})


CAMERA_DIFF_ASSETS = [base_video_model, camera_diff_lora, camera_diff_summary]

"""CameraCLIP as an asset: trained on the latest Cinematic2K version, evaluated, logged and registered in MLflow."""

import hashlib
import json
import shutil
from dataclasses import asdict
from typing import List, Optional

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets_defs.automation import on_dataset_version_change
from assets_defs.ingestion import _failure
from assets_defs.labelling import cinematic2k
from assets_defs.scale_out import TRAINING_STEP_TAGS
from assets_defs.resources import CinepipeHome, MlflowTracking
from cinepipe import dataset as c2k
from cinepipe.clip_settings import CameraClipSettings, ClipModelSettings, TrainSettings
from cinepipe.diffusion_settings import VideoFormat
from cinepipe.figures import confusion_figure
from cinepipe.labels import FAMILIES
from cinepipe.taxonomy import TAXONOMY

HEADLINE = ("test_t2v_r1", "test_v2t_r1", "test_t2v_r5", "test_direction_acc", "test_t2v_r1_meanpool",
            "test_direction_acc_meanpool", "base_t2v_r1", "test_zeroshot_framing_acc", "test_zeroshot_angle_acc",
            "test_zeroshot_movement_acc", "synthetic_test_t2v_r1", "synthetic_test_t2v_r1_meanpool",
            "synthetic_test_direction_acc", "synthetic_test_direction_acc_meanpool",
            "synthetic_window_test_zeroshot_movement_acc")


class CameraClipConfig(Config):
    arch: str = ClipModelSettings.arch
    pretrained: Optional[str] = None  # a local open_clip checkpoint file
    frames: int = ClipModelSettings.frames
    pooling: str = ClipModelSettings.pooling
    motion_features: str = ClipModelSettings.motion_features  # "flow" or "frames" (see cinepipe.clip_settings)
    appearance_input: bool = ClipModelSettings.appearance_input  # a small CNN over each frame's picture
    image_frames: Optional[int] = ClipModelSettings.image_frames  # frames through the image tower; None: all
    epochs: int = TrainSettings.epochs
    batch_size: int = TrainSettings.batch_size
    lr: float = TrainSettings.lr
    grad_accum: int = TrainSettings.grad_accum
    seed: int = TrainSettings.seed
    # each clip's caption with one label changed, to be scored below its own (cinepipe.clip_settings); weight 0: off
    hard_negative_weight: float = TrainSettings.hard_negative_weight
    hard_negatives: List[str] = list(TrainSettings.hard_negatives)
    label_prompt_weight: float = TrainSettings.label_prompt_weight  # each clip picks its labels' prompts; 0: off
    label_head_weight: float = TrainSettings.label_head_weight  # shared label classifiers on clip and caption; 0: off
    augment: bool = TrainSettings.augment  # clips shown mirrored / played backwards, labels following
    compare_mean_pooling: bool = True
    synthetic_films: int = CameraClipSettings.synthetic_films  # synthetic reel films trained on too; 0: none
    synthetic_test_films: int = CameraClipSettings.synthetic_test_films  # other synthetic films evaluated; 0: none
    # the synthetic clips also seen as a generated video is (a centred window at the generator's rate and size),
    # shown instead with probability window_rate (0: off); see cinepipe.clip_settings
    window_rate: float = TrainSettings.window_rate
    window_fps: float = CameraClipSettings.window.fps
    window_size: int = CameraClipSettings.window.size

    def settings(self) -> CameraClipSettings:
        return CameraClipSettings(
            model=ClipModelSettings(arch=self.arch, pretrained=self.pretrained, frames=self.frames,
                                    pooling=self.pooling, motion_features=self.motion_features,
                                    appearance_input=self.appearance_input, image_frames=self.image_frames),
            training=TrainSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                   grad_accum=self.grad_accum, seed=self.seed,
                                   hard_negative_weight=self.hard_negative_weight,
                                   hard_negatives=tuple(self.hard_negatives),
                                   label_prompt_weight=self.label_prompt_weight,
                                   label_head_weight=self.label_head_weight, augment=self.augment,
                                   window_rate=self.window_rate),
            compare_mean_pooling=self.compare_mean_pooling, synthetic_films=self.synthetic_films,
            synthetic_test_films=self.synthetic_test_films,
            window=VideoFormat(size=self.window_size, fps=self.window_fps) if self.window_rate > 0 else None)


def _settings_key(settings: CameraClipSettings) -> str:
    return hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=str).encode()).hexdigest()[:10]


@asset(group_name="camera_clip", deps=[cinematic2k], kinds={"pytorch", "mlflow"}, code_version="8",
       op_tags=TRAINING_STEP_TAGS,
       automation_condition=on_dataset_version_change())
def camera_clip(context: AssetExecutionContext, config: CameraClipConfig, home: CinepipeHome,
                mlflow: MlflowTracking) -> MaterializeResult:
    """CameraCLIP (open_clip image and text towers, an order-aware temporal module) trained with InfoNCE on the
    latest Cinematic2K version's train split and evaluated on its test split (films never seen in training),
    against the untrained model and against mean pooling; registered as a new ``CameraCLIP`` model version.
    A killed training resumes from its last epoch, in the same MLflow run."""
    from cinepipe.camera_clip import train_and_evaluate  # torch: imported when a training runs, not at load
    from cinepipe.clip_scorer import MODEL_NAME, register

    version = c2k.latest_version(home.path)
    if version is None:
        raise _failure(c2k.DatasetError("no Cinematic2K version yet: materialize cinematic2k first"))
    table = c2k.load_version(home.path, version)
    settings = config.settings()
    work = home.path / "models" / "camera_clip" / f"{version}-{_settings_key(settings)}"
    if (work / "done").exists():  # a finished training: a new materialization trains anew
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    resume_id = (work / "mlflow_run_id").read_text().strip() if (work / "mlflow_run_id").exists() else None
    tracker_run = mlflow.run(context, f"camera_clip {version}", dataset_version=version, resume_run_id=resume_id)
    with tracker_run as run:
        (work / "mlflow_run_id").write_text(run.run_id)
        run.log_params({"model": asdict(settings.model), "training": asdict(settings.training),
                        "compare_mean_pooling": settings.compare_mean_pooling, "dataset_rows": len(table),
                        "synthetic_films": settings.synthetic_films,
                        "synthetic_test_films": settings.synthetic_test_films,
                        "window": asdict(settings.window) if settings.window is not None else None})
        if resume_id:  # params are immutable in MLflow: the resumption is a tag
            run.set_tags({"cinepipe.resumed": "true"})
        run.log_dataset(table, c2k.NAME, version, str(c2k.version_path(home.path, version)))
        steps = {"temporal": 0, "mean": 0}

        def on_step(variant: str, step: int, values: dict) -> None:
            steps[variant] = step
            if step % 5 == 0:
                suffix = "" if variant == "temporal" else "_meanpool"
                run.log_metrics({f"train_loss{suffix}": values["loss"], f"lr{suffix}": values["lr"]}, step=step)

        def on_epoch(variant: str, epoch: int, record: dict) -> None:
            suffix = "" if variant == "temporal" else "_meanpool"
            run.log_metrics({f"epoch_loss{suffix}": record["loss"], f"epoch_seconds{suffix}": record["seconds"],
                             f"clips_per_s{suffix}": record["clips_per_s"]}, step=epoch)
            context.log.info(f"{variant} epoch {epoch}: loss {record['loss']:.3f}, {record['clips_per_s']:.1f} clips/s")

        try:
            result = train_and_evaluate(table, version, work, home.path / "cache" / "camera_clip", settings,
                                        on_step=on_step, on_epoch=on_epoch)
        except ValueError as err:
            raise _failure(err) from None
        run.log_metrics(result.metrics)
        run.log_metrics({f"clips_{s}": n for s, n in result.splits.items()})
        table_md = _evaluation_table(result.metrics)
        run.log_dict({"metrics": result.metrics, "history": result.history,
                      "definitions": "a retrieved clip whose labels equal the query's counts as a hit "
                                     "(see cinepipe.clip_eval)"}, "evaluation.json")
        for family in FAMILIES:
            truth, predicted = result.predictions[family]
            pairs = [(t, p) for t, p in zip(truth, predicted) if t is not None]
            if pairs:
                from cinepipe.label_eval import confusion

                matrix = confusion([t for t, _ in pairs], [p for _, p in pairs], TAXONOMY.values(family))
                run.log_figure(confusion_figure(matrix, f"CameraCLIP zero-shot {family} (test split)"),
                               f"confusion_{family}.png", "confusion")
        model_version = register(run, result.checkpoint, version, {"dagster.run_id": context.run.run_id})
        run.set_tags({"cinepipe.model_version": f"{MODEL_NAME}/{model_version}"})
        link = MlflowTracking.link_metadata(run)
    (work / "done").write_text(model_version)
    for resumable in work.glob("*.ckpt"):  # the model is registered: the per-epoch checkpoints are spent
        resumable.unlink()
    if result.cache.skipped:
        context.log.warning(f"{len(result.cache.skipped)} clips could not be decoded: "
                            + "; ".join(list(result.cache.skipped.values())[:3]))
    return MaterializeResult(metadata={
        **link,
        **{k: round(float(result.metrics[k]), 4) for k in HEADLINE if k in result.metrics},
        "dataset_version": version,
        "model": f"{MODEL_NAME} version {model_version}",
        "clips": MetadataValue.json(result.splits),
        "evaluation": MetadataValue.md(table_md),
        "hit_definition": "a retrieved clip whose framing, angle and movement equal the query's counts as a hit",
    })


def _evaluation_table(metrics: dict) -> str:
    rows = []
    for name in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_median_rank", "v2t_r1", "v2t_r5", "v2t_r10",
                 "v2t_median_rank", "zeroshot_framing_acc", "zeroshot_angle_acc", "zeroshot_movement_acc",
                 "direction_acc"):
        rows.append({"metric": name, "CameraCLIP": metrics.get(f"test_{name}"),
                     "mean pooling": metrics.get(f"test_{name}_meanpool"),
                     "before fine-tuning": metrics.get(f"base_{name}")})
    return pd.DataFrame(rows).round(3).to_markdown(index=False)


CAMERA_CLIP_ASSETS = [camera_clip]

"""CameraCLIP end to end on a Cinematic2K version: cache frames, train, evaluate against baselines, save.

``train_and_evaluate`` trains the order-aware model (the product) and, in the same call, the same model with mean
pooling (the baseline the issue asks for); both start from the same weights, and those weights are evaluated
too ("before fine-tuning"). Metrics are prefixed ``test_`` (the product), ``base_`` (before fine-tuning) and
suffixed ``_meanpool`` (the mean-pooling model), e.g. ``test_t2v_r1``, ``base_t2v_r1``, ``test_t2v_r1_meanpool``.
The test split holds films never seen in training. By default the training split is joined by synthetic clips
of the built-in reel's renderer (``cinepipe.clip_synthetic``; ``settings.synthetic_films``), films of their own
seed, never the dataset's; other synthetic films, never trained on, are evaluated too (``synthetic_test_``
metrics: 80 clips by default against the default reel's 8 test clips). See ``cinepipe.clip_eval`` for the metric
definitions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from cinepipe.clip_data import FrameCache, build_frame_cache, label_key
from cinepipe.clip_eval import direction_test, retrieval_metrics, zero_shot
from cinepipe.clip_model import CameraClip, build_model, save_checkpoint
from cinepipe.clip_settings import CameraClipSettings, ClipModelSettings
from cinepipe.clip_synthetic import SYNTHETIC_SEED, synthetic_clips
from cinepipe.clip_train import embed_videos, text_encoder, train
from cinepipe.labels import FAMILIES


@dataclass
class CameraClipResult:
    metrics: dict
    predictions: dict  # family -> (truth, predicted) lists on the test split, for confusion matrices
    history: dict  # "temporal"/"mean" -> per-epoch records
    checkpoint: Path
    cache: FrameCache
    splits: dict  # split -> clip count


def evaluate(model: CameraClip, tokenizer, cache: FrameCache, rows: list[dict], prefix: str = "",
             suffix: str = "") -> tuple[dict, dict]:
    """All test metrics of one model on ``rows``; returns (metrics, predictions per family)."""
    video = embed_videos(model, cache, [r["shot_id"] for r in rows])
    encode = text_encoder(model, tokenizer)
    text = encode([r["caption"] for r in rows])
    keys = [label_key(r) for r in rows]
    metrics = retrieval_metrics(video, text, keys)
    zs, predicted = zero_shot(video, {f: [r[f] for r in rows] for f in FAMILIES}, encode)
    metrics.update(zs)
    metrics.update(direction_test(video, rows, encode))
    metrics = {f"{prefix}{k}{suffix}": v for k, v in metrics.items()}
    predictions = {f: ([r[f] for r in rows], predicted[f]) for f in FAMILIES}
    return metrics, predictions


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))


def train_and_evaluate(table: pd.DataFrame, version: str, work_dir: Path, cache_root: Path,
                       settings: CameraClipSettings = CameraClipSettings(), extra: dict | None = None,
                       on_step: Callable[[str, int, dict], None] | None = None,
                       on_epoch: Callable[[str, int, dict], None] | None = None,
                       device: torch.device | str | None = None) -> CameraClipResult:
    """Train CameraCLIP on a dataset version's train split and evaluate it on its test split.

    ``work_dir`` holds the per-epoch checkpoints (``temporal.ckpt``, ``mean.ckpt``): calling again after a kill
    resumes them. The final model is written to ``work_dir / "camera_clip.pt"``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    labelled = table[table[list(FAMILIES)].notna().all(axis=1)]  # a clip needs all three labels to be a pair
    cache = build_frame_cache(labelled, version, cache_root, settings.model.frames, _image_size(settings.model),
                              settings.cache_workers)
    usable = labelled[labelled["shot_id"].isin(set(cache.shot_ids))]
    rows = {s: usable[usable["split"] == s].to_dict("records") for s in ("train", "val", "test")}
    if not rows["train"] or not rows["test"]:
        raise ValueError(f"dataset {version}: needs labelled clips in train and test "
                         f"(train {len(rows['train'])}, test {len(rows['test'])})")
    train_rows, train_cache = rows["train"], cache
    size = _image_size(settings.model)
    if settings.synthetic_films > 0:
        synthetic = synthetic_clips(cache_root, settings.synthetic_films, settings.model.frames, size,
                                    workers=settings.cache_workers)
        train_rows = rows["train"] + synthetic.rows
        train_cache = replace(cache, frames=np.concatenate([np.asarray(cache.frames), synthetic.frames]),
                              shot_ids=list(cache.shot_ids) + [r["shot_id"] for r in synthetic.rows])
    windows = None
    if settings.synthetic_films > 0 and settings.window is not None and settings.training.window_rate > 0:
        seen = synthetic_clips(cache_root, settings.synthetic_films, settings.model.frames, size,
                               workers=settings.cache_workers, window=settings.window)
        windows = replace(cache, frames=seen.frames, shot_ids=[r["shot_id"] for r in seen.rows])
    held_out = {}
    if settings.synthetic_test_films > 0:
        for prefix, window in (("synthetic_test_", None), ("synthetic_window_test_", settings.window)):
            if prefix != "synthetic_test_" and window is None:
                continue
            clips = synthetic_clips(cache_root, settings.synthetic_test_films, settings.model.frames, size,
                                    seed=SYNTHETIC_SEED + 1, workers=settings.cache_workers, window=window)
            held_out[prefix] = (replace(cache, frames=clips.frames, shot_ids=[r["shot_id"] for r in clips.rows]),
                                clips.rows)
    metrics: dict = {}
    history: dict = {}
    predictions: dict = {}
    variants = [("temporal", settings.model)]
    if settings.compare_mean_pooling:
        variants.append(("mean", replace(settings.model, pooling="mean", motion_input=False)))
    for name, model_settings in variants:
        _seeded(settings.training.seed)
        model, tokenizer = build_model(model_settings, device)
        if name == "temporal":  # the weights both variants start from, before fine-tuning
            base, _ = evaluate(model, tokenizer, cache, rows["test"], prefix="base_")
            metrics.update(base)
        started = time.perf_counter()
        state = train(model, tokenizer, train_cache, train_rows, settings.training, work_dir / f"{name}.ckpt",
                      extra, on_step=(lambda s, m, n=name: on_step(n, s, m)) if on_step else None,
                      on_epoch=(lambda e, r, n=name: on_epoch(n, e, r)) if on_epoch else None, windows=windows)
        history[name] = state.history
        suffix = "" if name == "temporal" else "_meanpool"
        result, predicted = evaluate(model, tokenizer, cache, rows["test"], prefix="test_", suffix=suffix)
        metrics.update(result)
        metrics[f"train_seconds{suffix}"] = time.perf_counter() - started
        if rows["val"]:
            val, _ = evaluate(model, tokenizer, cache, rows["val"], prefix="val_", suffix=suffix)
            metrics.update({k: v for k, v in val.items() if "r1" in k or "direction" in k})
        for prefix, (clips_cache, clip_rows) in held_out.items():
            synthetic_test, _ = evaluate(model, tokenizer, clips_cache, clip_rows, prefix=prefix, suffix=suffix)
            metrics.update({k: v for k, v in synthetic_test.items() if "zeroshot_acc_" not in k})  # not per pattern
        if name == "temporal":
            predictions = predicted
            save_checkpoint(work_dir / "camera_clip.pt", model, {"dataset_version": version,
                                                                 "training": asdict(settings.training)})
    return CameraClipResult(metrics, predictions, history, work_dir / "camera_clip.pt", cache,
                            {**{s: len(r) for s, r in rows.items()}, "synthetic": len(train_rows) - len(rows["train"])})


def _image_size(model_settings: ClipModelSettings) -> int:
    import open_clip

    from cinepipe.clip_model import register_configs

    register_configs()
    config = open_clip.get_model_config(model_settings.arch) or {}
    size = config.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)

"""CameraDiff: a text-to-video base trained on Cinematic2K and one LoRA per cinematic pattern, with evaluation.

- ``train_base``: the base model on every clip of the dataset's train and val splits (the tiny default from
  scratch; a local pipeline may be fine-tuned or used as it is with ``steps=0``), saved to a directory.
- ``train_lora``: one pattern's LoRA (peft, through diffusers' ``add_adapter``) on the clips labelled with it, their
  captions as prompts, and (``LoraSettings.augment``) on the clips that show the pattern once mirrored or played
  backwards (a pan_right reversed is a pan_left; ``cinepipe.clip_augment``), captioned for what they show; target
  modules by the pattern's family; saved as ``pytorch_lora_weights.safetensors`` in the
  diffusers format (``AnimateDiffPipeline.load_lora_weights`` and ``unet.load_lora_adapter`` read the UNet's,
  ``WanPipeline.load_lora_weights`` a Wan model's).
- ``evaluate_lora``: N videos from the held-out prompts with and without the LoRA (same prompts, same noise):
  motion-control accuracy from the project's own camera-motion estimator for movement patterns, and CameraCLIP's
  zero-shot accuracy and score when a CameraCLIP model is given; a preview GIF.

Motion-control accuracy (``motion_control_acc``): the fraction of generated videos whose measured image motion is
the pattern's (``TAXONOMY.image_motion``: pan_left and truck_left both move the image "pan-", zoom_in and dolly_in
"zoom+", …), by the motion estimator's small-video mode (dense flow; ``cinepipe.motion.image_motion``). At the
embedded default's 32 pixels there is no parallax to see, so dolly and zoom, truck and pan, are judged alike; the
estimator's ceiling is reported beside it: the same measure on the pattern's own training clips
(``motion_estimator_ceiling``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cinepipe.captions import caption, pattern_prompts
from cinepipe.clip_augment import TRANSFORMS, transform_clips, transformed_movement
from cinepipe.diffusion_settings import GENERIC_CAPTION, BaseModelSettings, LoraEvalSettings, LoraSettings, VideoFormat
from cinepipe.diffusion_train import train_flow
from cinepipe.media import atomic_dir, atomic_path
from cinepipe.taxonomy import STATIC, TAXONOMY
from cinepipe.video_data import decode_windows, video_cache
from cinepipe.video_model import VideoModel

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
ADAPTER_INFO = "adapter.json"


class CameraDiffError(ValueError):
    """A training that cannot run on this data (one line, with the reason)."""


@dataclass
class BaseResult:
    path: Path
    history: list[dict]
    clips: int
    skipped: dict
    seconds: float
    heldout: dict = field(default_factory=dict)  # noise level -> denoising error on the test split's clips


@dataclass
class LoraResult:
    path: Path
    history: list[dict]
    clips: int  # clips labelled with the pattern
    seconds: float
    training_clips: dict = field(default_factory=dict)  # clips trained on, per transform (identity, mirror, ...)
    motion_weight: float = 0.0  # the motion term's weight in the loss, scaled (LoraSettings.motion_loss_weight)
    pace: float = 1.0  # how much faster than real time the training clips played (LoraSettings.pace_target)
    zoom_boost: float = 0.0  # the log-scale added over each training window (LoraSettings.zoom_boost; - zooms out)


# ---- the base ----------------------------------------------------------------------------------------------

def training_rows(table: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
    return table[table["split"].isin(splits)]


def train_base(table: pd.DataFrame, version: str, out_dir: Path, cache_root: Path,
               settings: BaseModelSettings = BaseModelSettings(), device: str | None = None,
               on_step: Callable[[int, dict], None] | None = None) -> BaseResult:
    """Train (or take as it is) the base model and write it to ``out_dir`` atomically."""
    started = time.perf_counter()
    rows = training_rows(table, settings.splits)
    if settings.source:
        model = VideoModel.load(settings.source, settings.format, device)
    else:
        model = VideoModel.create_tiny(settings.tiny, settings.format, settings.seed, device)
    history: list[dict] = []
    skipped: dict = {}
    clips = 0
    if settings.steps > 0:
        cache = video_cache(rows, version, cache_root, settings.format)
        skipped = cache.skipped
        rows = rows[rows["shot_id"].isin(set(cache.shot_ids))]
        if rows.empty:
            raise CameraDiffError(f"dataset {version}: no decodable clips in splits {', '.join(settings.splits)}")
        clips = len(rows)
        frames = cache.frames[cache.rows(rows["shot_id"].tolist())]
        captions = [GENERIC_CAPTION] * len(rows) if settings.captions == "generic" else rows["caption"].tolist()
        model.denoiser.requires_grad_(True)
        history = train_flow(model, np.asarray(frames), captions, model.denoiser.parameters(), settings.steps,
                             settings.batch_size, settings.lr, settings.warmup_steps, settings.weight_decay,
                             settings.seed, on_step)
    heldout = {}
    test = training_rows(table, ("test",))
    if not test.empty:
        heldout = denoising_error(model, decode_windows(test, model.format))
    model.info.update(dataset_version=version, base_settings=json.loads(json.dumps(asdict(settings), default=str)),
                      trained_clips=clips, heldout_denoising_error={str(k): v for k, v in heldout.items()})
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save(tmp)
    return BaseResult(out_dir, history, clips, skipped, time.perf_counter() - started, heldout)


DENOISING_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def denoising_error(model: VideoModel, frames: np.ndarray, sigmas: tuple[float, ...] = DENOISING_SIGMAS,
                    seeds: int = 4, caption_text: str = GENERIC_CAPTION) -> dict[float, float]:
    """Mean squared error, per noise level, between clean clips (uint8 [N, T, S, S, 3]) and the model's denoised
    estimate of them (``x - sigma * flow``, from ``seeds`` noise draws): a quality measure comparable across runs
    and across what the transformer predicts (flow or x0). Lower is better; at noise 1 it is the error of
    guessing the clip from nothing."""
    import torch

    if len(frames) == 0:
        return {}
    x0 = model.encode_video(frames)
    text = model.encode_text([caption_text] * len(frames))
    out = {}
    with torch.no_grad():
        for s in sigmas:
            errors = []
            for seed in range(seeds):
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device, x0.dtype)
                xt = (1 - s) * x0 + s * noise
                flow = model.predict(xt, torch.full((len(x0),), s, device=x0.device, dtype=x0.dtype), text)
                errors.append(float(((xt - s * flow - x0).float() ** 2).mean()))
            out[float(s)] = round(float(np.mean(errors)), 5)
    return out


# ---- LoRAs --------------------------------------------------------------------------------------------------

def lora_targets(pattern: str, settings: LoraSettings, arch: str = "unet") -> list[str] | str:
    """peft's ``target_modules`` for the pattern's family on a denoiser of ``arch`` ("unet" or "wan"): a list of
    module-name suffixes or a regular expression."""
    targets = settings.targets[arch][TAXONOMY.family_of(pattern)]
    return targets if isinstance(targets, str) else list(targets)


def pattern_rows(table: pd.DataFrame, pattern: str, splits: tuple[str, ...] = ("train", "val")) -> pd.DataFrame:
    family = TAXONOMY.family_of(pattern)
    rows = training_rows(table, splits)
    return rows[rows[family] == pattern]


def add_lora(model: VideoModel, pattern: str, settings: LoraSettings) -> None:
    from peft import LoraConfig

    model.denoiser.requires_grad_(False)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                        target_modules=lora_targets(pattern, settings, model.arch), init_lora_weights=True)
    model.denoiser.add_adapter(config, adapter_name=pattern)
    model.denoiser.set_adapters([pattern])


def _lora_prefix(model: VideoModel) -> str:
    """The key prefix of the diffusers LoRA format: the pipeline component the adapter belongs to."""
    return "unet" if model.arch == "unet" else "transformer"


def save_lora(model: VideoModel, pattern: str, out_dir: Path, extra: dict | None = None) -> Path:
    """The adapter in the diffusers LoRA format (keys prefixed ``unet.`` for the UNet, as ``AnimateDiffPipeline``
    reads them, ``transformer.`` for Wan, as ``WanPipeline`` does; safetensors), atomically."""
    from diffusers import AnimateDiffPipeline, WanPipeline
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model.denoiser, adapter_name=pattern)
    metadata = model.denoiser.peft_config[pattern].to_dict()
    metadata = json.loads(json.dumps(metadata, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if _lora_prefix(model) == "unet":
            AnimateDiffPipeline.save_lora_weights(str(tmp), unet_lora_layers=state, weight_name=LORA_WEIGHTS,
                                                  unet_lora_adapter_metadata=metadata)
        else:
            WanPipeline.save_lora_weights(str(tmp), transformer_lora_layers=state, weight_name=LORA_WEIGHTS,
                                          transformer_lora_adapter_metadata=metadata)
        (tmp / ADAPTER_INFO).write_text(json.dumps({"pattern": pattern, **(extra or {})}, indent=1, default=str))
    return out_dir


def load_lora(model: VideoModel, path: str | Path, name: str | None = None) -> str:
    """Load a saved adapter onto the model under ``name`` (default: its pattern); returns the name."""
    path = Path(path)
    if not (path / LORA_WEIGHTS).exists():
        raise CameraDiffError(f"{path}: no {LORA_WEIGHTS}")
    info = json.loads((path / ADAPTER_INFO).read_text()) if (path / ADAPTER_INFO).exists() else {}
    name = name or info.get("pattern") or path.name
    model.denoiser.load_lora_adapter(str(path), adapter_name=name, prefix=_lora_prefix(model),
                                     weight_name=LORA_WEIGHTS)
    return name


def train_lora(model: VideoModel, table: pd.DataFrame, version: str, pattern: str, out_dir: Path,
               cache_root: Path, settings: LoraSettings = LoraSettings(),
               on_step: Callable[[int, dict], None] | None = None) -> LoraResult:
    """Train ``pattern``'s LoRA on the clips labelled with it and save it (the adapter stays on ``model``,
    active, for evaluation)."""
    started = time.perf_counter()
    rows = training_rows(table, ("train", "val"))
    cache = video_cache(rows, version, cache_root, model.format)
    frames, captions, counts = lora_training_set(table, pattern, cache, settings.augment)
    pace = lora_pace(table, pattern, frames, model.format, settings)
    boost = lora_zoom_boost(pattern, settings)
    if pace > 1.0 or boost:
        # the same clips, windows at a lower rate and, for a zoom boost, at twice the size (a cache per rate and
        # size, shared by the partitions), magnified further over time and scaled back
        fmt = replace(model.format, fps=model.format.fps / pace, size=model.format.size * (2 if boost else 1))
        cache = video_cache(rows, version, cache_root, fmt)
        frames, captions, counts = lora_training_set(table, pattern, cache, settings.augment)
        if boost:
            frames = zoom_clips(frames, boost, model.format.size)
    own = counts.get(TRANSFORMS[0].name, 0)
    if own < max(1, settings.min_clips):
        raise CameraDiffError(f"pattern {pattern}: {own} training clips in dataset {version} "
                              f"(at least {max(1, settings.min_clips)} needed)")
    add_lora(model, pattern, settings)
    params = [p for n, p in model.denoiser.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    family = TAXONOMY.family_of(pattern)
    motion_weight = lora_motion_weight(pattern, frames, settings)
    history = train_flow(model, frames, captions, params, settings.steps_for(family), settings.batch_size,
                         settings.lr, settings.warmup_steps, 0.0, settings.seed, on_step, motion_weight)
    save_lora(model, pattern, out_dir, {"dataset_version": version, "clips": own, "training_clips": counts,
                                        "targets": lora_targets(pattern, settings, model.arch),
                                        "motion_weight": motion_weight, "pace": pace, "zoom_boost": boost,
                                        "settings": asdict(settings)})
    return LoraResult(Path(out_dir), history, own, time.perf_counter() - started, counts, motion_weight, pace,
                      boost)


def lora_zoom_boost(pattern: str, settings: LoraSettings) -> float:
    """The log-scale ``pattern``'s training windows gain over their length (``LoraSettings.zoom_boost``): positive
    for a movement whose image motion is a zoom in (zoom_in, dolly_in), negative for a zoom out, else 0."""
    motion = TAXONOMY.image_motion.get(pattern) if TAXONOMY.family_of(pattern) == "movement" else None
    if settings.zoom_boost <= 0 or motion not in ("zoom+", "zoom-"):
        return 0.0
    return settings.zoom_boost if motion == "zoom+" else -settings.zoom_boost


def zoom_clips(frames: np.ndarray, boost: float, size: int) -> np.ndarray:
    """Clips (uint8 [N, T, H, W, 3]) magnified about the centre, frame t by exp(|boost| k / (T - 1)) with k = t
    when ``boost`` > 0 (the picture grows: a zoom in) and k = T - 1 - t when it is negative (it shrinks), then
    scaled to ``size`` x ``size`` (area averaging)."""
    import cv2

    frames = np.asarray(frames)
    n, t, h, w = frames.shape[:4]
    out = np.empty((n, t, size, size, 3), np.uint8)
    for j in range(t):
        k = j if boost > 0 else t - 1 - j
        m = math.exp(abs(boost) * k / max(1, t - 1))
        # x_out = m (x_in - c) + c about the centre c of the pixel grid
        matrix = np.array([[m, 0.0, (1 - m) * (w - 1) / 2], [0.0, m, (1 - m) * (h - 1) / 2]], np.float32)
        for i in range(n):
            picture = cv2.warpAffine(np.ascontiguousarray(frames[i, j]), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
            out[i, j] = cv2.resize(picture, (size, size), interpolation=cv2.INTER_AREA)
    return out


def motion_loss_scale(frames: np.ndarray) -> float:
    """The clips' (uint8 [N, T, H, W, 3]) variance over their mean squared change from frame to frame (in pixels
    scaled to [-1, 1]): what makes ``LoraSettings.motion_loss_weight`` mean the same for a slow zoom and a fast pan.
    1 for still clips (nothing to scale up)."""
    x = np.asarray(frames, np.float32) / 127.5 - 1.0
    change = float(np.mean(np.diff(x, axis=1) ** 2)) if x.shape[1] > 1 else 0.0
    return float(x.var()) / change if change > 1e-8 else 1.0


def lora_motion_weight(pattern: str, frames: np.ndarray, settings: LoraSettings) -> float:
    """The motion term's weight in the loss of ``pattern``'s LoRA on ``frames``: ``LoraSettings.motion_loss_weight``
    scaled by :func:`motion_loss_scale` for a movement, 0 for a framing or an angle."""
    if TAXONOMY.family_of(pattern) != "movement":
        return 0.0
    return settings.motion_loss_weight * motion_loss_scale(frames)


def lora_pace(table: pd.DataFrame, pattern: str, frames: np.ndarray, fmt: VideoFormat, settings: LoraSettings
              ) -> float:
    """How much faster than real time ``pattern``'s LoRA sees its training clips (``frames``: their windows at
    ``fmt``'s rate): 1 for framing, angle and a movement that changes enough from frame to frame, else
    sqrt(:func:`motion_loss_scale` / ``settings.pace_target``) rounded down to a half, at most ``settings.max_pace``
    and at most what keeps the window inside the shortest clip the pattern trains on."""
    if TAXONOMY.family_of(pattern) != "movement" or settings.pace_target <= 0 or len(frames) == 0:
        return 1.0
    scale = motion_loss_scale(frames)
    if scale <= settings.pace_target:
        return 1.0
    pace = min(settings.max_pace, math.sqrt(scale / settings.pace_target))
    rows = training_rows(table, ("train", "val"))
    shown = pd.concat([_rows_showing(rows, pattern, t) for t in _transforms(settings.augment)])
    durations = shown["duration_s"].dropna() if "duration_s" in shown else pd.Series(dtype=float)
    if len(durations) and fmt.frames > 1:
        pace = min(pace, float(durations.min()) * fmt.fps / (fmt.frames - 1))
    return max(1.0, math.floor(pace * 2) / 2)


def _transforms(augment: bool) -> tuple:
    return TRANSFORMS if augment else TRANSFORMS[:1]


def _rows_showing(rows: pd.DataFrame, pattern: str, transform) -> pd.DataFrame:
    """The rows whose clip shows ``pattern`` once ``transform`` is applied to it."""
    family = TAXONOMY.family_of(pattern)
    if family != "movement":
        return rows[rows[family] == pattern]
    return rows[[transformed_movement(m, transform) == pattern for m in rows["movement"]]]


def lora_training_set(table: pd.DataFrame, pattern: str, cache, augment: bool = True
                      ) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """A LoRA's training clips (uint8 [N, T, S, S, 3]) and captions: the train and val clips labelled with the
    pattern and, with ``augment``, every clip that shows the pattern once mirrored or played backwards (see
    ``cinepipe.clip_augment``), captioned for what it then shows. Also the number of clips per transform."""
    rows = pattern_rows(table, pattern) if not augment else training_rows(table, ("train", "val"))
    rows = rows[rows["shot_id"].isin(set(cache.shot_ids))]
    frames: list[np.ndarray] = []
    captions: list[str] = []
    counts: dict[str, int] = {}
    for transform in _transforms(augment):
        hit = _rows_showing(rows, pattern, transform)
        counts[transform.name] = len(hit)
        if hit.empty:
            continue
        frames.append(transform_clips(np.asarray(cache.frames[cache.rows(hit["shot_id"].tolist())]), transform))
        if transform == TRANSFORMS[0]:
            captions += hit["caption"].tolist()
        else:  # the caption of what the transformed clip shows, its template picked as the dataset's are
            captions += [caption(f"{r.shot_id}#{transform.name}", r.framing, r.angle,
                                 transformed_movement(r.movement, transform)) for r in hit.itertuples()]
    if not frames:
        return np.zeros((0,), np.uint8), [], counts
    return np.concatenate(frames), captions, counts


# ---- evaluation ---------------------------------------------------------------------------------------------

def video_motion(frames_rgb: np.ndarray, fps: float) -> dict:
    """The project's camera-motion estimator in its small-video mode (``cinepipe.motion.image_motion``: dense flow
    and a robust shift-and-scale fit; a 32-pixel clip has too few corners for the shot-level tracker) on one video,
    uint8 RGB [T, H, W, 3]: ``pan``, ``tilt``, ``zoom`` and the image-motion label (``pan-``, ``zoom+``, ...,
    ``static``)."""
    from cinepipe.motion import image_motion

    return image_motion([np.ascontiguousarray(f[..., ::-1]) for f in frames_rgb], fps)


def motion_scores(pattern: str, measured: list[dict]) -> dict:
    """``acc``: the share of videos whose image moves the pattern's way; ``static_frac``: the share that does not
    move at all."""
    want = TAXONOMY.image_motion[pattern]
    n = max(1, len(measured))
    return {"acc": sum(m["label"] == want for m in measured) / n,
            "static_frac": sum(m["label"] == STATIC for m in measured) / n}


def _with_adapter(model: VideoModel, pattern: str | None) -> None:
    if pattern is None:
        model.denoiser.disable_adapters()
    else:
        model.denoiser.enable_adapters()
        model.denoiser.set_adapters([pattern])


def generate_pair(model: VideoModel, pattern: str, settings: LoraEvalSettings) -> tuple[list[str], np.ndarray,
                                                                                       np.ndarray, dict]:
    """The held-out prompts, the videos without and with the LoRA (same prompts, same noise), and costs."""
    prompts = pattern_prompts(pattern)
    prompts = [prompts[k % len(prompts)] for k in range(settings.samples)]
    seeds = [settings.seed + k for k in range(settings.samples)]
    noise = model.initial_noise(seeds)
    costs = {}
    videos = {}
    for name, adapter in (("base", None), ("lora", pattern)):
        _with_adapter(model, adapter)
        calls, started = model.calls, time.perf_counter()
        videos[name] = model.sample(prompts, seeds, settings.generation, latents=noise)
        costs[f"{name}_denoiser_calls"] = model.calls - calls
        costs[f"{name}_generate_seconds"] = time.perf_counter() - started
    _with_adapter(model, pattern)
    return prompts, videos["base"], videos["lora"], costs


def evaluate_lora(model: VideoModel, pattern: str, settings: LoraEvalSettings = LoraEvalSettings(),
                  scorer=None, ceiling_frames: np.ndarray | None = None) -> tuple[dict, dict]:
    """Metrics for one pattern (LoRA versus the same base without it) and the generated videos."""
    family = TAXONOMY.family_of(pattern)
    prompts, base, lora, costs = generate_pair(model, pattern, settings)
    metrics: dict = dict(costs)
    details: dict = {"prompts": prompts, "base": base, "lora": lora}
    if family == "movement":
        fps = model.format.fps
        measured = {k: [video_motion(v, fps) for v in videos] for k, videos in (("lora", lora), ("base", base))}
        for k, suffix in (("lora", ""), ("base", "_base")):
            s = motion_scores(pattern, measured[k])
            metrics[f"motion_control_acc{suffix}"] = s["acc"]
            metrics[f"motion_static_frac{suffix}"] = s["static_frac"]
        details["motion"] = measured
        if ceiling_frames is not None and len(ceiling_frames):
            truth = [video_motion(np.asarray(v), fps) for v in ceiling_frames]
            metrics["motion_estimator_ceiling"] = motion_scores(pattern, truth)["acc"]
    if scorer is not None:
        for k, videos, suffix in (("lora", lora, ""), ("base", base, "_base")):
            top = [c[family]["top"] for c in scorer.classify(videos)]
            metrics[f"cameraclip_pattern_acc{suffix}"] = float(np.mean([t == pattern for t in top]))
            scores = scorer.score(videos, prompts)
            metrics[f"cameraclip_score{suffix}"] = float(np.mean(np.diag(scores)))
    return metrics, details


# ---- previews -----------------------------------------------------------------------------------------------

def preview_gif(path: Path, base: np.ndarray, lora: np.ndarray, fps: float, scale: int = 2,
                count: int = 4) -> Path:
    """A grid GIF: one row per sample, the base (left) beside the LoRA (right)."""
    from PIL import Image

    count = min(count, len(base))
    gap = 2
    rows = []
    for k in range(count):
        pair = np.concatenate([base[k], np.full_like(base[k][:, :, :gap], 255), lora[k]], axis=2)
        rows.append(pair)
        rows.append(np.full_like(pair[:, :gap], 255))
    grid = np.concatenate(rows[:-1], axis=1)  # [T, H, W, 3]
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in grid]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000 / fps)), loop=0)
    return path


def write_video(path: Path, frames: np.ndarray, fps: float, scale: int = 4) -> Path:
    """One generated video, uint8 RGB [T, H, W, 3], as an H.264 MP4 (nearest-neighbour upscaled), atomically."""
    import subprocess

    from cinepipe.ffmpeg_tools import ffmpeg_exe

    frames = np.asarray(frames).repeat(scale, axis=1).repeat(scale, axis=2)
    t, h, w, _ = frames.shape
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(tmp)]
        done = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if done.returncode:
            raise RuntimeError(f"{path}: ffmpeg failed: {done.stderr.decode(errors='replace').strip()[-200:]}")
    return path



# ---- where the models live under the home -----------------------------------------------------------------

BASE_MODEL_NAME = "CameraDiff-base"


def lora_model_name(pattern: str) -> str:
    return f"CameraDiff-{pattern}"


def models_dir(home: Path) -> Path:
    return Path(home) / "models" / "camera_diff"


def current_base(home: Path) -> dict | None:
    """The base model the LoRAs train on: ``{"path", "dataset_version", "mlflow_run_id", "model_version"}``."""
    pointer = models_dir(home) / "base" / "current.json"
    return json.loads(pointer.read_text()) if pointer.exists() else None


def set_current_base(home: Path, record: dict) -> None:
    from cinepipe.media import write_json_atomic

    write_json_atomic(models_dir(home) / "base" / "current.json", record)


SUMMARY_COLUMNS = ("motion_control_acc", "motion_control_acc_base", "motion_static_frac",
                   "motion_estimator_ceiling", "cameraclip_pattern_acc", "cameraclip_pattern_acc_base",
                   "cameraclip_score", "cameraclip_score_base", "clips", "final_loss", "train_seconds")


def summary_table(tracker, base: dict) -> tuple[pd.DataFrame, dict]:
    """One row per pattern from its latest finished ``camera_diff_lora`` run on ``base`` (tags
    ``cinepipe.pattern`` and ``cinepipe.base_model``), and the averages over the movement patterns (motion) and
    over every pattern (CameraCLIP)."""
    from cinepipe.tracking import TAG_ASSET_KEY

    query = (f"tags.`{TAG_ASSET_KEY}` = 'camera_diff_lora' and tags.`cinepipe.base_model` = "
             f"'{base.get('model_version')}' and attributes.status = 'FINISHED'")
    runs = tracker.call(tracker.client.search_runs, [tracker.experiment_id], query,
                        order_by=["attributes.start_time DESC"], max_results=1000)
    rows, seen = [], set()
    for r in runs:
        pattern = r.data.tags.get("cinepipe.pattern")
        if pattern in seen or pattern not in TAXONOMY.patterns:
            continue
        seen.add(pattern)
        rows.append({"pattern": pattern, "family": TAXONOMY.family_of(pattern),
                     **{c: r.data.metrics.get(c) for c in SUMMARY_COLUMNS}})
    order = {p: i for i, p in enumerate(TAXONOMY.patterns)}
    table = pd.DataFrame(rows, columns=["pattern", "family", *SUMMARY_COLUMNS])
    table = table.sort_values("pattern", key=lambda s: s.map(order)).reset_index(drop=True)
    averages = {}
    movement = table[table["family"] == "movement"]
    for column, rows_ in (("motion_control_acc", movement), ("motion_control_acc_base", movement),
                          ("motion_estimator_ceiling", movement),
                          ("cameraclip_pattern_acc", table), ("cameraclip_pattern_acc_base", table)):
        values = pd.to_numeric(rows_[column], errors="coerce").dropna()
        if len(values):
            averages[f"{column}_mean"] = float(values.mean())
    if "motion_control_acc_mean" in averages and "motion_control_acc_base_mean" in averages:
        averages["motion_control_gain"] = averages["motion_control_acc_mean"] - averages["motion_control_acc_base_mean"]
    averages["patterns_trained"] = float(len(table))
    return table, averages


def load_registered(tracker, patterns: list[str], base_version: str | None = None,
                    device: str | None = None) -> tuple[VideoModel, dict]:
    """The registered base (latest, or ``base_version``) with the latest registered LoRA of every pattern loaded
    as adapters named by pattern (all inactive until ``set_adapters``); and what was loaded, by version."""
    import tempfile

    from cinepipe.model_registry import download_model

    unknown = [p for p in patterns if p not in TAXONOMY.patterns]
    if unknown:
        raise CameraDiffError(f"unknown pattern {unknown[0]!r} (one of: {', '.join(TAXONOMY.patterns)})")
    # the downloaded files are read into memory and deleted: repeated loads must not fill the temp disk
    with tempfile.TemporaryDirectory(prefix="cinepipe-camera-diff-") as tmp:
        work = Path(tmp)
        base_dir, version, _ = download_model(tracker, BASE_MODEL_NAME, "model", base_version, work / "base")
        model = VideoModel.load(base_dir, device=device)
        loaded = {"base": version}
        for pattern in dict.fromkeys(patterns):
            path, v, _ = download_model(tracker, lora_model_name(pattern), "adapter", None, work / pattern)
            load_lora(model, path, pattern)
            loaded[pattern] = v
    if len(loaded) > 1:
        model.denoiser.disable_adapters()
    return model, loaded


def activate(model: VideoModel, weights: dict[str, float]) -> None:
    """Set the active adapters and their weights (no file is read: switching between steps is cheap)."""
    active = {k: float(w) for k, w in weights.items()}
    if not active:
        model.denoiser.disable_adapters()
        return
    layers = _lora_layers(model)
    if layers and not layers[0].disable_adapters and list(layers[0].active_adapters) == list(active):
        # the same adapters, enabled: only their scales change (diffusers' set_adapters walks every module of the
        # denoiser and re-activates them, 15 % of a denoising step of the default UNet)
        for layer in layers:
            for name, weight in active.items():
                layer.set_scale(name, weight)
        return
    model.denoiser.enable_adapters()
    model.denoiser.set_adapters(list(active), list(active.values()))


def _lora_layers(model: VideoModel) -> list:
    """The denoiser's LoRA layers (peft ``BaseTunerLayer``), found once per set of loaded adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    key = tuple(sorted(getattr(model.denoiser, "peft_config", {}) or {}))
    cached = getattr(model, "_lora_layer_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, [m for m in model.denoiser.modules() if isinstance(m, BaseTunerLayer)])
        model._lora_layer_cache = cached
    return cached[1]

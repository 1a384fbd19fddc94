"""CameraCLIP's model: an open_clip CLIP whose image tower encodes sampled video frames, plus a temporal module.

Architecture. Any open_clip architecture by name (``ViT-B-32``, ...) or cinepipe's own small config
``cinepipe-tiny`` (registered with open_clip from ``cinepipe/data/open_clip/``: a 4-layer ViT on 64x64 frames and a
3-layer text transformer, the embedded default that trains on two CPU cores in minutes). Weights are created fresh,
or loaded from a local open_clip checkpoint file (``pretrained``: a path; nothing is downloaded).

Video encoding. ``frames`` frames are sampled evenly from the clip; ``image_frames`` of them (spread evenly, first
and last included; default 4 of 8) go through the image tower one by one, the motion and appearance CNNs below see
all of them. The tower is three quarters of a training step's time with all 8 frames: with 4 the default trains on
twice the synthetic clips in 1.25x the time. The frame embeddings are then pooled over time:

- ``pooling="temporal"`` (default): a small transformer over the frame embeddings with learned positions, so frame
  order counts (mean pooling cannot tell pan left from pan right: the same frames in reverse give the same mean).
  Its output is added to the mean of the frames through a projection initialised at zero, so an untrained temporal
  module leaves a pretrained CLIP exactly as it was (mean pooling) and training only adds what order tells.
- ``pooling="mean"``: the mean of the frame embeddings (the baseline to compare with).

With temporal pooling, ``motion_input`` (default on) adds a small CNN (``MotionEncoder``), also through a
zero-initialised projection, over how the picture changes between frames: camera movement lives there, and
single-frame embeddings carry it only indirectly. By default (``motion_features="flow"``) the CNN sees the dense
optical flow between consecutive sampled frames (``optical_flow``: OpenCV's Farneback, on the CPU whatever the
model's device, about 1 ms a frame pair at 64 px) beside the grey frames and their differences. A flow field is the
same for a pan over a street as over a field (uniform), for a zoom anywhere (radial): a pattern that carries over
to films never seen, where raw pixel differences depend on the scene's texture. ``"frames"`` leaves the flow out.
Each frame's contrast is normalised before the flow is computed, so a fade at a clip's end is not read as motion.

``appearance_input`` adds a small convolutional network (``AppearanceEncoder``, with group normalisation) over each
frame's colour picture, also through a zero-initialised projection. Framing is the size of the subject in the
picture; the tiny ViT, trained from nothing on a few hundred clips, hardly learns it (a framing probe on its video
embedding reads 0.36 of five classes), while a CNN has the prior for it.

Everything is device-agnostic: ``default_device()`` picks CUDA when present, the CPU otherwise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cinepipe.clip_settings import ClipModelSettings

CONFIG_DIR = Path(__file__).parent / "data" / "open_clip"


@lru_cache(maxsize=1)
def register_configs() -> list[str]:
    """Register cinepipe's open_clip configs (``cinepipe-tiny``) with open_clip; returns their names."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TemporalPool(nn.Module):
    """Frame embeddings [B, T, D] -> one video embedding [B, D]: mean + a zero-initialised projection of an
    order-aware transformer's summary token."""

    def __init__(self, dim: int, max_frames: int, layers: int, heads: int):
        super().__init__()
        self.position = nn.Parameter(torch.randn(1, max_frames + 1, dim) * 0.02)
        self.summary = nn.Parameter(torch.zeros(1, 1, dim))
        heads = heads if dim % heads == 0 else 1
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, _ = frames.shape
        tokens = torch.cat([self.summary.expand(b, -1, -1), frames], 1) + self.position[:, :t + 1]
        return frames.mean(1) + self.out(self.encoder(tokens)[:, 0])


FLOW_UNIT = 2.0  # pixels of flow (at the model's frame size) per unit of the motion CNN's input


def contrast_normalised(grey: torch.Tensor, floor: float) -> torch.Tensor:
    """Each frame of ``grey`` [..., H, W] to zero mean and unit standard deviation (the deviation taken as at least
    ``floor``, so a flat frame stays flat): a fade or a flash changes a frame's brightness, not its motion."""
    return (grey - grey.mean((-2, -1), keepdim=True)) / grey.std((-2, -1), keepdim=True).clamp(min=floor)


@torch.no_grad()
def optical_flow(grey: torch.Tensor) -> torch.Tensor:
    """Dense optical flow between consecutive frames: grey frames [B, T, H, W] -> [B, 2 (T - 1), H, W]
    (x then y displacement of each pair, in units of ``FLOW_UNIT`` pixels; x > 0: the picture moves right)."""
    import cv2
    import numpy as np

    # each frame's contrast is normalised first (without this, a clip ending in a fade to black read as a fast pan
    # in its last frame pair)
    frames = contrast_normalised(grey.detach().float(), 0.01).mul(48).add(128).clamp(0, 255).round()
    frames = frames.to(torch.uint8).cpu().numpy()
    b, t, h, w = frames.shape
    out = np.zeros((b, max(0, t - 1), 2, h, w), np.float32)
    for i in range(b):
        for j in range(t - 1):
            flow = cv2.calcOpticalFlowFarneback(frames[i, j], frames[i, j + 1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
            out[i, j] = flow.transpose(2, 0, 1)
    return torch.from_numpy(out).flatten(1, 2).div_(FLOW_UNIT).to(grey.device)


class MotionEncoder(nn.Module):
    """The clip's grey frames and consecutive differences stacked as channels [B, 2T-1, H, W] (and, with ``flow``,
    the optical flow between consecutive frames, 2(T-1) more channels) -> a small CNN -> an embedding, added
    through a zero-initialised projection. Channel order is time order, so the CNN sees which way the picture
    moved: direct evidence of pan left versus right, zoom in versus out."""

    def __init__(self, frames: int, dim: int, flow: bool = False):
        super().__init__()
        self.flow = flow
        channels = 2 * frames - 1 + (2 * (frames - 1) if flow else 0)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 48, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(48, 96, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(96, 128, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128 * 16, dim), nn.GELU())
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, video: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        """``video``: normalised frames [B, T, 3, H, W]; ``flow``: ``optical_flow`` of them (when built with it)."""
        grey = video.mean(2)  # [B, T, H, W]
        grey = contrast_normalised(grey, 0.05)  # as for the flow: a fade is not motion
        channels = [grey, grey[:, 1:] - grey[:, :-1]] + ([flow] if self.flow else [])
        return self.out(self.net(torch.cat(channels, 1)))


class AppearanceEncoder(nn.Module):
    """Each frame's colour picture through a small CNN, pooled to a 4x4 grid (where things are, and how large),
    averaged over time -> an embedding, added through a zero-initialised projection. Framing is the size of the
    subject in the picture: a convolutional prior for it, which a small ViT trained from nothing learns slowly."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GroupNorm(8, 32), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.GroupNorm(8, 128), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128 * 16, dim), nn.GELU())
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video``: normalised frames [B, T, 3, H, W]."""
        b, t = video.shape[:2]
        return self.out(self.net(video.flatten(0, 1)).view(b, t, -1).mean(1))


def image_frame_positions(frames: int, image_frames: int | None) -> list[int]:
    """Which of a clip's ``frames`` sampled frames the image tower encodes: ``image_frames`` of them spread evenly
    (first and last included), or all of them (None, or at least ``frames``)."""
    if image_frames is None or image_frames >= frames:
        return list(range(frames))
    if image_frames <= 1:
        return [frames // 2]
    return [round(i * (frames - 1) / (image_frames - 1)) for i in range(image_frames)]


class CameraClip(nn.Module):
    """open_clip's CLIP with a video encoder. ``encode_video`` takes float frames [B, T, 3, H, W], already
    normalised with ``mean``/``std``; ``encode_text`` takes token ids [B, L]. Both return unit vectors."""

    def __init__(self, clip: nn.Module, settings: ClipModelSettings, image_size: int, mean, std):
        super().__init__()
        self.clip = clip
        self.settings = settings
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)
        dim = clip.text_projection.shape[1] if hasattr(clip, "text_projection") and clip.text_projection is not None \
            else clip.visual.output_dim
        self.embed_dim = dim
        self.temporal = TemporalPool(dim, settings.frames, settings.temporal_layers, settings.temporal_heads) \
            if settings.pooling == "temporal" else None
        self.motion = MotionEncoder(settings.frames, dim, flow=settings.motion_features == "flow") \
            if settings.pooling == "temporal" and settings.motion_input else None
        self.appearance = AppearanceEncoder(dim) if settings.appearance_input else None

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def normalise_frames(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, T, H, W, 3] (RGB) -> normalised float [B, T, 3, H, W] on the model's device."""
        x = frames_uint8.to(self.mean.device, non_blocking=True).permute(0, 1, 4, 2, 3).float().div_(255.0)
        return (x - self.mean) / self.std

    def motion_flow(self, video: torch.Tensor) -> torch.Tensor | None:
        """The optical flow the motion CNN sees for normalised frames ``video`` (None when it sees none). It
        depends on the frames only, so a training loop computes it once per clip and passes it back in."""
        if self.motion is None or not self.motion.flow:
            return None
        return optical_flow((video * self.std + self.mean).mean(2))

    def encode_video(self, video: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        """Unit embeddings of normalised frames; ``flow``: their ``motion_flow``, when already computed."""
        seen = video[:, image_frame_positions(video.shape[1], self.settings.image_frames)]
        b, t = seen.shape[:2]
        per_frame = self.clip.encode_image(seen.flatten(0, 1)).view(b, t, -1)
        pooled = self.temporal(per_frame) if self.temporal is not None else per_frame.mean(1)
        if self.motion is not None:
            pooled = pooled + self.motion(video, flow if flow is not None else self.motion_flow(video))
        if self.appearance is not None:
            pooled = pooled + self.appearance(video)
        return F.normalize(pooled, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def forward(self, video: torch.Tensor, tokens: torch.Tensor, flow: torch.Tensor | None = None):
        return self.encode_video(video, flow), self.encode_text(tokens), self.logit_scale.exp()


def build_model(settings: ClipModelSettings = ClipModelSettings(), device: torch.device | str | None = None
                ) -> tuple[CameraClip, object]:
    """The model (fresh, or with the local pretrained CLIP weights) and its tokenizer."""
    import open_clip

    register_configs()
    device = torch.device(device) if device is not None else default_device()
    root = logging.getLogger()
    quiet = settings.pretrained is None and root.level < logging.ERROR  # "initialized randomly" is the intent here
    previous = root.level
    if quiet:
        root.setLevel(logging.ERROR)
    try:
        clip = open_clip.create_model(settings.arch, pretrained=settings.pretrained, device=device,
                                      pretrained_text=False, pretrained_image=False)
    finally:
        if quiet:
            root.setLevel(previous)
    tokenizer = open_clip.get_tokenizer(settings.arch)
    cfg = clip.visual.preprocess_cfg if hasattr(clip.visual, "preprocess_cfg") else {}
    size = cfg.get("size", clip.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    model = CameraClip(clip, settings, size, cfg.get("mean", OPENAI_DATASET_MEAN), cfg.get("std", OPENAI_DATASET_STD))
    return model.to(device), tokenizer


def save_checkpoint(path: str | Path, model: CameraClip, extra: dict | None = None) -> None:
    """The whole CameraCLIP (CLIP, temporal module) with its settings, written atomically."""
    from cinepipe.media import atomic_path

    payload = {"settings": asdict(model.settings), "state_dict": model.state_dict(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, device: torch.device | str | None = None) -> tuple[CameraClip, object, dict]:
    """A CameraCLIP saved by ``save_checkpoint``: (model in eval mode, tokenizer, the checkpoint's extra data)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    # saved before the flow input existed: frames; before the appearance CNN: none;
    # before the image_frames setting: every frame through the image tower
    saved = {"motion_features": "frames", "appearance_input": False, "image_frames": None, **payload["settings"]}
    settings = ClipModelSettings(**{**saved, "pretrained": None})
    model, tokenizer = build_model(settings, device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, tokenizer, {k: v for k, v in payload.items() if k not in ("settings", "state_dict")}


def describe(model: CameraClip) -> dict:
    params = sum(p.numel() for p in model.parameters())
    return {**asdict(model.settings), "image_size": model.image_size, "parameters": params,
            "config": json.dumps(asdict(model.settings))}

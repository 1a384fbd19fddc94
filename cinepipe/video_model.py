"""The text-to-video base behind CameraDiff: one interface over the tiny embedded models and a local diffusers Wan
pipeline.

Every one is a diffusers denoiser trained and sampled with flow matching (``x_t = (1 - s) x0 + s n``, the flow is
``n - x0`` at timestep ``1000 s``; sampling is ``FlowMatchEulerDiscreteScheduler``):

- the tiny model (``create_tiny``, ``TinyVideoConfig``) works in pixel space (values in [-1, 1]) with a small CLIP
  text encoder from ``transformers`` created from config, tokenised by open_clip's tokenizer (its vocabulary ships
  in the wheel). The default denoiser is a ``UNetMotionModel`` (AnimateDiff's UNet) on a lossless space-to-depth
  of the frames (``pixel_unshuffle``: 3 x 32 x 32 -> 12 x 16 x 16), with an extra input channel that holds each
  frame's place in the clip; the earlier one a ``WanTransformer3DModel`` on the pixels (``arch = "wan"``). It is
  saved as a directory: ``unet/`` or ``transformer/``, ``text_encoder/`` (``save_pretrained``) and
  ``cinepipe_video.json``; a model saved before ``arch`` existed is a Wan one;
- a diffusers pipeline directory (``model_index.json``: Wan 2.1 T2V, or one built by a test) is loaded with
  ``local_files_only``: its VAE maps to and from latents, its tokenizer and UMT5 encoder encode prompts.

LoRA adapters live on ``denoiser`` (peft, through diffusers' ``add_adapter`` / ``load_lora_adapter`` /
``set_adapters``); weights can change between denoising steps without reloading anything (``sample``'s
``before_step`` hook), which CLIPLoRA relies on. ``calls`` counts denoiser evaluations.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cinepipe.diffusion_settings import GenerationSettings, TinyVideoConfig, VideoFormat

INFO_FILE = "cinepipe_video.json"


class ModelLoadError(Exception):
    """A base model directory that cannot be used, with the path and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _quiet() -> None:
    """No progress bars from diffusers and transformers when loading or saving (they write to stderr, where the
    command line promises one line per error)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _OpenClipTokens:
    """open_clip's BPE tokenizer (offline) with an attention mask, for the tiny CLIP text encoder."""

    def __init__(self, context: int):
        from open_clip.tokenizer import SimpleTokenizer

        self.context = context
        self._tok = SimpleTokenizer(context_length=context)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._tok(texts, context_length=self.context)
        return ids, (ids != 0).long()


X0_MIN_SIGMA = 0.05  # an x0-predicting model's flow divides by the noise level: no closer to zero than this


class VideoModel:
    """A flow-matching text-to-video denoiser with its text encoder (and VAE, for latent models)."""

    def __init__(self, denoiser, text_encoder, tokenizer, fmt: VideoFormat, kind: str, source: str = "",
                 vae=None, pipeline=None, info: dict | None = None):
        self.denoiser = denoiser  # UNetMotionModel or WanTransformer3DModel
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.format = fmt
        self.kind = kind  # "tiny" or "pipeline"
        self.source = source
        self.vae = vae
        self.pipeline = pipeline
        self.info = info or {}
        self.calls = 0  # denoiser evaluations (a batched call counts once)
        self._text_cache: dict[str, torch.Tensor] = {}

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def create_tiny(cls, config: TinyVideoConfig = TinyVideoConfig(), fmt: VideoFormat = VideoFormat(),
                    seed: int = 0, device: torch.device | str | None = None) -> "VideoModel":
        from transformers import CLIPTextConfig, CLIPTextModel

        torch.manual_seed(seed)
        if config.arch == "unet":
            denoiser = _tiny_unet(config, fmt)
        elif config.arch == "wan":
            denoiser = _tiny_wan(config, fmt)
        else:
            raise ValueError(f"unknown tiny architecture {config.arch!r} (unet or wan)")
        text_config = CLIPTextConfig(vocab_size=49408, hidden_size=config.text_width,
                                     intermediate_size=4 * config.text_width, num_hidden_layers=config.text_layers,
                                     num_attention_heads=config.text_heads,
                                     max_position_embeddings=config.text_context, bos_token_id=49406,
                                     eos_token_id=49407, pad_token_id=0)
        text_encoder = CLIPTextModel(text_config)
        model = cls(denoiser, text_encoder, _OpenClipTokens(config.text_context), fmt, "tiny",
                    info={"tiny": asdict(config), "format": asdict(fmt)})
        return model.to(device or default_device())

    @classmethod
    def load(cls, path: str | os.PathLike, fmt: VideoFormat | None = None,
             device: torch.device | str | None = None) -> "VideoModel":
        """A saved tiny model (``cinepipe_video.json``) or a local diffusers Wan pipeline (``model_index.json``)."""
        path = Path(path)
        device = device or default_device()
        _quiet()
        if (path / INFO_FILE).exists():
            return cls._load_tiny(path, device)
        if (path / "model_index.json").exists():
            return cls._load_pipeline(path, fmt or VideoFormat(), device)
        if not path.exists():
            raise ModelLoadError(path, "no such directory")
        raise ModelLoadError(path, f"neither a cinepipe video model ({INFO_FILE}) nor a diffusers pipeline "
                                   "(model_index.json)")

    @classmethod
    def _load_tiny(cls, path: Path, device) -> "VideoModel":
        from diffusers import UNetMotionModel, WanTransformer3DModel
        from transformers import CLIPTextModel

        info = json.loads((path / INFO_FILE).read_text())
        info["tiny"].setdefault("arch", "wan")  # saved before the UNet existed
        config = _tiny_config(info["tiny"])
        if config.arch == "unet":
            denoiser = UNetMotionModel.from_pretrained(path / "unet", local_files_only=True)
        else:
            denoiser = WanTransformer3DModel.from_pretrained(path / "transformer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", local_files_only=True)
        model = cls(denoiser, text_encoder, _OpenClipTokens(config.text_context), VideoFormat(**info["format"]),
                    "tiny", source=str(path), info=info)
        return model.to(device)

    @classmethod
    def _load_pipeline(cls, path: Path, fmt: VideoFormat, device) -> "VideoModel":
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(path, f"cannot load the diffusers pipeline: {str(err).splitlines()[0]}") from None
        for part in ("transformer", "vae", "text_encoder", "tokenizer"):
            if getattr(pipe, part, None) is None:
                raise ModelLoadError(path, f"the pipeline has no {part} (a Wan text-to-video pipeline is expected)")
        if not hasattr(pipe.transformer, "add_adapter"):
            raise ModelLoadError(path, f"{type(pipe.transformer).__name__} takes no LoRA adapters")
        temporal = pipe.vae.config.get("scale_factor_temporal", 4)
        if (fmt.frames - 1) % temporal:
            raise ModelLoadError(path, f"{fmt.frames} frames: this VAE needs 1 + a multiple of {temporal}")
        model = cls(pipe.transformer, pipe.text_encoder, pipe.tokenizer, fmt, "pipeline", source=str(path),
                    vae=pipe.vae, pipeline=pipe, info={"format": asdict(fmt), "pipeline": type(pipe).__name__})
        return model.to(device)

    def to(self, device) -> "VideoModel":
        self.device = torch.device(device)
        for part in (self.denoiser, self.text_encoder, self.vae):
            if part is not None:
                part.to(self.device)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (a new directory; the caller renames it into place)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _quiet()
        if self.kind == "pipeline":
            self.pipeline.save_pretrained(str(path))
            return
        self.denoiser.save_pretrained(path / ("unet" if self.arch == "unet" else "transformer"))
        self.text_encoder.save_pretrained(path / "text_encoder")
        (path / INFO_FILE).write_text(json.dumps(self.info, indent=1))

    # ---- text ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings [B, L, D] (cached per prompt: the encoder is frozen)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            if self.kind == "tiny":
                ids, mask = self.tokenizer(missing)
                out = self.text_encoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                emb = out.last_hidden_state
            else:
                emb = self.pipeline.encode_prompt(missing, do_classifier_free_guidance=False, device=self.device,
                                                  max_sequence_length=self.info.get("text_length", 64))[0]
            self._text_cache.update(zip(missing, emb.to(self.dtype)))
        return torch.stack([self._text_cache[p] for p in prompts])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    # ---- model space --------------------------------------------------------------------------------------
    @property
    def arch(self) -> str:
        """The denoiser's kind: "unet" (the tiny UNetMotionModel) or "wan" (a tiny Wan transformer, a Wan
        pipeline)."""
        return self.info.get("tiny", {}).get("arch", "wan") if self.kind == "tiny" else "wan"

    @property
    def _pixel_block(self) -> int:
        return self.info["tiny"].get("space_to_depth", 1) if self.arch == "unet" else 1

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB [B, T, H, W, 3] -> the denoiser's space [B, C, T', H', W']."""
        x = torch.as_tensor(np.asarray(frames)).to(self.device)
        x = x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
        if self.vae is None:
            return _space_to_depth(x, self._pixel_block).to(self.dtype)
        z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode()
        mean, std = self._latent_stats(z)
        return ((z - mean) / std).to(self.dtype)

    @torch.no_grad()
    def decode_video(self, x: torch.Tensor) -> np.ndarray:
        """The denoiser's space -> uint8 RGB [B, T, H, W, 3]."""
        if self.vae is not None:
            mean, std = self._latent_stats(x)
            x = self.vae.decode((x * std + mean).to(self.vae.dtype), return_dict=False)[0]
        else:
            x = _depth_to_space(x, self._pixel_block)
        x = x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 4, 1).cpu().numpy()

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        shape = (1, cfg.z_dim, 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean, device=like.device, dtype=like.dtype).view(shape)
        std = torch.tensor(cfg.latents_std, device=like.device, dtype=like.dtype).view(shape)
        return mean, std

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        f = self.format
        if self.vae is None:
            k = self._pixel_block
            return (batch, 3 * k * k, f.frames, f.size // k, f.size // k)
        cfg = self.vae.config
        t = (f.frames - 1) // cfg.get("scale_factor_temporal", 4) + 1
        s = f.size // cfg.get("scale_factor_spatial", 8)
        return (batch, cfg.z_dim, t, s, s)

    # ---- denoising ----------------------------------------------------------------------------------------
    @property
    def prediction(self) -> str:
        """What the denoiser outputs: "flow" (``noise - x0``; pipelines and tiny models saved before the
        setting existed) or "x0" (the clean video; see ``TinyVideoConfig.prediction``)."""
        return self.info.get("tiny", {}).get("prediction", "flow") if self.kind == "tiny" else "flow"

    def predict(self, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The flow (``noise - x0``) at noise level ``sigma`` in [0, 1] (one per row), whatever the denoiser
        outputs."""
        self.calls += 1
        out = self.denoise(x, sigma * 1000.0, text)
        if self.prediction == "x0":  # x = (1 - s) x0 + s noise, so noise - x0 = (x - x0) / s
            s = sigma.clamp(min=X0_MIN_SIGMA).view(-1, *([1] * (x.dim() - 1))).to(out.dtype)
            return (x.to(out.dtype) - out) / s
        return out

    def denoise(self, x: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The denoiser's raw output on ``x`` [B, C, T, H, W] at ``timestep`` (0-1000) with text ``[B, L, D]``. The
        UNet takes the text once per frame and, with ``frame_channel``, each frame's place in the clip as one more
        input channel."""
        if self.arch != "unet":
            return self.denoiser(x, timestep, text, return_dict=False)[0]
        frames = x.shape[2]
        if self.info["tiny"].get("frame_channel", False):
            x = torch.cat([x, frame_positions(x)], dim=1)
        return self.denoiser(x, timestep, text.repeat_interleave(frames, dim=0), return_dict=False)[0]

    def flow_loss(self, x0: torch.Tensor, text: torch.Tensor, generator: torch.Generator | None = None,
                  motion_weight: float = 0.0) -> torch.Tensor:
        """Flow-matching loss on a batch (noise levels drawn logit-normal, as in SD3 and Wan training), plus
        ``motion_weight`` times the same error in the change from one frame to the next (frames are dim 2)."""
        b = x0.shape[0]
        sigma = torch.sigmoid(torch.randn(b, generator=generator, device="cpu")).to(x0.device, x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype)
        s = sigma.view(b, *([1] * (x0.dim() - 1)))
        xt = (1 - s) * x0 + s * noise
        flow, target = self.predict(xt, sigma, text).float(), (noise - x0).float()
        loss = torch.nn.functional.mse_loss(flow, target)
        if motion_weight and x0.shape[2] > 1:
            loss = loss + motion_weight * torch.nn.functional.mse_loss(flow.diff(dim=2), target.diff(dim=2))
        return loss

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int], settings: GenerationSettings = GenerationSettings(),
               before_step: Callable[[int, int], None] | None = None, latents: torch.Tensor | None = None,
               decode: bool = True, flow_fn: Callable | None = None):
        """Generate one video per prompt (``seeds`` fix the starting noise). ``before_step(i, steps)`` runs before
        every denoising step (adapter weights can change there); ``flow_fn(x, sigma, text, i)``, when given,
        replaces the denoiser call of step ``i`` (composite methods combine several calls). Returns uint8
        [B, T, H, W, 3] (or the final latents when ``decode`` is False)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if latents is None:
            latents = self.initial_noise(seeds)
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=settings.shift)
        scheduler.set_timesteps(settings.steps, device=self.device)
        text = self.encode_text(prompts)
        uncond = self.encode_text([""] * len(prompts)) if settings.guidance_scale > 1 else None
        x = latents.to(self.device, self.dtype)
        was_training = self.denoiser.training
        self.denoiser.eval()
        for i, t in enumerate(scheduler.timesteps):
            if before_step is not None:
                before_step(i, len(scheduler.timesteps))
            sigma = (t / 1000.0).expand(x.shape[0]).to(self.dtype)
            if flow_fn is not None:
                flow = flow_fn(x, sigma, text, i)
            else:
                flow = self.predict(x, sigma, text)
            if uncond is not None and flow_fn is None:
                plain = self.predict(x, sigma, uncond)
                flow = plain + settings.guidance_scale * (flow - plain)
            x = scheduler.step(flow.float(), t, x.float(), return_dict=False)[0].to(self.dtype)
        self.denoiser.train(was_training)
        return self.decode_video(x) if decode else x

    def initial_noise(self, seeds: list[int]) -> torch.Tensor:
        shape = self.latent_shape(1)
        return torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def frame_positions(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, H, W]: each frame's place in the clip, from -1 (first) to +1 (last)."""
    b, _, t, h, w = x.shape
    pos = torch.linspace(-1.0, 1.0, t, device=x.device, dtype=x.dtype) if t > 1 else x.new_zeros(1)
    return pos.view(1, 1, t, 1, 1).expand(b, 1, t, h, w)


def _space_to_depth(x: torch.Tensor, k: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C k^2, T, H / k, W / k], each frame rearranged by ``pixel_unshuffle`` (lossless)."""
    if k == 1:
        return x
    b, c, t, h, w = x.shape
    y = torch.nn.functional.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, c, h, w), k)
    return y.reshape(b, t, c * k * k, h // k, w // k).transpose(1, 2).contiguous()


def _depth_to_space(x: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return x
    b, c, t, h, w = x.shape
    y = torch.nn.functional.pixel_shuffle(x.transpose(1, 2).reshape(b * t, c, h, w), k)
    return y.reshape(b, t, c // (k * k), h * k, w * k).transpose(1, 2)


def _tiny_config(saved: dict) -> TinyVideoConfig:
    known = {k: v for k, v in saved.items() if k in TinyVideoConfig.__dataclass_fields__}
    if "channels" in known:
        known["channels"] = tuple(known["channels"])
    return TinyVideoConfig(**known)


def _tiny_unet(config: TinyVideoConfig, fmt: VideoFormat):
    """A tiny ``UNetMotionModel`` on the space-to-depth frames: a level per entry of ``channels`` (the first
    without spatial attention), each with one resnet and one motion module."""
    from diffusers import UNetMotionModel

    k = config.space_to_depth
    levels = len(config.channels)
    if k < 1 or fmt.size % (k * 2 ** (levels - 1)):
        raise ValueError(f"video size {fmt.size} is not a multiple of {k * 2 ** (levels - 1)} "
                         f"(space-to-depth {k}, {levels} levels)")
    inner = 3 * k * k
    return UNetMotionModel(
        sample_size=fmt.size // k, in_channels=inner + (1 if config.frame_channel else 0), out_channels=inner,
        down_block_types=("DownBlockMotion",) + ("CrossAttnDownBlockMotion",) * (levels - 1),
        up_block_types=("CrossAttnUpBlockMotion",) * (levels - 1) + ("UpBlockMotion",),
        block_out_channels=tuple(config.channels), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=config.text_width, num_attention_heads=config.heads,
        motion_num_attention_heads=config.heads, motion_max_seq_length=max(32, fmt.frames))


def _tiny_wan(config: TinyVideoConfig, fmt: VideoFormat):
    from diffusers import WanTransformer3DModel

    if fmt.size % config.patch:
        raise ValueError(f"video size {fmt.size} is not a multiple of the patch {config.patch}")
    return WanTransformer3DModel(
        patch_size=(1, config.patch, config.patch), num_attention_heads=config.heads,
        attention_head_dim=config.head_dim, in_channels=3, out_channels=3, text_dim=config.text_width,
        freq_dim=64, ffn_dim=config.ffn_dim, num_layers=config.layers, cross_attn_norm=True,
        rope_max_seq_len=max(64, fmt.frames))

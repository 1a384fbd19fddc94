"""CameraDiff's settings, torch-free (the Dagster code location imports them when it loads).

The embedded default (``TinyVideoConfig.arch = "unet"``) is a tiny diffusers ``UNetMotionModel`` (AnimateDiff's
video UNet: per-frame convolutions and spatial attention, motion modules attending over time) on a lossless 2x2
space-to-depth of the 32-pixel frames, told each frame's place in the clip by an input channel, with a tiny CLIP
text encoder (transformers, created from config; tokenised by open_clip's tokenizer, whose vocabulary ships in its
wheel), trained with flow matching. ``arch = "wan"`` is the earlier default, a tiny pixel-space
``WanTransformer3DModel``. Real use: ``BaseModelSettings.source`` names a local diffusers Wan text-to-video
pipeline directory (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``), loaded without hub access; the same training, LoRA and sampling code runs on it.

LoRA targets per pattern family (``LoraSettings.targets``, per architecture). The UNet's motion modules are where
frames exchange information, i.e. motion, and its resnets' convolutions what moves things across a frame: movement
LoRAs adapt both (the motion modules' attention alone, 60 or 300 steps, moved the camera less). Wan's blocks
attend over space and time jointly in their self-attention (``attn1``): movement LoRAs adapt that. Framing and
angle are about what a frame shows: their LoRAs adapt the cross-attention to the text (``attn2``) and the
feed-forward layers (the UNet's spatial transformers', Wan's blocks'). An entry is a list of module-name suffixes
or a regular expression (a string, matched against the whole module name), as peft's ``target_modules`` takes
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SELF_ATTENTION = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
CROSS_ATTENTION_FFN = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")
# UNetMotionModel: the motion modules' attention (both of their self-attentions over time) ...
MOTION_MODULE_ATTENTION = r".*\.motion_modules\.\d+\.transformer_blocks\.\d+\.attn\d\.(to_q|to_k|to_v|to_out\.0)"
# ... with the resnets' convolutions, which move things across the frame: a movement LoRA adapts both
MOTION_MODULES_AND_CONVOLUTIONS = MOTION_MODULE_ATTENTION + r"|.*\.resnets\.\d+\.(conv1|conv2)"
# ... and the spatial transformers' cross-attention to the text and feed-forward layers
SPATIAL_CROSS_ATTENTION_FF = (r".*\.attentions\.\d+\.transformer_blocks\.\d+\."
                              r"(attn2\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)")

# The caption the base model is trained with, for every clip: the base learns moving scenes, not the camera's
# vocabulary (the public text-to-video bases the paper starts from do not follow cinematic language either), so
# what a LoRA adds can be measured against it. ``BaseModelSettings.captions = "full"`` trains on the labels'
# captions instead.
GENERIC_CAPTION = "A film shot of a person."


@dataclass(frozen=True)
class VideoFormat:
    """The clips the model learns from and generates: ``frames`` frames at ``fps`` (taken from the middle of each
    clip), ``size`` x ``size`` pixels (the clip is scaled to a square, as CameraCLIP's frames are)."""

    size: int = 32
    frames: int = 8
    fps: float = 8.0


@dataclass(frozen=True)
class TinyVideoConfig:
    """The embedded default's architecture (created from config; nothing is downloaded)."""

    # "unet": diffusers UNetMotionModel (AnimateDiff's UNet); "wan": WanTransformer3DModel (the earlier default;
    # its 4x4-pixel patches carried their noise through and its samples stayed patch-sized blocks)
    arch: str = "unet"
    # UNet: channels per level (one resnet, spatial transformer and motion module a level; the first level has
    # no spatial attention), and the space-to-depth factor: 32 px -> 12 channels at 16 x 16 (a training step of
    # 8 clips took 2.6 s at 32 x 32, 0.62 s at 16 x 16; the rearrangement loses nothing)
    channels: tuple = (32, 64, 64)
    space_to_depth: int = 2
    # UNet: one more input channel holding each frame's place in the clip (-1 first, +1 last). Without it the
    # model barely tells frames apart (its output moved with a permutation of its input frames, 15 % off),
    # and trained on one panning clip it drew that clip's frames in a shuffled order; with it, in order
    frame_channel: bool = True
    # Wan: blocks, heads and patch
    layers: int = 4
    heads: int = 4
    head_dim: int = 16
    ffn_dim: int = 256
    patch: int = 4  # Wan's spatial patch (the temporal patch is 1): 32 px -> 8 x 8 tokens a frame
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    text_context: int = 32
    # What the denoiser outputs: "x0", the clean video (its flow is derived from it, and the loss stays on the
    # flow), or "flow" (noise - x0) itself. Wan: a patch of 4 x 4 pixels is 48 numbers through a 64-wide token,
    # and asked for the flow, the tiny model must copy the patch's noise through that bottleneck and cannot (as in
    # Li and He, "Back to Basics: Let Denoising Generative Models Denoise", 2025). UNet: after 600 steps the
    # x0 model's samples are smooth (frame-to-frame difference 0.020, the clips' 0.015), the flow model's still
    # noisy (0.066)
    prediction: str = "x0"


@dataclass(frozen=True)
class BaseModelSettings:
    source: str = ""  # "" = the tiny model from config; else a local diffusers Wan pipeline directory
    tiny: TinyVideoConfig = TinyVideoConfig()
    format: VideoFormat = VideoFormat()
    captions: str = "generic"  # "generic" (GENERIC_CAPTION) or "full" (the dataset's captions)
    steps: int = 600  # optimiser steps (the tiny model from scratch; a pretrained source may use 0)
    batch_size: int = 8
    # for the tiny UNet from scratch (denoising error on the test split's clips after 600 steps, at noise 0.5:
    # 0.021); the tiny Wan model did best at 5e-3 (0.031 at 2e-3, 0.028 at 5e-3, 0.029 at 1e-2); fine-tuning a
    # pretrained source wants far less (1e-5 or so)
    lr: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.0
    seed: int = 0
    splits: tuple[str, ...] = ("train", "val")  # the test split's films stay unseen


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: float = 16.0
    # movement LoRAs: on the UNet, 60 steps of rank 8 on the motion modules left every video still; 300 steps
    # of rank 16 on the motion modules and the resnets' convolutions made pan_left videos pan left
    steps: int = 300
    framing_angle_steps: int = 60  # framing and angle LoRAs (measured by CameraCLIP only; they train 5x faster)
    # 4: with the mirrored and reversed clips a pattern has 8-40 training clips, and a batch of 8 doubled the
    # step's cost (a pattern's 3-6 own clips had made the batch 3-6 before); the main job's 15 minutes allow 4
    batch_size: int = 4
    lr: float = 5e-3
    warmup_steps: int = 10
    seed: int = 0
    min_clips: int = 1  # a pattern with fewer training clips fails its partition, naming the count
    # also train on the clips that show the pattern once mirrored or played backwards (cinepipe.clip_augment)
    augment: bool = True
    # movement LoRAs: weight of the motion term of the loss (the error in the change from frame to frame, as
    # MotionDirector's temporal loss), relative to the whole loss once scaled by the training clips' variance over
    # their mean squared frame difference: a slow tilt's change between frames is 1/15 of its clips' variance, a
    # zoom's 1/260, so unscaled it is lost in the error of the picture. Session 18, same base and settings: tilt_up
    # 0.00 -> 0.75 motion control; 0 = the plain flow-matching loss.
    motion_loss_weight: float = 1.0
    # movement LoRAs: when a pattern's clips change too little from frame to frame (their motion_loss_scale above
    # pace_target), train on windows taken at a lower rate, so that each training clip plays faster than real time
    # and the camera moves further between frames: pace = sqrt(scale / pace_target) (the squared change grows
    # with the pace squared), rounded down to a half, at most max_pace and never a window longer than the
    # shortest of the pattern's clips. A truck played faster is still a truck. The default reel's pans (scale 9)
    # and tilts (15) keep pace 1, its trucks (84) train at 2.5x, its zooms and dollies at 3x. Session 19, the same
    # base: truck_left 0.00 -> 1.00, truck_right 0.00 -> 0.50 motion control; 0 = every clip at the format's rate
    pace_target: float = 12.0
    max_pace: float = 3.0
    # zooms and dollies (image motion zoom+ / zoom-): even at max_pace the default reel's clips change scale by 3-4 %
    # over a training window (a tenth of a pixel per frame at the border of 32 px), too little for a LoRA to learn:
    # their training windows are decoded at twice the size and magnified about the centre by a further
    # exp(zoom_boost) over the window, growing for a zoom in, shrinking for a zoom out (every frame a crop, so no
    # border appears), then scaled to the format's size. A zoom made faster is still a zoom; 0 = off. Session 20, on
    # session 18's base, 8 held-out videos each: zoom_in 0.00 (pace alone: 0.125) -> 0.375 at 0.35, 0.625 at 0.7,
    # 0.50 at 1.0; dolly_out 0.00 -> 0.125 at 0.35, 0.375 at 0.7; zoom_out 0.25 at 0.7
    zoom_boost: float = 0.7

    # per architecture ("unet", "wan"; a Wan pipeline uses "wan"), per pattern family
    targets: dict = field(default_factory=lambda: {
        "unet": {"movement": MOTION_MODULES_AND_CONVOLUTIONS, "framing": SPATIAL_CROSS_ATTENTION_FF,
                 "angle": SPATIAL_CROSS_ATTENTION_FF},
        "wan": {"movement": list(SELF_ATTENTION), "framing": list(CROSS_ATTENTION_FFN),
                "angle": list(CROSS_ATTENTION_FFN)},
    })

    def steps_for(self, family: str) -> int:
        return self.steps if family == "movement" else self.framing_angle_steps


@dataclass(frozen=True)
class GenerationSettings:
    steps: int = 20  # denoising steps (flow-matching Euler)
    guidance_scale: float = 1.0  # > 1: classifier-free guidance against the empty prompt (two calls a step)
    shift: float = 1.0  # the flow-matching scheduler's timestep shift (Wan's releases use 3 to 5)


@dataclass(frozen=True)
class LoraEvalSettings:
    samples: int = 8  # generated videos per pattern, with and without the LoRA (same prompts and noise)
    seed: int = 1234
    generation: GenerationSettings = GenerationSettings()
    preview_samples: int = 4  # videos in the preview grid (each shown with and without the LoRA)


# CLIPLoRA (cinepipe.composition): the composition methods and the genetic search's settings
METHODS = ("merge", "switch", "composite", "cliplora")


@dataclass(frozen=True)
class SearchSettings:
    population: int = 8
    generations: int = 4
    phases: int = 3  # spans of the denoising run with their own weights
    mutation_rate: float = 0.3  # chance that a gene is perturbed
    mutation_scale: float = 0.35  # standard deviation of a perturbation
    crossover_rate: float = 0.7
    elitism: int = 2  # best schedules carried over unchanged
    patience: int = 2  # generations without improvement before stopping early
    # a schedule's weights lie in [0, max_weight]; the search starts each requested pattern anywhere in [0.6,
    # max_weight]. Session 21, on session 20's main-job models, 6 requests x 3 seeds: presence 0.278 with weights up
    # to 1.5, 0.389 up to 2.5 (merge, one static weight for the whole run: 0.241 at 1.0, 0.259 at 1.5, 0.250 at 2.0,
    # 0.241 at 2.5): it is the schedule, not the larger weight, that helps
    max_weight: float = 2.5
    # denoising steps of a fitness preview; at the generation's step count (or more) the previews are the final
    # videos, and the best one is returned without generating it again
    preview_steps: int = 8
    prompt_weight: float = 0.5
    # fitness: weight of the share of requested patterns CameraCLIP reads as their family's top value (what
    # "present" asks of CameraCLIP), beside the mean probability (which rewards a pattern gaining ground before it
    # becomes the top value); 0 = the probability alone
    top_weight: float = 1.0
    seed: int = 0

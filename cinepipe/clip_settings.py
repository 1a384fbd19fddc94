"""CameraCLIP's settings, in a module without torch, so the Dagster layer can build its config from them without
importing torch when the code location loads (torch is imported only when a training runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cinepipe.diffusion_settings import VideoFormat

TINY = "cinepipe-tiny"
POOLINGS = ("temporal", "mean")
MOTION_FEATURES = ("flow", "frames")
HARD_NEGATIVE_KINDS = ("direction", "framing", "angle")


@dataclass(frozen=True)
class ClipModelSettings:
    arch: str = TINY  # an open_clip architecture name, or cinepipe-tiny
    pretrained: str | None = None  # a local open_clip checkpoint file (real use); None: fresh weights
    frames: int = 8  # frames sampled per clip
    pooling: str = "temporal"  # "temporal" (order-aware) or "mean"
    # how many of those frames the image tower encodes (spread evenly; None: all): the tower is most of a training
    # step's time (75 % with all 8), and the motion and appearance CNNs see every frame. Measured with 640
    # training synthetic clips, 16 epochs, seed 2: held-out synthetic R@1 0.725 with 4 frames (547 s) as with 8
    # (905 s); test film R@1 0.88 / 0.75
    image_frames: int | None = 4
    temporal_layers: int = 2
    temporal_heads: int = 4
    motion_input: bool = True  # with temporal pooling: a small CNN over how the picture changes between frames
    # what that CNN sees: "flow", the dense optical flow between consecutive frames (OpenCV Farneback) beside the
    # grey frames and their differences; "frames", the grey frames and differences alone (checkpoints saved before
    # this setting existed load as "frames"). Measured on 80 held-out reel clips, trained on the default reel's 32:
    # zero-shot movement 0.29 against 0.10, direction test 0.71 against 0.54, for 1.2x the training time.
    motion_features: str = "flow"
    # a small CNN (group-normalised) over each frame's colour picture, beside the ViT: framing is the subject's size,
    # which the tiny ViT trained from nothing hardly learns. Measured (default reel dataset, 16 epochs, seed 0, with
    # the label heads), on 80 held-out synthetic clips: R@1 0.36 -> 0.46, R@5 0.89 -> 0.96, for 1.15x the time.
    # The mean-pooling baseline keeps it (it is order-free)
    appearance_input: bool = True

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if self.motion_features not in MOTION_FEATURES:
            raise ValueError(f"motion_features must be one of {MOTION_FEATURES}, not {self.motion_features!r}")
        if self.image_frames is not None and self.image_frames < 1:
            raise ValueError(f"image_frames must be at least 1 (or None: every frame), not {self.image_frames}")
        if self.pretrained and not Path(self.pretrained).is_file():
            raise FileNotFoundError(f"{self.pretrained}: no such checkpoint file (CameraCLIP loads local files only)")


@dataclass(frozen=True)
class TrainSettings:
    # 16 passes over the default's 672 clips (32 of the reel, 640 synthetic; measured below with 320); training on the
    # dataset alone (synthetic_films = 0) wants more. Measured with the direction hard negatives, on 80 held-out
    # synthetic clips (three seeds each): 4 epochs R@5 0.48, direction 0.75; 8 epochs R@1 0.15-0.26, R@5 0.63-0.81,
    # direction 0.82-0.97; 16 epochs R@1 0.35-0.43, R@5 0.89-0.93, direction 0.97-1.0 (two datasets), at 2x the time of
    # 8. Batches of 16 instead (twice the steps at 8 epochs) gave R@5 0.70-0.85: fewer passes, not smaller batches, were
    # short
    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    grad_accum: int = 1
    seed: int = 0
    caption_variants: bool = True
    mixed_precision: bool = True  # used only on CUDA
    # hard negatives: besides the batch's other captions, each clip's own caption with one label changed, which
    # the clip must score below its true caption (a cross-entropy over [true, changed ...], added to the InfoNCE
    # loss with this weight; 0: off). "direction": the opposite movement (pan_left <-> pan_right, ...);
    # "framing", "angle": another value of that category, drawn afresh each epoch. Label-unique batches seldom hold
    # a clip and its mirror image, so InfoNCE alone hardly asks which way the camera moved: with "direction", 4
    # epochs, the held-out synthetic clips' direction test went 0.67 -> 0.75, at 6 epochs 0.71 -> 0.88, at 8
    # (seed 1) 0.55 -> 0.82 (the reel's test split: 0.50 -> 0.88).
    # Adding "framing" did not hold up over seeds (direction 0.62-1.0), all three at 4 epochs was worse, and the
    # other mechanism of the same image motion (zoom_in <-> dolly_in, pan_left <-> truck_left) lowered R@5 on two
    # seeds (0.76 -> 0.66, 0.81 -> 0.49), so it was not kept.
    hard_negative_weight: float = 1.0
    hard_negatives: tuple[str, ...] = ("direction",)
    # label prompts: each clip must also pick its own framing, angle and movement among a category's values, each
    # value written as a prompt (one caption template a step with only that value filled in: the zero-shot
    # prompts), a cross-entropy per category added to the loss with this weight (0: off). Measured on the main
    # job's dataset, 16 epochs, seeds 0 / 1 / 2, against 0: zero-shot movement on the 80 held-out synthetic clips
    # 0.81 / 0.86 / 0.89 (0.76, seed 0), angle 0.59 / 0.53 / 0.62 (0.44); retrieval unchanged (test R@1 0.75 /
    # 1.0 / 0.75 both ways, synthetic R@1 0.36 / 0.35 / 0.39 against 0.36 / 0.43 / 0.35); framing stays unlearnt
    # (0.26-0.29) either way. 12 % more training time.
    label_prompt_weight: float = 1.0
    # label heads: a linear classifier per category (framing, angle, movement), the same one reading the clip's
    # embedding and its caption's, trained with them (a cross-entropy per category, this weight; 0: off) and
    # dropped after training: both towers must carry each label along the same directions. Measured with the rest of
    # session 14's model (seed 0): held-out synthetic R@1 0.49 with them, 0.46 without; test film 1.00 either way
    label_head_weight: float = 1.0
    # label-aware augmentation (cinepipe.clip_augment): each epoch shows each clip as it is, mirrored, played
    # backwards or both, drawn afresh, with the movement (and caption) it then shows. Measured (seed 2, 16 epochs):
    # with 320 synthetic clips, held-out synthetic R@1 0.51 -> 0.55; with 640 and 4 image frames, R@1 0.725 either
    # way, zero-shot movement 0.875 -> 0.925, framing 0.76 -> 0.80, test film R@1 0.88 -> 1.00; 1.04x the time
    augment: bool = True
    # generator-format views (``CameraClipSettings.window``): the probability that an epoch shows a clip that has
    # one (the synthetic clips) as its short window at the generator's rate and resolution instead of frames spread
    # over the whole clip, so that CameraCLIP also reads movements at the pace and sharpness of a generated video
    window_rate: float = 0.5

    def __post_init__(self):
        if not 0 <= self.window_rate <= 1:
            raise ValueError(f"window_rate must be within [0, 1], not {self.window_rate}")
        unknown = sorted(set(self.hard_negatives) - set(HARD_NEGATIVE_KINDS))
        if unknown:
            raise ValueError(f"hard_negatives must be among {HARD_NEGATIVE_KINDS}, not {unknown}")
        if self.hard_negative_weight < 0:
            raise ValueError(f"hard_negative_weight must be >= 0, not {self.hard_negative_weight}")
        for name in ("label_prompt_weight", "label_head_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")


@dataclass(frozen=True)
class CameraClipSettings:
    model: ClipModelSettings = ClipModelSettings()
    training: TrainSettings = TrainSettings()
    compare_mean_pooling: bool = True
    cache_workers: int = 2
    # films (8 shots each) of synthetic reel clips trained on beside the dataset's train split
    # (cinepipe.clip_synthetic); 0: the dataset alone. Measured (seed 2, all 8 frames through the image tower):
    # 40 films, 16 epochs: held-out synthetic R@1 0.51; 80 films, 8 epochs (the same compute): 0.55; 80 films, 16
    # epochs: 0.725, zero-shot framing 0.49 -> 0.74, at 2x the time (hence 4 image frames)
    synthetic_films: int = 80
    # films (8 shots each) of other synthetic clips, never trained on, evaluated too (``synthetic_test_*``
    # metrics): 80 clips give steadier figures than the default reel's 8 test clips; 0: none
    synthetic_test_films: int = 10
    # the generator's format (``cinepipe.diffusion_settings.VideoFormat``: its frame rate and size; the frame count is
    # CameraCLIP's): the synthetic clips are also rendered as their centred window in it, shown with probability
    # ``TrainSettings.window_rate``, and the held-out synthetic clips are also evaluated in it
    # (``synthetic_window_test_*`` metrics); None: off
    window: VideoFormat | None = VideoFormat()

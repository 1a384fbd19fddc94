"""The flow-matching training loop shared by the base model and the LoRAs.

AdamW over the given parameters (the whole denoiser for the base, the adapter's for a LoRA), linear warm-up then
cosine decay, gradient clipping at 1; bf16 autocast where a GPU is present. Batches are drawn with replacement by a
seeded generator, so a run is reproducible. No augmentation here: a LoRA's caller passes the mirrored and
reversed clips that show its pattern, captioned for what they show (``cinepipe.clip_augment``); a blind flip
would turn a pan left into a pan right.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import numpy as np
import torch

from cinepipe.video_model import VideoModel


def lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_flow(model: VideoModel, frames: np.ndarray, captions: list[str], params: Iterable[torch.nn.Parameter],
               steps: int, batch_size: int, lr: float, warmup: int = 0, weight_decay: float = 0.0, seed: int = 0,
               on_step: Callable[[int, dict], None] | None = None, motion_weight: float = 0.0) -> list[dict]:
    """Train on uint8 clips ``frames`` [N, T, S, S, 3] with their ``captions``; returns per-step records.
    ``motion_weight``: see ``VideoModel.flow_loss``."""
    if len(frames) == 0:
        raise ValueError("no training clips")
    params = [p for p in params if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, steps, warmup))
    generator = torch.Generator().manual_seed(seed)
    cuda = model.device.type == "cuda"
    text_all = model.encode_text(list(dict.fromkeys(captions)))
    text_index = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    caption_rows = torch.tensor([text_index[c] for c in captions])
    model.denoiser.train()
    history = []
    for step in range(steps):
        started = time.perf_counter()
        pick = torch.randint(0, len(frames), (min(batch_size, len(frames)),), generator=generator)
        x0 = model.encode_video(frames[np.sort(pick.numpy())])
        text = text_all[caption_rows[torch.sort(pick).values]]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model.flow_loss(x0, text, generator, motion_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        record = {"step": step, "loss": float(loss.detach()), "lr": schedule.get_last_lr()[0],
                  "seconds": time.perf_counter() - started}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    model.denoiser.eval()
    return history

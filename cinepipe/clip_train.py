"""CameraCLIP training: InfoNCE (open_clip's ClipLoss) over label-unique batches from the frame cache.

AdamW with linear warm-up and cosine decay; on a GPU, mixed precision (bf16 where supported, else fp16 with a
gradient scaler) and gradient accumulation (``grad_accum`` batches per optimiser step; on the CPU too). Captions:
each epoch draws a fresh caption template per clip (``caption_variants``), so the text tower learns the labels,
not one sentence per clip. Hard negatives (``TrainSettings.hard_negatives``; by default each movement clip's
caption with the opposite direction) add a cross-entropy of choosing the true caption among them; label prompts and
label heads (``label_prompt_weight``, ``label_head_weight``) ask both towers for each label. With ``augment``
each epoch shows each clip as it is, mirrored, played backwards or both (``cinepipe.clip_augment``; drawn from
the seed and the epoch), with the movement it then shows in its caption and labels; the optical flow of each
transform is computed once per training. A checkpoint
(model, optimiser, schedule, epoch, history and the caller's ``extra``, e.g. the MLflow run id) is written
atomically after every epoch; ``train`` resumes from it when it exists, so a killed training continues where the
last epoch ended.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cinepipe.captions import caption
from cinepipe.clip_augment import TRANSFORMS, Transform, transform_clips, transformed_movement
from cinepipe.clip_data import FrameCache, label_key, unique_label_batches
from cinepipe.clip_eval import prompts_for
from cinepipe.clip_model import CameraClip
from cinepipe.clip_settings import HARD_NEGATIVE_KINDS, TrainSettings
from cinepipe.labels import FAMILIES
from cinepipe.media import atomic_path
from cinepipe.taxonomy import TAXONOMY


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken
    history: list[dict] = field(default_factory=list)  # per epoch: loss, seconds, clips_per_s
    extra: dict = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast(device.type, enabled=False), None


def batch_texts(rows: list[dict], epoch: int, variants: bool) -> list[str]:
    if not variants:
        return [r["caption"] for r in rows]
    return [caption(r["shot_id"], r["framing"], r["angle"], r["movement"], seed=epoch) for r in rows]


def hard_negative_texts(rows: list[dict], epoch: int, kinds: tuple[str, ...], variants: bool) -> list[list[str]]:
    """Per row, its caption (the template ``batch_texts`` picks) with one label changed, one caption per kind that
    applies: ``direction``, the opposite movement (none for static or an unknown movement); ``framing`` and
    ``angle``, another value of the category drawn by a hash of (epoch, shot) (none when the label is unknown)."""
    unknown = set(kinds) - set(HARD_NEGATIVE_KINDS)
    if unknown:
        raise ValueError(f"hard negatives must be among {HARD_NEGATIVE_KINDS}, not {sorted(unknown)}")
    seed = epoch if variants else 0
    out = []
    for r in rows:
        labels = {"framing": r["framing"], "angle": r["angle"], "movement": r["movement"]}
        texts = []
        for kind in kinds:
            changed = dict(labels)
            if kind == "direction":
                opposite = TAXONOMY.opposite(r["movement"]) if r["movement"] else None
                if not opposite:
                    continue
                changed["movement"] = opposite
            else:
                if not r[kind]:
                    continue
                others = [v for v in TAXONOMY.values(kind) if v != r[kind]]
                pick = random.Random(f"{epoch}:{r['shot_id']}:{kind}").randrange(len(others))
                changed[kind] = others[pick]
            texts.append(caption(r["shot_id"], changed["framing"], changed["angle"], changed["movement"],
                                 seed=seed))
        out.append(texts)
    return out


def hard_negative_loss(model: CameraClip, tokenizer, video: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                       negatives: list[list[str]]) -> torch.Tensor | None:
    """Mean cross-entropy, over the clips that have hard negatives, of choosing the true caption (``text``, unit
    vectors like ``video``) among [true, negatives ...]; None when no clip has any."""
    has = [i for i, texts in enumerate(negatives) if texts]
    if not has:
        return None
    flat = [t for i in has for t in negatives[i]]
    width = max(len(negatives[i]) for i in has)
    index = torch.full((len(has), width), -1, dtype=torch.long)
    cursor = 0
    for k, i in enumerate(has):
        index[k, :len(negatives[i])] = torch.arange(cursor, cursor + len(negatives[i]))
        cursor += len(negatives[i])
    index = index.to(video.device)
    chosen = torch.tensor(has, device=video.device)
    neg = model.encode_text(tokenizer(flat).to(video.device))  # [N, D]
    v = video[chosen]
    wrong = scale * (v.unsqueeze(1) * neg[index.clamp(min=0)]).sum(-1)  # [H, width]
    wrong = wrong.float().masked_fill(index < 0, float("-inf"))
    right = scale * (v * text[chosen]).sum(-1, keepdim=True)
    logits = torch.cat([right.float(), wrong], 1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(has), dtype=torch.long, device=video.device))


def labelled(rows: list[dict], family: str, device: torch.device) -> tuple[list[str], list[int], torch.Tensor]:
    """A category's values, the positions of the rows labelled with one of them, and those rows' value indices."""
    values = list(TAXONOMY.values(family))
    known = [i for i, r in enumerate(rows) if r.get(family) in values]
    return values, known, torch.tensor([values.index(rows[i][family]) for i in known], device=device)


def label_prompt_loss(model: CameraClip, tokenizer, video: torch.Tensor, scale: torch.Tensor, rows: list[dict],
                      template: int) -> torch.Tensor | None:
    """Mean over the categories of the cross-entropy of each clip choosing its own value among the category's
    values, each written as a prompt from caption template ``template`` with only that value filled in (the
    zero-shot prompts of :func:`cinepipe.clip_eval.prompts_for`); None when no clip has a label."""
    losses = []
    for family in FAMILIES:
        values, known, target = labelled(rows, family, video.device)
        if not known:
            continue
        prompts = []
        for value in values:
            variants = prompts_for(family, value)
            prompts.append(variants[template % len(variants)])
        classes = model.encode_text(tokenizer(prompts).to(video.device))  # [V, D]
        logits = scale * video[known] @ classes.T
        losses.append(torch.nn.functional.cross_entropy(logits.float(), target))
    return torch.stack(losses).mean() if losses else None


class LabelHeads(torch.nn.Module):
    """A linear classifier per category over an embedding (a clip's, or its caption's: the same classifiers read
    both): a training-time aid, saved in the training checkpoint, not part of the model."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict({f: torch.nn.Linear(dim, len(TAXONOMY.values(f))) for f in FAMILIES})

    def loss(self, embeddings: torch.Tensor, rows: list[dict]) -> torch.Tensor | None:
        """Mean over the categories of the cross-entropy of each labelled row's value, read from its embedding (row
        i of ``embeddings``); None when no row has a label."""
        losses = []
        for family, head in self.heads.items():
            _, known, target = labelled(rows, family, embeddings.device)
            if known:
                losses.append(torch.nn.functional.cross_entropy(head(embeddings[known].float()), target))
        return torch.stack(losses).mean() if losses else None


def train(model: CameraClip, tokenizer, cache: FrameCache, rows: list[dict], settings: TrainSettings,
          checkpoint: Path | None = None, extra: dict | None = None,
          on_step: Callable[[int, dict], None] | None = None,
          on_epoch: Callable[[int, dict], None] | None = None, windows: FrameCache | None = None) -> TrainState:
    """Train on ``rows`` (dataset rows of the train split, each in ``cache``); resume from ``checkpoint``.
    ``windows`` holds generator-format views of some of the clips (by shot id), shown instead of the clip with
    probability ``settings.window_rate`` each epoch."""
    from open_clip.loss import ClipLoss

    device = next(model.parameters()).device
    heads = LabelHeads(model.embed_dim).to(device) if settings.label_head_weight > 0 else None
    named = list(model.named_parameters()) + (list(heads.named_parameters()) if heads is not None else [])
    decay = [p for n, p in named if p.ndim >= 2 and "position" not in n and "embedding" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "position" not in n and "embedding" not in n)]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98),
                                  eps=1e-6)
    positions = cache.rows([r["shot_id"] for r in rows])
    windowed = frozenset(windows.shot_ids) if windows is not None else frozenset()
    # each row's place in ``windows`` (0 for a row without a window view: never shown)
    window_at = {s: i for i, s in enumerate(windows.shot_ids)} if windows is not None else {}
    window_positions = np.array([window_at.get(r["shot_id"], 0) for r in rows], dtype=np.int64)
    # every epoch's clips (each shown as one transform, with the labels it then shows) and batches, drawn up front:
    # the schedule's length is their total
    epochs = [epoch_plan(rows, settings, epoch, windowed) for epoch in range(settings.epochs)]
    steps = [math.ceil(len(batches) / settings.grad_accum) for _, _, batches in epochs]
    total = max(1, sum(steps))
    warmup = int(settings.warmup_fraction * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, total, warmup))
    state = TrainState(extra=dict(extra or {}))
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        if heads is not None and saved.get("heads") is not None:
            heads.load_state_dict(saved["heads"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        state = TrainState(saved["epoch"], saved["step"], saved["history"], {**saved.get("extra", {})})
    # computed once, not once an epoch; not at all when a finished training is resumed
    shown = {t for _, chosen, _ in epochs[state.epoch:] for t in chosen}
    flows = {t: clip_flows(model, windows, window_positions, t) if t.window else clip_flows(model, cache, positions, t)
             for t in shown}
    autocast, dtype = _autocast(device, settings.mixed_precision)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    loss_fn = ClipLoss()
    model.train()
    for epoch in range(state.epoch, settings.epochs):
        started, losses, seen = time.perf_counter(), [], 0
        epoch_rows, chosen, batches = epochs[epoch]
        optimiser.zero_grad(set_to_none=True)
        for b, batch in enumerate(batches):
            batch_rows = [epoch_rows[i] for i in batch]
            frames = cache.frames[positions[batch]]
            for k, i in enumerate(batch):
                if chosen[i].window:
                    frames[k] = windows.frames[window_positions[i]]
                if chosen[i] != TRANSFORMS[0]:
                    frames[k] = transform_clips(frames[k], chosen[i])
            video = model.normalise_frames(torch.from_numpy(frames))
            tokens = tokenizer(batch_texts(batch_rows, epoch, settings.caption_variants)).to(device)
            negatives = (hard_negative_texts(batch_rows, epoch, settings.hard_negatives, settings.caption_variants)
                         if settings.hard_negative_weight > 0 else [])
            flow = None
            if model.motion is not None and model.motion.flow:
                flow = torch.from_numpy(np.stack([flows[chosen[i]][i] for i in batch]).astype(np.float32)).to(device)
            with autocast:
                v, t, scale = model(video, tokens, flow)
                loss = loss_fn(v, t, scale)
                hard = hard_negative_loss(model, tokenizer, v, t, scale, negatives) if negatives else None
                if hard is not None:
                    loss = loss + settings.hard_negative_weight * hard
                if settings.label_prompt_weight > 0:
                    # the prompts' template cycles with the batch count (every template in turn)
                    prompted = label_prompt_loss(model, tokenizer, v, scale, batch_rows, epoch * len(batches) + b)
                    if prompted is not None:
                        loss = loss + settings.label_prompt_weight * prompted
                if heads is not None:
                    # the same classifiers read the clip and its caption: both must carry each label, along the
                    # same directions
                    supervised = [x for x in (heads.loss(v, batch_rows), heads.loss(t, batch_rows)) if x is not None]
                    if supervised:
                        loss = loss + settings.label_head_weight * torch.stack(supervised).mean()
                loss = loss / settings.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            if (b + 1) % settings.grad_accum == 0 or b + 1 == len(batches):
                if scaler:
                    scaler.step(optimiser)
                    scaler.update()
                else:
                    optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                scheduler.step()
                with torch.no_grad():
                    model.clip.logit_scale.clamp_(0, math.log(100))
                state.step += 1
                if on_step:
                    on_step(state.step, {"loss": loss.item() * settings.grad_accum,
                                         "lr": scheduler.get_last_lr()[0]})
            losses.append(loss.item() * settings.grad_accum)
            seen += len(batch)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": seconds,
                  "clips_per_s": seen / max(seconds, 1e-9)}
        state.epoch, state.history = epoch + 1, state.history + [record]
        # report first, then checkpoint: a kill in between repeats the epoch (and its report) on resume rather
        # than losing the report of an epoch the checkpoint already holds
        if on_epoch:
            on_epoch(state.epoch, record)
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": state.epoch, "step": state.step,
                            "history": state.history, "extra": state.extra,
                            "settings": asdict(settings),
                            "heads": heads.state_dict() if heads is not None else None}, tmp)
    model.eval()
    return state


def epoch_plan(rows: list[dict], settings: TrainSettings, epoch: int, windowed: frozenset = frozenset()
               ) -> tuple[list[dict], list[Transform], list[list[int]]]:
    """One epoch's rows, the transform each clip is shown with, and its label-unique batches (shuffled). With
    ``settings.augment`` each clip is shown mirrored, played backwards, both or as it is (drawn from the seed and
    the epoch), and its row carries the movement it then shows (``cinepipe.clip_augment``) and that caption. A
    clip whose shot id is in ``windowed`` is shown as its generator-format window with probability
    ``settings.window_rate`` (drawn likewise; the labels do not change)."""
    if settings.augment:
        draw = np.random.default_rng([settings.seed, epoch, 17]).integers(0, len(TRANSFORMS), len(rows))
        chosen = [TRANSFORMS[int(i)] for i in draw]
    else:
        chosen = [TRANSFORMS[0]] * len(rows)
    if windowed and settings.window_rate > 0:
        draw = np.random.default_rng([settings.seed, epoch, 29]).random(len(rows))
        chosen = [replace(t, window=True) if r["shot_id"] in windowed and u < settings.window_rate else t
                  for r, t, u in zip(rows, chosen, draw)]
    shown = []
    for r, transform in zip(rows, chosen):
        movement = transformed_movement(r["movement"], transform)
        if movement != r["movement"]:
            r = {**r, "movement": movement, "caption": caption(r["shot_id"], r["framing"], r["angle"], movement)}
        shown.append(r)
    batches = unique_label_batches([label_key(r) for r in shown], settings.batch_size,
                                   settings.seed * 100003 + epoch)
    random.Random(epoch).shuffle(batches)
    return shown, chosen, batches


@torch.no_grad()
def clip_flows(model: CameraClip, cache: FrameCache, positions: np.ndarray, transform: Transform = TRANSFORMS[0],
               batch_size: int = 64) -> np.ndarray | None:
    """The motion CNN's optical flow of every clip at ``positions`` of the cache, shown with ``transform``
    (float16, CPU: a training run keeps one set per transform and view, 150 MB each in float32 for the default
    run's 672 clips; flows are in pixels, which float16 holds to a thousandth), in that order; None when the model
    sees no flow."""
    if model.motion is None or not model.motion.flow:
        return None
    out = []
    for i in range(0, len(positions), batch_size):
        frames = torch.from_numpy(transform_clips(cache.frames[positions[i:i + batch_size]], transform))
        out.append(model.motion_flow(model.normalise_frames(frames)).cpu().numpy().astype(np.float16))
    return np.concatenate(out)


@torch.no_grad()
def embed_videos(model: CameraClip, cache: FrameCache, shot_ids: list[str], batch_size: int = 64) -> np.ndarray:
    model.eval()
    positions = cache.rows(shot_ids)
    out = []
    for i in range(0, len(positions), batch_size):
        part = positions[i:i + batch_size]
        frames = torch.from_numpy(np.ascontiguousarray(cache.frames[part]))
        out.append(model.encode_video(model.normalise_frames(frames)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def text_encoder(model: CameraClip, tokenizer, batch_size: int = 256) -> Callable[[list[str]], np.ndarray]:
    device = next(model.parameters()).device

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        model.eval()
        out = [model.encode_text(tokenizer(texts[i:i + batch_size]).to(device)).float().cpu().numpy()
               for i in range(0, len(texts), batch_size)]
        return np.concatenate(out)

    return encode

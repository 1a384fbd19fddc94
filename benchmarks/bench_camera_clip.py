"""CameraCLIP training throughput: cinepipe's training loop against a bare loop, and the frame cache's effect.

    python benchmarks/bench_camera_clip.py [--clips 96] [--epochs 3] [--repeat 2]

Data: ``--clips`` shots of the built-in reel, each rendered once as its own small mp4 (320x180, kept in the temp
directory between runs), with their true labels and captions.

Measured in one run, on the embedded default model (``cinepipe-tiny``, temporal pooling and motion input):

- **cinepipe**: ``cinepipe.clip_train.train`` as the ``camera_clip`` asset runs it (label-unique batches, caption
  variants, AdamW with warm-up and cosine decay, a checkpoint every epoch), on a warm frame cache, with the
  InfoNCE loss alone (``hard_negative_weight``, ``label_prompt_weight`` and ``label_head_weight`` 0: the bare
  loop's objective; ``augment`` off: the bare loop shows each clip as it is), and
  again with the default objective and augmentation (hard negatives: each movement clip's caption with the
  opposite direction; label prompts: each clip's framing, angle and movement among their zero-shot prompts; extra
  text batches a step; label heads; clips mirrored or played backwards), whose cost is reported apart. cinepipe
  computes each clip's optical flow (the motion CNN's input) once per training (once per transform shown), the
  bare loop in every forward pass, as the model does when given frames alone;
- **bare loop**: the same model and the same cached frames, written here with nothing but open_clip's
  ``ClipLoss``, a plain ``AdamW`` and shuffled batches of the same size;
- **first epoch**: the frame cache built from the clip files (every clip decoded once) plus one epoch, against
  later epochs, which read the cache and decode nothing.

Throughput is clips per second over the epochs after the first (the best of ``--repeat`` runs, the two loops
taking turns). Target: cinepipe >= 0.95x the bare loop.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cinepipe.captions import caption
from cinepipe.clip_data import build_frame_cache
from cinepipe.clip_model import build_model
from cinepipe.clip_settings import CameraClipSettings
from cinepipe.clip_train import train


def reel_clips(root: Path, count: int) -> pd.DataFrame:
    """``count`` reel shots as one mp4 each (rendered once), with their labels and captions."""
    from cinepipe.reel import FilmPlan, plan_reel, render_film

    root.mkdir(parents=True, exist_ok=True)
    films = -(-count // 8)
    shots = [s for plan in plan_reel(seed=321, films=films, shots_per_film=8) for s in plan.shots][:count]
    rows = []
    for k, shot in enumerate(shots):
        path = root / f"clip_{k:03d}.mp4"
        if not path.exists():
            single = replace(shot, index=0, transition_in="start", fade_s=0.0, black_frames=0)
            render_film(FilmPlan(name=path.stem, seed=321, shots=(single,)), path, 320, 180, 24)
        shot_id = f"bench-{k:03d}"
        rows.append({"shot_id": shot_id, "clip_path": str(path), "framing": shot.framing, "angle": shot.angle,
                     "movement": shot.movement,
                     "caption": caption(shot_id, shot.framing, shot.angle, shot.movement)})
    return pd.DataFrame(rows)


def later_rate(history: list[dict]) -> float:
    """Clips per second over the epochs after the first (their median)."""
    return statistics.median(r["clips_per_s"] for r in history[1:])


def bare_loop(settings: CameraClipSettings, frames: np.ndarray, captions: list[str], epochs: int) -> list[dict]:
    """The same model and data with open_clip's ClipLoss and a plain AdamW: the floor cinepipe's loop is measured
    against."""
    from open_clip.loss import ClipLoss

    torch.manual_seed(0)
    model, tokenizer = build_model(settings.model)
    device = next(model.parameters()).device
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.training.lr,
                                  weight_decay=settings.training.weight_decay)
    loss_fn = ClipLoss()
    generator = np.random.default_rng(0)
    batch = settings.training.batch_size
    history = []
    model.train()
    for _ in range(epochs):
        started = time.perf_counter()
        order = generator.permutation(len(frames))
        for start in range(0, len(order), batch):
            pick = np.sort(order[start:start + batch])
            video = model.normalise_frames(torch.from_numpy(np.ascontiguousarray(frames[pick])))
            tokens = tokenizer([captions[i] for i in pick]).to(device)
            v, t, scale = model(video, tokens)
            loss = loss_fn(v, t, scale)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        seconds = time.perf_counter() - started
        history.append({"seconds": seconds, "clips_per_s": len(frames) / seconds})
    return history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "cinepipe-bench-clips"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is measured apart)")
    settings = CameraClipSettings()
    settings = replace(settings, training=replace(settings.training, epochs=args.epochs))
    table = reel_clips(Path(args.cache), args.clips)
    rows = table.to_dict("records")
    print(f"data: {len(rows)} reel clips (320x180 mp4); model {settings.model.arch}, pooling "
          f"{settings.model.pooling}, motion input {settings.model.motion_input}; batch "
          f"{settings.training.batch_size}, {args.epochs} epochs; torch threads {torch.get_num_threads()}")
    work = Path(tempfile.mkdtemp(prefix="cinepipe-bench-clip-"))
    size = build_model(settings.model)[0].image_size
    best = {"cinepipe": 0.0, "bare": 0.0, "hard": 0.0}
    plain = replace(settings.training, hard_negative_weight=0.0, label_prompt_weight=0.0, label_head_weight=0.0,
                    augment=False)
    first = None
    try:
        for run in range(args.repeat):
            # cinepipe's loop, the first run from a cold cache (every clip decoded), later runs on the warm one
            started = time.perf_counter()
            cache = build_frame_cache(table, "bench", work / "cache", settings.model.frames, size)
            cache_s = time.perf_counter() - started
            torch.manual_seed(0)
            model, tokenizer = build_model(settings.model)
            state = train(model, tokenizer, cache, rows, plain, work / f"run{run}.ckpt")
            best["cinepipe"] = max(best["cinepipe"], later_rate(state.history))
            if cache.built:
                first = (cache_s, state.history[0]["seconds"], later_rate(state.history))
            bare = bare_loop(settings, cache.frames, [r["caption"] for r in rows], args.epochs)
            best["bare"] = max(best["bare"], later_rate(bare))
            torch.manual_seed(0)
            model, tokenizer = build_model(settings.model)
            hard = train(model, tokenizer, cache, rows, settings.training, work / f"hard{run}.ckpt")
            best["hard"] = max(best["hard"], later_rate(hard.history))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = best["cinepipe"] / best["bare"]
    print(f"bare loop (ClipLoss, AdamW)       {best['bare']:7.1f} clips/s")
    print(f"cinepipe train (warm cache)       {best['cinepipe']:7.1f} clips/s")
    print(f"ratio to the bare loop            {ratio:7.2f}x  (target >= 0.95x)")
    print(f"cinepipe train, default objective {best['hard']:7.1f} clips/s  ({best['hard'] / best['cinepipe']:.2f}x "
          f"InfoNCE alone: the hard negatives' and label prompts' own cost)")
    if first is not None:
        cache_s, epoch_s, later = first
        cold = len(rows) / (cache_s + epoch_s)
        print(f"first epoch, cold cache           {cold:7.1f} clips/s  (decode {cache_s:.2f} s + train "
              f"{epoch_s:.2f} s)")
        print(f"later epochs, warm cache          {later:7.1f} clips/s  ({later / cold:.1f}x the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

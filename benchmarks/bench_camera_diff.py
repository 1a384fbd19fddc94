"""CameraDiff benchmarks, measured in one run and printed as ratios.

1. A movement LoRA's training step through cinepipe (``add_lora`` + ``train_flow``: the frame batch from uint8, text
   from the cache, flow-matching loss with its motion term, AdamW with warm-up/cosine, gradient clipping) as a ratio
   to a bare diffusers + peft loop on the same model and batch (``add_adapter``, a plain AdamW, the flow-matching
   loss on tensors prepared beforehand).
   Target <= 1.1x.
2. Peak resident memory of one LoRA partition (train + evaluate) on the embedded default, in a fresh process.
   Target < 4 GiB.
3. With ``--home DIR`` (a home where ``cinepipe run`` has built a dataset and a base): the wall time of the twenty
   LoRA partitions with the default pool (2 workers) versus one after another, with ``--lora-steps`` steps each.

    python benchmarks/bench_camera_diff.py [--steps 30] [--home .cinepipe --lora-steps 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cinepipe import camera_diff as cd
from cinepipe.diffusion_settings import BaseModelSettings, LoraEvalSettings, LoraSettings
from cinepipe.diffusion_train import train_flow
from cinepipe.video_model import VideoModel


def fake_clips(n: int, fmt, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, fmt.frames, fmt.size, fmt.size, 3), dtype=np.uint8)


def cinepipe_steps(steps: int, batch: int) -> list[float]:
    settings = BaseModelSettings()
    model = VideoModel.create_tiny(settings.tiny, settings.format, seed=0, device="cpu")
    clips = fake_clips(64, settings.format)
    lora = LoraSettings(steps=steps, batch_size=batch)
    cd.add_lora(model, "pan_left", lora)
    params = [p for n, p in model.denoiser.named_parameters() if "lora_" in n]
    history = train_flow(model, clips, ["the camera pans left"] * len(clips), params, steps, batch, lora.lr,
                         lora.warmup_steps, motion_weight=cd.lora_motion_weight("pan_left", clips, lora))
    return [h["seconds"] for h in history]


def bare_steps(steps: int, batch: int) -> list[float]:
    """diffusers + peft, nothing else: the same denoiser (the UNet's inputs built as it takes them: the frames
    rearranged, a channel of frame positions, the text once per frame), adapter and loss."""
    from peft import LoraConfig

    from cinepipe.video_model import frame_positions

    settings = BaseModelSettings()
    model = VideoModel.create_tiny(settings.tiny, settings.format, seed=0, device="cpu")
    unet = model.denoiser
    unet.requires_grad_(False)
    lora = LoraSettings()
    unet.add_adapter(LoraConfig(r=lora.rank, lora_alpha=lora.alpha,
                                target_modules=cd.lora_targets("pan_left", lora, model.arch)),
                     adapter_name="pan_left")
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=lora.lr)
    clips = model.encode_video(fake_clips(64, settings.format))  # rearranged once, beforehand
    frames = clips.shape[2]
    text = model.encode_text(["the camera pans left"]).expand(batch * frames, -1, -1).contiguous()
    times = []
    for step in range(steps):
        started = time.perf_counter()
        x0 = clips[torch.randint(0, len(clips), (batch,))]
        sigma = torch.sigmoid(torch.randn(batch))
        noise = torch.randn_like(x0)
        s = sigma.view(batch, 1, 1, 1, 1)
        xt = (1 - s) * x0 + s * noise
        out = unet(torch.cat([xt, frame_positions(xt)], 1), sigma * 1000, text, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss((xt - out) / s.clamp(min=0.05), noise - x0)  # x0 prediction
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
    return times


PARTITION_CHILD = """
import json, resource, sys, time
import numpy as np
from cinepipe import camera_diff as cd
from cinepipe.diffusion_settings import BaseModelSettings, LoraEvalSettings, LoraSettings
from cinepipe.video_model import VideoModel
settings = BaseModelSettings()
model = VideoModel.create_tiny(settings.tiny, settings.format, seed=0, device="cpu")
rng = np.random.default_rng(0)
clips = rng.integers(0, 256, (int(sys.argv[1]), settings.format.frames, settings.format.size, settings.format.size, 3),
                     dtype=np.uint8)
lora = LoraSettings()
cd.add_lora(model, "pan_left", lora)
params = [p for n, p in model.denoiser.named_parameters() if "lora_" in n]
from cinepipe.diffusion_train import train_flow
train_flow(model, clips, ["the camera pans left"] * len(clips), params, lora.steps, lora.batch_size, lora.lr,
           motion_weight=cd.lora_motion_weight("pan_left", clips, lora))
metrics, _ = cd.evaluate_lora(model, "pan_left", LoraEvalSettings(), None, clips[:8])
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def partition_peak_rss(clips: int) -> float:
    done = subprocess.run([sys.executable, "-c", PARTITION_CHILD, str(clips)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def partitions_wall(home: Path, lora_steps: int, workers: int) -> float:
    from dagster import DagsterInstance

    from assets_defs.definitions import build_definitions
    from assets_defs.runner import prepare_dagster_home, run_camera_diff

    prepare_dagster_home(home)
    defs = build_definitions(home=str(home))
    started = time.perf_counter()
    failures = run_camera_diff(defs, DagsterInstance.get(), home, home / "reel", lambda line: None,
                               lora_config={"steps": lora_steps, "eval_samples": 2}, workers=workers,
                               train_base=False)
    if failures:
        raise SystemExit("partitions failed: " + "; ".join(failures[:3]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=LoraSettings.batch_size)
    parser.add_argument("--home", type=Path, help="a home with a dataset and a base: also time the 20 partitions")
    parser.add_argument("--lora-steps", type=int, default=20)
    args = parser.parse_args()

    ours = statistics.median(cinepipe_steps(args.steps, args.batch)[3:])
    bare = statistics.median(bare_steps(args.steps, args.batch)[3:])
    print(f"LoRA training step (batch {args.batch}, median of {args.steps - 3}): cinepipe {ours * 1000:.0f} ms, "
          f"bare diffusers + peft {bare * 1000:.0f} ms, ratio {ours / bare:.2f}x (target <= 1.1x)")
    peak = partition_peak_rss(64)
    print(f"one LoRA partition (train {LoraSettings.steps} steps + evaluate {LoraEvalSettings.samples} x 2 videos): "
          f"peak RSS {peak:.0f} MiB (target < 4096 MiB); this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.home:
        pooled = partitions_wall(args.home.absolute(), args.lora_steps, 2)
        serial = partitions_wall(args.home.absolute(), args.lora_steps, 1)
        print(f"20 LoRA partitions ({args.lora_steps} steps each): pool of 2 {pooled:.0f} s, one after another "
              f"{serial:.0f} s, speed-up {serial / pooled:.2f}x")


if __name__ == "__main__":
    main()

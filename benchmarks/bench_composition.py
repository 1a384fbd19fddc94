"""CLIPLoRA's per-step overhead: a denoising step whose adapter weights change (``set_adapters`` between steps, as
CLIPLoRA's schedules and ``switch`` do) as a ratio to a step with fixed weights, on the embedded default model with
three LoRAs loaded. Target <= 1.05x. Measured in one run, the two variants taking turns.

    python benchmarks/bench_composition.py [--steps 20 --repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cinepipe import camera_diff as cd
from cinepipe.diffusion_settings import BaseModelSettings, GenerationSettings, LoraSettings
from cinepipe.video_model import VideoModel

PATTERNS = ("long_shot", "low_angle", "zoom_in")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    settings = BaseModelSettings()
    model = VideoModel.create_tiny(settings.tiny, settings.format, seed=0, device="cpu")
    for p in PATTERNS:
        cd.add_lora(model, p, LoraSettings())
    gen = GenerationSettings(steps=args.steps)
    rng = np.random.default_rng(0)
    schedule = rng.uniform(0, 1.5, (args.steps, len(PATTERNS)))

    def fixed() -> None:
        cd.activate(model, {p: 1.0 for p in PATTERNS})
        model.sample(["a long shot from a low angle, the camera zooms in"], [0], gen)

    def changing() -> None:
        def before(i: int, _n: int) -> None:
            cd.activate(model, {p: float(w) for p, w in zip(PATTERNS, schedule[i])})

        model.sample(["a long shot from a low angle, the camera zooms in"], [0], gen, before_step=before)

    torch.set_grad_enabled(False)
    fixed(), changing()  # warm-up
    times = {"fixed": [], "changing": []}
    for _ in range(args.repeats):
        for name, fn in (("fixed", fixed), ("changing", changing)):
            started = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - started) / args.steps)
    a, b = statistics.median(times["fixed"]), statistics.median(times["changing"])
    print(f"denoising step with {len(PATTERNS)} LoRAs: fixed weights {a * 1000:.1f} ms, weights changed every step "
          f"{b * 1000:.1f} ms, ratio {b / a:.3f}x (target <= 1.05x; median of {args.repeats} runs of "
          f"{args.steps} steps)")


if __name__ == "__main__":
    main()

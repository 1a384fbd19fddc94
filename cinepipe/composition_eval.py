"""The fixed evaluation suite of multi-pattern requests and the comparison of the four composition methods.

The suite mixes framing, angle and movement in two- and three-pattern prompts, and has two-shot prompts (a pattern
per half of the frames). It is fixed here, not tuned to any method. For every method, request and seed:
``presence`` (the fraction of requested patterns present: CameraCLIP's zero-shot top value on the segment that
asks for it, and for movements also the motion estimator's image motion), ``cameraclip_score`` (the mean CameraCLIP
probability of the requested patterns within their families), ``temporal_consistency``, ``denoiser_calls`` and
``seconds``. Per method: ``<method>_pattern_presence_mean`` and ``_std`` (the spread of the per-seed means over
seeds), ``<method>_cameraclip_score_mean``, ``<method>_denoiser_calls`` and ``<method>_seconds`` (means per video).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cinepipe.composition import (METHODS, Composer, Request, SearchSettings, pattern_presence,
                                  pattern_probabilities, temporal_consistency)

SUITE: tuple[Request, ...] = (
    Request("a long shot of a man on an empty street, the camera dollies in", ("long_shot", "dolly_in")),
    Request("a close-up of a woman from a low angle, the camera pans left", ("close_up", "low_angle", "pan_left")),
    Request("a medium shot of a child from a high angle, the camera zooms out",
            ("medium_shot", "high_angle", "zoom_out")),
    Request("a full shot with a dutch angle, the camera tilts up", ("full_shot", "dutch_angle", "tilt_up")),
    Request("a long shot of a courtyard, then a close-up of a woman", ("long_shot", "close_up"),
            segments=(("long_shot",), ("close_up",))),
    Request("the camera pans right along a wall, then tilts down", ("pan_right", "tilt_down"),
            segments=(("pan_right",), ("tilt_down",))),
)


def suite_patterns(suite: tuple[Request, ...] = SUITE) -> list[str]:
    return list(dict.fromkeys(p for r in suite for p in r.patterns))


def evaluate_methods(composer: Composer, suite: tuple[Request, ...] = SUITE, seeds: tuple[int, ...] = (0, 1, 2),
                     search: SearchSettings = SearchSettings(), methods: tuple[str, ...] = METHODS,
                     on_result=None) -> tuple[pd.DataFrame, dict, dict, dict]:
    """Run every method on every request and seed. Returns (one row per run, the per-method metrics, the
    CLIPLoRA fitness histories per run, the best video per method by presence then CameraCLIP score)."""
    rows, histories, best = [], {}, {}
    fps = composer.model.format.fps
    for method in methods:
        for r_index, request in enumerate(suite):
            for seed in seeds:
                result = composer.compose(method, request, seed, search=SearchSettings(**{**search.__dict__,
                                                                                           "seed": seed}))
                present = pattern_presence(composer.scorer, request, result.video, fps)
                probs = pattern_probabilities(composer.scorer, request, result.video)
                row = {"method": method, "request": r_index, "prompt": request.prompt, "seed": seed,
                       "presence": float(np.mean(list(present.values()))),
                       "cameraclip_score": float(np.mean(probs)),
                       "temporal_consistency": temporal_consistency(result.video),
                       "denoiser_calls": result.denoiser_calls, "seconds": result.seconds,
                       **{f"present_{p}": v for p, v in present.items()}}
                rows.append(row)
                if result.history:
                    histories[(r_index, seed)] = result.history
                key = (row["presence"], row["cameraclip_score"])
                if method not in best or key > best[method][0]:
                    best[method] = (key, request.prompt, result.video)
                if on_result is not None:
                    on_result(row)
    table = pd.DataFrame(rows)
    return table, summarise(table), histories, {m: (p, v) for m, (_, p, v) in best.items()}


def summarise(table: pd.DataFrame) -> dict:
    out = {}
    for method, rows in table.groupby("method", sort=False):
        per_seed = rows.groupby("seed")["presence"].mean()
        out[f"{method}_pattern_presence_mean"] = float(per_seed.mean())
        out[f"{method}_pattern_presence_std"] = float(per_seed.std(ddof=0))
        out[f"{method}_cameraclip_score_mean"] = float(rows["cameraclip_score"].mean())
        out[f"{method}_temporal_consistency_mean"] = float(rows["temporal_consistency"].mean())
        out[f"{method}_denoiser_calls"] = float(rows["denoiser_calls"].mean())
        out[f"{method}_seconds"] = float(rows["seconds"].mean())
    return out


def results_table(summary: dict, methods: tuple[str, ...] = METHODS) -> pd.DataFrame:
    cols = ("pattern_presence_mean", "pattern_presence_std", "cameraclip_score_mean", "temporal_consistency_mean",
            "denoiser_calls", "seconds")
    return pd.DataFrame([{"method": m, **{c: summary.get(f"{m}_{c}") for c in cols}} for m in methods
                         if f"{m}_pattern_presence_mean" in summary])


def fitness_figure(histories: dict):
    """Best-so-far fitness against evaluations spent, one line per (request, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (r_index, seed), history in sorted(histories.items()):
        ax.plot([h["evaluations"] for h in history], [h["best_fitness"] for h in history], lw=1, alpha=0.8,
                label=f"request {r_index}, seed {seed}")
    ax.set_xlabel("evaluations (previews scored by CameraCLIP)")
    ax.set_ylabel("best fitness so far")
    ax.set_title("CLIPLoRA search")
    if len(histories) <= 12:
        ax.legend(fontsize=6)
    return fig

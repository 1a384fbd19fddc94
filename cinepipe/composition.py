"""Composing several pattern LoRAs inside one generated video: three static baselines and CLIPLoRA.

Every method runs on the same ``VideoModel`` with the patterns' adapters loaded once (``camera_diff.load_lora``);
changing weights between denoising steps only calls ``set_adapters`` (no file is read):

- ``merge``: every LoRA at ``weight`` for the whole denoising run;
- ``switch``: one LoRA at a time, the next one every ``every`` steps;
- ``composite``: at every step, each LoRA's flow prediction alone, averaged (one denoiser call per LoRA a step);
- ``cliplora``: a genetic search over *schedules*: a weight per LoRA for each of ``phases`` spans of the denoising
  run (and, for a two-shot request, per frame segment: each segment's flow comes from its own weights, so a step
  costs one call per segment). A schedule's fitness is CameraCLIP's judgement of its video, or of a cheaper preview
  (the same noise, ``preview_steps`` denoising steps): the mean over requested patterns of the probability CameraCLIP
  gives the pattern within its family (per segment for two-shot requests), plus ``top_weight`` times the share of
  them it reads as their family's top value, plus ``prompt_weight`` times the cosine of the video with the whole
  prompt. The first schedule tried is merge's (each segment's own patterns at weight 1); the others start near it.
  Population, generations, mutation and crossover rates, elitism and early stopping are ``SearchSettings``; the
  seed makes a search reproducible. With previews shorter than the generation, the best schedule then generates
  the final video with the full step count; with full-length previews the best one is the final video.

Costs: ``ComposeResult.denoiser_calls`` counts every denoiser evaluation the method spent (the search's previews
included) and ``seconds`` its wall time; ``history`` holds the best-so-far fitness against evaluations spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cinepipe.camera_diff import activate
from cinepipe.diffusion_settings import METHODS, GenerationSettings, SearchSettings  # noqa: F401 (re-exported)
from cinepipe.taxonomy import TAXONOMY
from cinepipe.video_model import VideoModel

@dataclass(frozen=True)
class Request:
    """What to generate: a prompt and the patterns it asks for; ``segments`` (two-shot requests) names the patterns
    of each consecutive, equal part of the frames, e.g. ``(("long_shot",), ("close_up",))``."""

    prompt: str
    patterns: tuple[str, ...]
    segments: tuple[tuple[str, ...], ...] = ()

    def segment_patterns(self) -> tuple[tuple[str, ...], ...]:
        return self.segments or (self.patterns,)


@dataclass
class ComposeResult:
    method: str
    video: np.ndarray  # uint8 [T, H, W, 3]
    denoiser_calls: int
    seconds: float
    schedule: np.ndarray | None = None  # [segments, phases, patterns]
    history: list[dict] = field(default_factory=list)  # cliplora: {"evaluations", "best_fitness"}


def frame_masks(frames: int, segments: int) -> list[slice]:
    bounds = np.linspace(0, frames, segments + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds, bounds[1:])]


class Composer:
    """The four methods over one model whose adapters (named by pattern) are loaded."""

    def __init__(self, model: VideoModel, scorer=None, generation: GenerationSettings = GenerationSettings()):
        self.model = model
        self.scorer = scorer
        self.generation = generation

    # ---- one denoising run under a schedule ---------------------------------------------------------------
    def run_schedule(self, request: Request, schedule: np.ndarray, seed: int, steps: int) -> np.ndarray:
        """Generate with ``schedule`` [segments, phases, patterns] (weights of ``request.patterns``)."""
        patterns = list(request.patterns)
        segments, phases, _ = schedule.shape
        model = self.model
        latents = model.initial_noise([seed])
        text = model.encode_text([request.prompt])
        frames_axis = 2
        masks = frame_masks(latents.shape[frames_axis], segments)

        def flow_fn(x, sigma, _text, step):
            phase = min(phases - 1, step * phases // steps)
            if segments == 1:
                activate(model, _weights(patterns, schedule[0, phase]))
                return model.predict(x, sigma, text)
            out = torch.empty_like(x)
            for k, mask in enumerate(masks):
                activate(model, _weights(patterns, schedule[k, phase]))
                out[:, :, mask] = model.predict(x, sigma, text)[:, :, mask]
            return out

        return self._sample(request, seed, steps, flow_fn, latents)

    def _sample(self, request: Request, seed: int, steps: int, flow_fn, latents=None) -> np.ndarray:
        settings = GenerationSettings(steps=steps, guidance_scale=1.0, shift=self.generation.shift)
        return self.model.sample([request.prompt], [seed], settings, latents=latents, flow_fn=flow_fn)[0]

    # ---- the methods --------------------------------------------------------------------------------------
    def compose(self, method: str, request: Request, seed: int, search: SearchSettings = SearchSettings(),
                weight: float = 1.0, every: int = 1) -> ComposeResult:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (one of: {', '.join(METHODS)})")
        calls, started = self.model.calls, time.perf_counter()
        history: list[dict] = []
        n, steps = len(request.patterns), self.generation.steps
        segments = len(request.segment_patterns())
        if method == "merge":
            schedule = np.full((1, 1, n), weight)
            video = self.run_schedule(request, schedule, seed, steps)
        elif method == "switch":
            schedule = np.zeros((1, max(1, steps // max(1, every)), n))
            for phase in range(schedule.shape[1]):
                schedule[0, phase, phase % n] = weight
            video = self.run_schedule(request, schedule, seed, steps)
        elif method == "composite":
            schedule = None
            patterns = list(request.patterns)

            def flow_fn(x, sigma, text, step):
                flows = []
                for p in patterns:
                    activate(self.model, {p: weight})
                    flows.append(self.model.predict(x, sigma, text))
                return torch.stack(flows).mean(0)

            video = self._sample(request, seed, steps, flow_fn)
        else:
            if self.scorer is None:
                raise ValueError("cliplora needs a CameraCLIP scorer")
            schedule, history, video = self.search(request, seed, search, segments)
            if video is None:  # previews are cheaper than the final video: generate it with the full step count
                video = self.run_schedule(request, schedule, seed, steps)
        activate(self.model, {})
        return ComposeResult(method, video, self.model.calls - calls, time.perf_counter() - started, schedule,
                             history)

    # ---- CLIPLoRA's search ----------------------------------------------------------------------------------
    def fitness(self, request: Request, video: np.ndarray, settings: SearchSettings = SearchSettings()) -> float:
        """Mean CameraCLIP probability of each requested pattern within its family (per frame segment for
        two-shot requests), plus ``top_weight`` x the share of requested patterns CameraCLIP reads as its family's
        top value, plus ``prompt_weight`` x the cosine with the whole prompt."""
        probs, tops = pattern_readings(self.scorer, request, video)
        prompt = float(self.scorer.score(video[None], [request.prompt])[0, 0])
        return (float(np.mean(probs)) + settings.top_weight * float(np.mean(tops))
                + settings.prompt_weight * prompt)

    def search(self, request: Request, seed: int, settings: SearchSettings, segments: int
               ) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
        """The genetic search; returns the best schedule, the best-so-far fitness per evaluation and, when the
        previews have the full step count, the best schedule's video (else None)."""
        rng = np.random.default_rng(settings.seed)
        full = settings.preview_steps >= self.generation.steps
        preview_steps = self.generation.steps if full else settings.preview_steps
        n = len(request.patterns)
        shape = (segments, settings.phases, n)
        seg_patterns = request.segment_patterns()

        own = [(k, request.patterns.index(p)) for k, pats in enumerate(seg_patterns) for p in pats]

        def seeded() -> np.ndarray:  # start near "merge": each segment's own patterns on, anywhere up to max_weight
            genome = rng.uniform(0.0, 0.4, shape)
            for k, i in own:
                genome[k, :, i] += rng.uniform(0.6, max(0.6, settings.max_weight - 0.4))
            return np.clip(genome, 0.0, settings.max_weight)

        def merged() -> np.ndarray:  # merge's schedule (each segment's own patterns at weight 1), to improve on
            genome = np.zeros(shape)
            for k, i in own:
                genome[k, :, i] = 1.0
            return np.clip(genome, 0.0, settings.max_weight)

        population = [merged()] + [seeded() for _ in range(settings.population - 1)]
        scores: list[float] = []
        history: list[dict] = []
        best, best_fit, best_video, stale, evaluations = None, -np.inf, None, 0, 0

        def evaluate(genome: np.ndarray) -> float:
            nonlocal best, best_fit, best_video, evaluations
            video = self.run_schedule(request, genome, seed, preview_steps)
            fit = self.fitness(request, video, settings)
            evaluations += 1
            if fit > best_fit:
                best, best_fit, best_video = genome.copy(), fit, (video if full else None)
            history.append({"evaluations": evaluations, "fitness": fit, "best_fitness": best_fit})
            return fit

        scores = [evaluate(g) for g in population]
        for _generation in range(settings.generations):
            before = best_fit
            order = np.argsort(scores)[::-1]
            elite = [population[i] for i in order[:settings.elitism]]
            elite_scores = [scores[i] for i in order[:settings.elitism]]
            children = []
            while len(children) < settings.population - len(elite):
                a, b = (population[_tournament(rng, scores)] for _ in range(2))
                child = np.where(rng.random(shape) < 0.5, a, b) if rng.random() < settings.crossover_rate else a.copy()
                mutate = rng.random(shape) < settings.mutation_rate
                child = np.clip(child + mutate * rng.normal(0.0, settings.mutation_scale, shape), 0.0,
                                settings.max_weight)
                children.append(child)
            population = elite + children
            scores = elite_scores + [evaluate(c) for c in children]
            stale = stale + 1 if best_fit <= before + 1e-6 else 0
            if stale >= settings.patience:
                break
        return best, history, best_video


def _tournament(rng: np.random.Generator, scores: list[float], k: int = 2) -> int:
    picks = rng.choice(len(scores), size=min(k, len(scores)), replace=False)
    return int(max(picks, key=lambda i: scores[i]))


def _weights(patterns: list[str], row: np.ndarray) -> dict[str, float]:
    return {p: float(w) for p, w in zip(patterns, row) if w > 1e-3}


def pattern_probabilities(scorer, request: Request, video: np.ndarray) -> list[float]:
    """CameraCLIP's probability of each requested pattern within its family (see ``pattern_readings``)."""
    return pattern_readings(scorer, request, video)[0]


def pattern_readings(scorer, request: Request, video: np.ndarray) -> tuple[list[float], list[bool]]:
    """CameraCLIP's probability of each requested pattern within its family, on the frames of the segment that
    requests it (softmax of the class scores at CLIP's logit scale), and whether it is its family's top value."""
    out, tops = [], []
    segments = request.segment_patterns()
    masks = frame_masks(video.shape[0], len(segments))
    for mask, pats in zip(masks, segments):
        part = video[mask]
        scores = scorer.classify(part[None])[0]
        for p in pats:
            family = TAXONOMY.family_of(p)
            values = list(scores[family]["scores"])
            logits = np.array([scores[family]["scores"][v] for v in values]) * scorer.logit_scale
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            out.append(float(probs[values.index(p)]))
            tops.append(scores[family]["top"] == p)
    return out, tops


def pattern_presence(scorer, request: Request, video: np.ndarray, fps: float) -> dict:
    """Which requested patterns are present: CameraCLIP's zero-shot top value equals the pattern on the segment
    that asks for it; for movements, the motion estimator must also see the pattern's image motion."""
    from cinepipe.camera_diff import video_motion

    segments = request.segment_patterns()
    masks = frame_masks(video.shape[0], len(segments))
    present = {}
    for mask, pats in zip(masks, segments):
        part = video[mask]
        top = scorer.classify(part[None])[0] if scorer is not None else None
        for p in pats:
            family = TAXONOMY.family_of(p)
            ok = top is not None and top[family]["top"] == p
            if family == "movement":
                motion_ok = len(part) >= 2 and video_motion(part, fps)["label"] == TAXONOMY.image_motion[p]
                ok = (ok or top is None) and motion_ok
            present[p] = bool(ok)
    return present


def temporal_consistency(video: np.ndarray) -> float:
    """1 minus the mean absolute difference between consecutive frames (0..1 scale): high for a coherent video."""
    v = video.astype(np.float32) / 255.0
    return float(1.0 - np.mean(np.abs(np.diff(v, axis=0)))) if len(v) > 1 else 1.0

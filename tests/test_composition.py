"""The four composition methods on a tiny model with two adapters and a fresh tiny CameraCLIP: costs, a
reproducible search, a best-so-far fitness that never falls, two-shot requests."""

import numpy as np
import pytest
import torch

from cinepipe import camera_diff as cd
from cinepipe.composition import (METHODS, Composer, Request, SearchSettings, frame_masks, pattern_presence,
                                  pattern_readings, temporal_consistency)
from cinepipe.diffusion_settings import GenerationSettings, LoraSettings, TinyVideoConfig, VideoFormat
from cinepipe.video_model import VideoModel

TINY = TinyVideoConfig(channels=(8, 16), heads=2, text_width=32, text_layers=1)  # a tiny UNet, fast
FMT = VideoFormat(size=32, frames=6, fps=8.0)
GEN = GenerationSettings(steps=4)
SEARCH = SearchSettings(population=4, generations=3, phases=2, elitism=1, preview_steps=2, patience=5, seed=3)


@pytest.fixture(scope="module")
def composer():
    from cinepipe.clip_model import build_model
    from cinepipe.clip_scorer import ClipScorer
    from cinepipe.clip_settings import ClipModelSettings

    torch.manual_seed(0)
    model = VideoModel.create_tiny(TINY, FMT, seed=0, device="cpu")
    for pattern in ("long_shot", "zoom_in", "close_up"):
        cd.add_lora(model, pattern, LoraSettings(rank=2, alpha=2))
        with torch.no_grad():  # a trained-looking adapter: B away from its zero start
            for name, p in model.denoiser.named_parameters():
                if f"lora_B.{pattern}" in name:
                    p.normal_(0.0, 0.5)
    clip, tokenizer = build_model(ClipModelSettings(frames=4), device="cpu")
    return Composer(model, ClipScorer(clip, tokenizer), GEN)


REQUEST = Request("a woman in a courtyard", ("long_shot", "zoom_in"))


def test_each_method_generates_and_counts_its_denoiser_calls(composer):
    results = {m: composer.compose(m, REQUEST, seed=1, search=SEARCH) for m in METHODS}
    for method, result in results.items():
        assert result.video.shape == (FMT.frames, FMT.size, FMT.size, 3), method
        assert result.seconds > 0
    assert results["merge"].denoiser_calls == GEN.steps
    assert results["switch"].denoiser_calls == GEN.steps
    assert results["composite"].denoiser_calls == GEN.steps * 2
    evaluations = len(results["cliplora"].history)
    assert results["cliplora"].denoiser_calls == evaluations * SEARCH.preview_steps + GEN.steps
    assert evaluations == SEARCH.population + SEARCH.generations * (SEARCH.population - SEARCH.elitism)
    # the methods really differ: the adapters act
    assert not np.array_equal(results["merge"].video, results["switch"].video)


def test_the_search_is_reproducible_and_its_best_fitness_never_falls(composer):
    a = composer.compose("cliplora", REQUEST, seed=2, search=SEARCH)
    b = composer.compose("cliplora", REQUEST, seed=2, search=SEARCH)
    assert np.array_equal(a.schedule, b.schedule) and np.array_equal(a.video, b.video)
    best = [h["best_fitness"] for h in a.history]
    assert all(y >= x for x, y in zip(best, best[1:]))
    assert best[-1] == max(h["fitness"] for h in a.history)
    other = composer.compose("cliplora", REQUEST, seed=2, search=SearchSettings(**{**SEARCH.__dict__, "seed": 4}))
    assert not np.array_equal(a.schedule, other.schedule)


def test_full_step_previews_are_the_final_videos_and_start_from_merge(composer):
    full = SearchSettings(**{**SEARCH.__dict__, "preview_steps": GEN.steps, "generations": 1})
    result = composer.compose("cliplora", REQUEST, seed=1, search=full)
    evaluations = len(result.history)
    assert result.denoiser_calls == evaluations * GEN.steps  # the best preview is returned, not generated again
    # the first schedule tried is merge's, so the search ends at least as fit as merge
    merge = composer.compose("merge", REQUEST, seed=1)
    merge_fitness = composer.fitness(REQUEST, merge.video, full)
    assert result.history[0]["fitness"] == pytest.approx(merge_fitness, abs=1e-5)
    assert composer.fitness(REQUEST, result.video, full) == pytest.approx(result.history[-1]["best_fitness"],
                                                                          abs=1e-5)
    assert result.history[-1]["best_fitness"] >= merge_fitness - 1e-5
    # the top-value term counts: without it the fitness is lower by exactly its share
    _, tops = pattern_readings(composer.scorer, REQUEST, merge.video)
    plain = SearchSettings(**{**full.__dict__, "top_weight": 0.0})
    assert merge_fitness - composer.fitness(REQUEST, merge.video, plain) == pytest.approx(np.mean(tops), abs=1e-6)


def test_two_shot_requests_schedule_each_frame_segment(composer):
    two_shot = Request("a long shot, then a close-up", ("long_shot", "close_up"),
                       segments=(("long_shot",), ("close_up",)))
    result = composer.compose("cliplora", two_shot, seed=1, search=SEARCH)
    assert result.schedule.shape == (2, SEARCH.phases, 2)
    evaluations = len(result.history)
    assert result.denoiser_calls == (evaluations * SEARCH.preview_steps + GEN.steps) * 2  # a call per segment
    present = pattern_presence(composer.scorer, two_shot, result.video, FMT.fps)
    assert set(present) == {"long_shot", "close_up"}
    assert 0.0 <= temporal_consistency(result.video) <= 1.0


def test_frame_masks_cover_every_frame_once():
    masks = frame_masks(8, 3)
    covered = np.concatenate([np.arange(8)[m] for m in masks])
    assert covered.tolist() == list(range(8))


def test_unknown_method_and_missing_scorer_fail_clearly(composer):
    with pytest.raises(ValueError, match="unknown method"):
        composer.compose("blend", REQUEST, seed=0)
    with pytest.raises(ValueError, match="needs a CameraCLIP scorer"):
        Composer(composer.model, None, GEN).compose("cliplora", REQUEST, seed=0)


def test_changing_only_the_weights_matches_a_full_set_adapters(composer):
    model = composer.model
    x = model.initial_noise([5])
    sigma, text = torch.tensor([0.6]), model.encode_text(["a woman in a courtyard"])
    weights = {"long_shot": 0.3, "zoom_in": 1.7}
    with torch.no_grad():
        cd.activate(model, {"close_up": 1.0})  # other adapters: the full path
        cd.activate(model, weights)
        full = model.predict(x, sigma, text)
        cd.activate(model, {"long_shot": 1.0, "zoom_in": 1.0})
        cd.activate(model, weights)  # the same adapters: only their scales change
        fast = model.predict(x, sigma, text)
        cd.activate(model, {})
        cd.activate(model, weights)  # after disabling: the full path again
        again = model.predict(x, sigma, text)
    assert torch.equal(full, fast) and torch.equal(full, again)
    cd.activate(model, {})

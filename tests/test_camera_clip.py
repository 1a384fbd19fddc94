"""CameraCLIP groundwork: the model, the frame cache and batches, the metrics, training with resume."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from cinepipe.clip_data import build_frame_cache, sample_positions, unique_label_batches
from cinepipe.clip_eval import retrieval_metrics
from cinepipe.clip_model import FLOW_UNIT, build_model, load_checkpoint, optical_flow, save_checkpoint
from cinepipe.clip_settings import ClipModelSettings, TrainSettings
from cinepipe.diffusion_settings import VideoFormat
from cinepipe.clip_train import (LabelHeads, hard_negative_loss, hard_negative_texts, label_prompt_loss, lr_factor,
                                 train)
from media_fixtures import _ff


def test_temporal_pooling_hears_frame_order_and_mean_pooling_cannot():
    torch.manual_seed(0)
    video = torch.randn(2, 8, 3, 64, 64)
    temporal, _ = build_model(ClipModelSettings(pooling="temporal"), "cpu")
    torch.nn.init.normal_(temporal.temporal.out.weight, std=0.1)  # as after training: the branch is not zero
    mean, _ = build_model(ClipModelSettings(pooling="mean"), "cpu")
    with torch.no_grad():
        assert (temporal.encode_video(video) - temporal.encode_video(video.flip(1))).abs().max() > 2e-5
        assert (mean.encode_video(video) - mean.encode_video(video.flip(1))).abs().max() < 2e-6


def test_untrained_temporal_module_is_mean_pooling():
    torch.manual_seed(0)
    video = torch.randn(2, 8, 3, 64, 64)
    model, _ = build_model(ClipModelSettings(pooling="temporal", image_frames=None), "cpu")
    with torch.no_grad():
        per_frame = model.clip.encode_image(video.flatten(0, 1)).view(2, 8, -1).mean(1)
        expected = torch.nn.functional.normalize(per_frame, dim=-1)
        assert torch.allclose(model.encode_video(video), expected, atol=1e-5)


def test_image_tower_sees_the_chosen_frames_and_old_checkpoints_see_all(tmp_path):
    from cinepipe.clip_model import image_frame_positions

    assert image_frame_positions(8, 4) == [0, 2, 5, 7] and image_frame_positions(8, None) == list(range(8))
    assert image_frame_positions(8, 8) == list(range(8)) and image_frame_positions(8, 1) == [4]
    with pytest.raises(ValueError, match="image_frames must be at least 1"):
        ClipModelSettings(image_frames=0)
    torch.manual_seed(0)
    video = torch.randn(2, 8, 3, 64, 64)
    model, _ = build_model(ClipModelSettings(image_frames=4), "cpu")
    torch.nn.init.normal_(model.temporal.out.weight, std=0.1)  # as after training
    other = video.clone()
    other[:, 3] = 0  # a frame the image tower does not see: the untrained motion and appearance CNNs add nothing
    with torch.no_grad():
        assert torch.allclose(model.encode_video(video), model.encode_video(other), atol=1e-6)
        other[:, 2] = 0  # one it sees
        assert (model.encode_video(video) - model.encode_video(other)).abs().max() > 1e-3
    save_checkpoint(tmp_path / "old.pt", model)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    del payload["settings"]["image_frames"]  # written before the setting existed: every frame
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", "cpu")[0].settings.image_frames is None


def _drifting_texture(dx: int, dy: int, frames: int = 4, size: int = 64) -> torch.Tensor:
    """Grey frames [1, T, H, W] of a smooth random texture moving dx, dy pixels a frame."""
    rng = np.random.default_rng(0)
    big = torch.nn.functional.avg_pool2d(torch.tensor(rng.random((1, 1, 3 * size, 3 * size)), dtype=torch.float32),
                                         5, 1, 2)[0, 0]
    crops = [big[size - t * dy: 2 * size - t * dy, size - t * dx: 2 * size - t * dx] for t in range(frames)]
    return torch.stack(crops)[None]


def test_untrained_appearance_cnn_adds_nothing_and_old_checkpoints_load_without_it(tmp_path):
    torch.manual_seed(0)
    video = torch.randn(2, 8, 3, 64, 64)
    plain, _ = build_model(ClipModelSettings(appearance_input=False), "cpu")
    seen, _ = build_model(ClipModelSettings(appearance_input=True), "cpu")
    assert plain.appearance is None and seen.appearance is not None
    missing, unexpected = seen.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("appearance.") for k in missing)
    with torch.no_grad():
        assert torch.allclose(seen.encode_video(video), plain.encode_video(video), atol=1e-6)  # zero projection
        torch.nn.init.normal_(seen.appearance.out.weight, std=0.1)  # as after training: it reads the picture
        assert (seen.encode_video(video) - plain.encode_video(video)).abs().max() > 1e-3
    save_checkpoint(tmp_path / "old.pt", plain)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    del payload["settings"]["appearance_input"]  # written before the setting existed
    torch.save(payload, tmp_path / "old.pt")
    loaded, _, _ = load_checkpoint(tmp_path / "old.pt", "cpu")
    assert not loaded.settings.appearance_input and loaded.appearance is None


def test_label_heads_read_each_category_and_skip_unknown_labels():
    from cinepipe.taxonomy import TAXONOMY

    torch.manual_seed(0)
    heads = LabelHeads(16)
    rows = [{"framing": "close_up", "angle": "low_angle", "movement": "pan_left"},
            {"framing": "long_shot", "angle": None, "movement": "static"}]
    x = torch.randn(2, 16, requires_grad=True)
    loss = heads.loss(x, rows)
    expected = []
    with torch.no_grad():
        for family, known in (("framing", [0, 1]), ("angle", [0]), ("movement", [0, 1])):
            values = list(TAXONOMY.values(family))
            target = torch.tensor([values.index(rows[i][family]) for i in known])
            expected.append(float(torch.nn.functional.cross_entropy(heads.heads[family](x[known]), target)))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-6)
    loss.backward()
    assert float(x.grad.abs().sum()) > 0
    assert heads.loss(x, [{"framing": None, "angle": None, "movement": None}] * 2) is None


def test_optical_flow_follows_the_picture():
    right = optical_flow(_drifting_texture(2, 0))  # [1, 2 (T-1), H, W]: x, y of each pair
    assert right.shape == (1, 6, 64, 64)
    inner = right[0, :, 16:48, 16:48].mean((1, 2)) * FLOW_UNIT
    assert inner[0::2].min() > 1.5 and inner[1::2].abs().max() < 0.3  # 2 px right a frame, no vertical motion
    up = optical_flow(_drifting_texture(0, -2))[0, :, 16:48, 16:48].mean((1, 2)) * FLOW_UNIT
    assert up[1::2].max() < -1.5 and up[0::2].abs().max() < 0.3
    fading = _drifting_texture(2, 0)
    fading[:, -1] *= 0.05  # the last frame fades to black: still 2 px right (before: 1.0 px right, 0.3 down)
    faded = optical_flow(fading)[0, :, 16:48, 16:48].mean((1, 2)) * FLOW_UNIT
    assert faded[0::2].min() > 1.5 and faded[1::2].abs().max() < 0.3


def test_motion_input_sees_the_flow_and_old_checkpoints_load_without_it(tmp_path):
    torch.manual_seed(0)
    flow_model, _ = build_model(ClipModelSettings(), "cpu")
    assert flow_model.settings.motion_features == "flow" and flow_model.motion.flow
    assert flow_model.motion.net[0].in_channels == 2 * 8 - 1 + 2 * 7
    frames_model, _ = build_model(ClipModelSettings(motion_features="frames"), "cpu")
    assert frames_model.motion.net[0].in_channels == 2 * 8 - 1
    with pytest.raises(ValueError, match="motion_features"):
        ClipModelSettings(motion_features="pixels")
    # a checkpoint written before the setting existed holds frame-input weights: it loads as "frames"
    save_checkpoint(tmp_path / "old.pt", frames_model)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    del payload["settings"]["motion_features"]
    torch.save(payload, tmp_path / "old.pt")
    loaded, _, _ = load_checkpoint(tmp_path / "old.pt", "cpu")
    assert loaded.settings.motion_features == "frames" and not loaded.motion.flow


def test_checkpoint_round_trip_and_local_files_only(tmp_path):
    model, _ = build_model(ClipModelSettings(), "cpu")
    save_checkpoint(tmp_path / "m.pt", model, {"dataset_version": "abc"})
    loaded, tokenizer, extra = load_checkpoint(tmp_path / "m.pt", "cpu")
    assert extra["dataset_version"] == "abc"
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert tokenizer(["a close-up"]).shape[1] == 32
    with pytest.raises(FileNotFoundError, match="local files only"):
        ClipModelSettings(arch="ViT-B-32", pretrained=str(tmp_path / "absent.pt"))


def test_batches_never_repeat_a_label_triple():
    keys = [("close_up", "eye_level", "pan_left")] * 5 + [("long_shot", "overhead", "static")] * 3 + \
           [(f"f{i}", "a", "m") for i in range(20)]
    batches = unique_label_batches(keys, 8, seed=3)
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used)) >= len(keys) - 4  # at most the surplus copies of the 5-fold key left out
    for batch in batches:
        assert len({keys[i] for i in batch}) == len(batch) <= 8


def test_retrieval_counts_label_equal_items_as_hits():
    keys = [("a",), ("a",), ("b",)]
    video = np.eye(3)
    text = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # clip 0's caption finds clip 1: same labels
    m = retrieval_metrics(video, text, keys)
    assert m["t2v_r1"] == 1.0 and m["v2t_r1"] == 1.0
    text_wrong = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    m = retrieval_metrics(video, text_wrong, keys)
    assert m["t2v_r1"] == 0.0 and m["t2v_median_rank"] == 2.0


def test_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5) and lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_hard_negatives_change_one_label_and_the_loss_prefers_the_true_caption():
    from cinepipe.captions import caption

    rows = [{"shot_id": "f:0", "framing": "close_up", "angle": "low_angle", "movement": "pan_left"},
            {"shot_id": "f:1", "framing": "long_shot", "angle": None, "movement": "static"},
            {"shot_id": "f:2", "framing": None, "angle": "eye_level", "movement": "dolly_in"}]
    texts = hard_negative_texts(rows, epoch=3, kinds=("direction",), variants=True)
    assert texts == [[caption("f:0", "close_up", "low_angle", "pan_right", seed=3)], [],
                     [caption("f:2", None, "eye_level", "dolly_out", seed=3)]]
    both = hard_negative_texts(rows, epoch=3, kinds=("direction", "framing", "angle"), variants=True)
    assert [len(t) for t in both] == [3, 1, 2]  # no opposite of static, no other value of an unknown label
    assert both == hard_negative_texts(rows, epoch=3, kinds=("direction", "framing", "angle"), variants=True)
    assert "close up" not in both[0][1] and "pans left" in both[0][1]
    with pytest.raises(ValueError, match="hard negatives"):
        hard_negative_texts(rows, 0, ("colour",), True)

    torch.manual_seed(0)
    model, tok = build_model(ClipModelSettings(frames=4), "cpu")
    video = torch.nn.functional.normalize(torch.randn(3, model.clip.text_projection.shape[1]), dim=-1)
    true_text = model.encode_text(tok([caption(r["shot_id"], r["framing"], r["angle"], r["movement"], seed=3)
                                       for r in rows]))
    with torch.no_grad():
        neg = model.encode_text(tok([texts[0][0], texts[2][0]]))
    scale = torch.tensor(10.0)
    loss = hard_negative_loss(model, tok, video, true_text, scale, texts)
    expected = np.mean([np.log1p(np.exp(float(scale * (video[i] @ (n - true_text[i].detach()))))) for i, n in
                        ((0, neg[0]), (2, neg[1]))])
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    loss.backward()  # gradients reach the text tower through the true and the changed captions
    assert hard_negative_loss(model, tok, video, true_text, scale, [[], [], []]) is None


def test_label_prompt_loss_is_each_categorys_cross_entropy_over_its_prompts():
    from cinepipe.clip_eval import prompts_for
    from cinepipe.taxonomy import TAXONOMY

    rows = [{"framing": "close_up", "angle": "low_angle", "movement": "pan_left"},
            {"framing": "long_shot", "angle": None, "movement": "static"}]
    torch.manual_seed(0)
    model, tok = build_model(ClipModelSettings(frames=4), "cpu")
    video = torch.nn.functional.normalize(torch.randn(2, model.clip.text_projection.shape[1]), dim=-1)
    video.requires_grad_(True)
    scale = torch.tensor(10.0)
    loss = label_prompt_loss(model, tok, video, scale, rows, template=1)
    expected = []
    with torch.no_grad():
        for family, known in (("framing", [0, 1]), ("angle", [0]), ("movement", [0, 1])):  # no unknown angle
            values = list(TAXONOMY.values(family))
            classes = model.encode_text(tok([prompts_for(family, v)[1 % len(prompts_for(family, v))]
                                             for v in values]))
            logits = scale * video[known] @ classes.T
            target = torch.tensor([values.index(rows[i][family]) for i in known])
            expected.append(float(torch.nn.functional.cross_entropy(logits, target)))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)
    loss.backward()  # gradients reach both towers
    assert video.grad is not None and float(video.grad.abs().sum()) > 0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.clip.transformer.parameters())
    assert label_prompt_loss(model, tok, video, scale, [{"framing": None, "angle": None, "movement": None}] * 2,
                             template=0) is None


def test_frame_cache_and_training_resume(tmp_path):
    clips, rows = [], []
    sources = ["testsrc2", "smptebars", "mandelbrot", "rgbtestsrc"]
    for i, src in enumerate(f"{name}=size=96x54:rate=24" for name in sources):
        path = tmp_path / f"c{i}.mp4"
        _ff("-f", "lavfi", "-i", src, "-frames:v", "24", "-pix_fmt", "yuv420p", str(path))
        clips.append(str(path))
        rows.append({"shot_id": f"f:{i}", "clip_path": str(path), "frames": 24,
                     "framing": ["close_up", "long_shot"][i % 2],
                     "angle": "eye_level", "movement": ["pan_left", "pan_right", "static", "zoom_in"][i],
                     "caption": "x"})
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    table = pd.DataFrame(rows + [{**rows[0], "shot_id": "f:9", "clip_path": str(bad)}])
    cache = build_frame_cache(table, "v1", tmp_path / "cache", frames=4, size=64)
    assert cache.built and cache.frames.shape == (4, 4, 64, 64, 3) and list(cache.skipped) == ["f:9"]
    assert str(bad) in cache.skipped["f:9"]
    assert not build_frame_cache(table, "v1", tmp_path / "cache", frames=4, size=64).built  # decoded once
    assert sample_positions(24, 4) == [3, 9, 15, 21]

    settings = TrainSettings(epochs=2, batch_size=4, augment=True)
    torch.manual_seed(0)
    model, tok = build_model(ClipModelSettings(frames=4), "cpu")
    first = train(model, tok, cache, rows, TrainSettings(epochs=1, batch_size=4), tmp_path / "run.ckpt",
                  extra={"mlflow_run_id": "r1"})
    assert first.epoch == 1
    assert set(torch.load(tmp_path / "run.ckpt", weights_only=False)["heads"]) >= {"heads.framing.weight"}
    resumed = train(build_model(ClipModelSettings(frames=4), "cpu")[0], tok, cache, rows, settings,
                    tmp_path / "run.ckpt")
    assert resumed.epoch == 2 and len(resumed.history) == 2 and resumed.extra == {"mlflow_run_id": "r1"}
    # window views (here the clips' own frames reversed in time, under their shot ids) shown at every step
    windows = replace(cache, frames=np.ascontiguousarray(cache.frames[:, ::-1]))
    windowed = train(build_model(ClipModelSettings(frames=4), "cpu")[0], tok, cache, rows,
                     TrainSettings(epochs=1, batch_size=4, window_rate=1.0), windows=windows)
    assert windowed.epoch == 1 and np.isfinite(windowed.history[0]["loss"])


def test_augmented_epochs_show_each_clip_transformed_with_the_labels_it_then_shows():
    from cinepipe.captions import caption
    from cinepipe.clip_augment import TRANSFORMS
    from cinepipe.clip_train import epoch_plan

    movements = ["pan_left", "truck_right", "zoom_in", "tilt_up", "static", None] * 8
    rows = [{"shot_id": f"f:{i}", "framing": "close_up", "angle": "eye_level", "caption": "x", "movement": m}
            for i, m in enumerate(movements)]
    plain_rows, plain, _ = epoch_plan(rows, TrainSettings(augment=False), 0)
    assert plain_rows == rows and set(plain) == {TRANSFORMS[0]}
    seen = set()
    for epoch in range(3):
        shown, chosen, batches = epoch_plan(rows, TrainSettings(augment=True, seed=1), epoch)
        assert (shown, chosen, batches) == epoch_plan(rows, TrainSettings(augment=True, seed=1), epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(rows)))
        for r, s, t in zip(rows, shown, chosen):
            seen.add(t)
            expected = {(False, False): r["movement"], (True, False): {"pan_left": "pan_right",
                        "truck_right": "truck_left"}.get(r["movement"], r["movement"]),
                        (False, True): {"pan_left": "pan_right", "truck_right": "truck_left", "zoom_in": "zoom_out",
                                        "tilt_up": "tilt_down"}.get(r["movement"], r["movement"]),
                        (True, True): {"zoom_in": "zoom_out", "tilt_up": "tilt_down"}.get(r["movement"],
                                                                                         r["movement"])}
            assert s["movement"] == expected[(t.mirror, t.reverse)]
            assert s["caption"] == (r["caption"] if s["movement"] == r["movement"]
                                    else caption(r["shot_id"], r["framing"], r["angle"], s["movement"]))
    assert seen == set(TRANSFORMS)


def test_clips_with_a_generator_window_are_shown_as_it_at_the_window_rate():
    from cinepipe.clip_train import epoch_plan

    rows = [{"shot_id": f"f:{i}", "framing": "close_up", "angle": "eye_level", "caption": "x",
             "movement": ["pan_left", "tilt_up"][i % 2]} for i in range(400)]
    windowed = frozenset(r["shot_id"] for r in rows[:200])
    shown, chosen, _ = epoch_plan(rows, TrainSettings(augment=True, window_rate=0.5), 3, windowed)
    assert (shown, chosen) == epoch_plan(rows, TrainSettings(augment=True, window_rate=0.5), 3, windowed)[:2]
    assert not any(t.window for t in chosen[200:])  # no window view: never shown as one
    assert 70 < sum(t.window for t in chosen[:200]) < 130
    # the window does not change what the clip shows: the same movement as without it
    plain, _, _ = epoch_plan(rows, TrainSettings(augment=True, window_rate=0.0), 3, windowed)
    assert [r["movement"] for r in shown] == [r["movement"] for r in plain]
    assert all(t.name.endswith("window") for t in chosen if t.window)
    every, _, _ = epoch_plan(rows, TrainSettings(augment=True, window_rate=1.0), 3, windowed)
    assert [r["movement"] for r in every] == [r["movement"] for r in shown]
    with pytest.raises(ValueError, match="window_rate"):
        TrainSettings(window_rate=1.5)


def test_synthetic_clips_are_labelled_cached_and_of_their_own_films(tmp_path):
    from cinepipe.clip_synthetic import SYNTHETIC_SEED, synthetic_clips
    from cinepipe.reel import plan_reel
    from cinepipe.taxonomy import TAXONOMY

    clips = synthetic_clips(tmp_path, films=1, frames=4, size=32, workers=1)
    assert clips.built and clips.frames.shape == (8, 4, 32, 32, 3) and clips.frames.dtype == np.uint8
    plan = plan_reel(SYNTHETIC_SEED, 1, 8)[0]
    assert [(r["framing"], r["angle"], r["movement"]) for r in clips.rows] == \
        [(s.framing, s.angle, s.movement) for s in plan.shots]
    for row in clips.rows:
        for family in ("framing", "angle", "movement"):
            assert row[family] in TAXONOMY.values(family)
        assert row["shot_id"].startswith("synthetic-") and row["caption"]
    assert all(clips.frames[i].std() > 5 for i in range(8))  # pictures, not black frames
    again = synthetic_clips(tmp_path, films=1, frames=4, size=32, workers=1)
    assert not again.built and np.array_equal(again.frames, clips.frames) and again.rows == clips.rows
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside them

    # the generator-format view: the same shots, each as a one-second window at 8 fps drawn at 16 px
    window = synthetic_clips(tmp_path, films=1, frames=4, size=32, workers=1, window=VideoFormat(size=16, fps=8.0))
    assert window.built and window.rows == clips.rows and window.frames.shape == clips.frames.shape
    moving = [i for i, r in enumerate(clips.rows) if r["movement"] != "static"]
    assert moving

    def change(frames):  # mean absolute difference between consecutive frames
        return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())

    # a window spans a fraction of the shot: the picture moves less between its frames than between frames
    # spread over the whole shot
    assert np.mean([change(window.frames[i]) for i in moving]) < np.mean([change(clips.frames[i]) for i in moving])

    def detail(frames):  # the picture's high frequencies: drawn at 16 px, they are gone
        return float(np.abs(np.diff(frames.astype(np.float32), axis=2)).mean())

    assert np.mean([detail(f) for f in window.frames]) < 0.8 * np.mean([detail(f) for f in clips.frames])

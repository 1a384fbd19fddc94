"""CameraDiff's library on tiny configs: the embedded models (the UNet default and the earlier Wan one), LoRA
training and the diffusers LoRA format, the real-model path (a tiny diffusers Wan pipeline saved to disk and loaded
back), and the motion-control measure."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cinepipe import camera_diff as cd
from cinepipe.diffusion_settings import GenerationSettings, LoraSettings, TinyVideoConfig, VideoFormat
from cinepipe.diffusion_train import train_flow
from cinepipe.video_data import window_positions
from cinepipe.video_model import ModelLoadError, VideoModel

TINY = TinyVideoConfig(channels=(8, 16), heads=2, text_width=32, text_layers=1)  # a tiny UNet, fast
TINY_WAN = TinyVideoConfig(arch="wan", layers=2, heads=2, head_dim=8, ffn_dim=32, patch=8, text_width=32,
                           text_layers=1)
FMT = VideoFormat(size=32, frames=6, fps=8.0)
FAST = GenerationSettings(steps=3)


def moving_squares(n: int, fmt: VideoFormat, direction: int = 1, seed: int = 0) -> np.ndarray:
    """Bright squares on grey that slide ``direction`` (+1 right, -1 left) 2 px a frame."""
    rng = np.random.default_rng(seed)
    out = np.full((n, fmt.frames, fmt.size, fmt.size, 3), 60, np.uint8)
    for i in range(n):
        x0, y0 = rng.integers(4, fmt.size - 12, 2)
        for t in range(fmt.frames):
            x = int(x0 + direction * 2 * t) % (fmt.size - 8)
            out[i, t, y0:y0 + 8, x:x + 8] = 230
    return out


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return VideoModel.create_tiny(TINY, FMT, seed=0, device="cpu")


@pytest.fixture()
def tiny_wan():
    return VideoModel.create_tiny(TINY_WAN, FMT, seed=0, device="cpu")


@pytest.mark.parametrize("arch", ["unet", "wan"])
def test_tiny_model_samples_and_round_trips_through_a_directory(arch, tmp_path):
    tiny = VideoModel.create_tiny(TINY if arch == "unet" else TINY_WAN, FMT, seed=0, device="cpu")
    assert tiny.arch == arch
    videos = tiny.sample(["a close-up of a person", "a long shot"], [1, 2], FAST)
    assert videos.shape == (2, FMT.frames, FMT.size, FMT.size, 3) and videos.dtype == np.uint8
    assert tiny.calls == FAST.steps  # one batched denoiser call a step
    tiny.save(tmp_path / "base")
    assert (tmp_path / "base" / ("unet" if arch == "unet" else "transformer")).is_dir()
    again = VideoModel.load(tmp_path / "base", device="cpu")
    assert again.format == FMT and again.kind == "tiny" and again.arch == arch
    assert np.array_equal(again.sample(["a close-up of a person", "a long shot"], [1, 2], FAST), videos)


def test_a_tiny_model_saved_before_the_unet_existed_loads_as_wan(tiny_wan, tmp_path):
    tiny_wan.save(tmp_path / "m")
    info = json.loads((tmp_path / "m" / "cinepipe_video.json").read_text())
    del info["tiny"]["arch"], info["tiny"]["channels"], info["tiny"]["space_to_depth"], info["tiny"]["frame_channel"]
    (tmp_path / "m" / "cinepipe_video.json").write_text(json.dumps(info))
    old = VideoModel.load(tmp_path / "m", device="cpu")
    assert old.arch == "wan" and old.latent_shape(1) == (1, 3, FMT.frames, FMT.size, FMT.size)
    assert np.array_equal(old.sample(["a"], [0], FAST), tiny_wan.sample(["a"], [0], FAST))


def test_the_unet_sees_frames_rearranged_and_their_place_in_the_clip(tiny):
    """Space-to-depth is lossless; the frame channel tells the UNet which frame is which: its output does not
    just follow a shuffle of its input frames (without the channel it nearly did)."""
    frames = moving_squares(2, FMT)
    x = tiny.encode_video(frames)
    assert x.shape == (2, 12, FMT.frames, FMT.size // 2, FMT.size // 2)
    assert np.array_equal(tiny.decode_video(x), frames)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    text = tiny.encode_text(["a", "b"])
    with torch.no_grad():
        for p in tiny.denoiser.parameters():  # away from the zero-initialised output layers of a fresh model
            p.add_(torch.randn_like(p) * 0.05)
        moved = tiny.denoise(x, torch.tensor([500.0, 500.0]), text)[:, :, order]
        shuffled = tiny.denoise(x[:, :, order], torch.tensor([500.0, 500.0]), text)
    assert float((moved - shuffled).abs().mean()) > 0.05 * float(moved.abs().mean())


def test_the_tiny_model_predicts_the_clean_video_and_derives_the_flow(tiny, tmp_path):
    """x0-prediction: the transformer's output is the clean video, the flow is (x - x0) / sigma; a tiny model
    saved before the setting existed (no "prediction" in its info) is read as predicting the flow."""
    assert tiny.prediction == "x0"
    x = torch.randn(tiny.latent_shape(2))
    sigma = torch.tensor([0.5, 0.01])
    text = tiny.encode_text(["a", "b"])
    with torch.no_grad():
        out = tiny.denoise(x, sigma * 1000.0, text)
        flow = tiny.predict(x, sigma, text)
    assert torch.allclose(flow[0], (x[0] - out[0]) / 0.5, atol=1e-5)
    assert torch.allclose(flow[1], (x[1] - out[1]) / 0.05, atol=1e-4)  # the noise level is floored
    tiny.save(tmp_path / "m")
    assert VideoModel.load(tmp_path / "m", device="cpu").prediction == "x0"
    info = json.loads((tmp_path / "m" / "cinepipe_video.json").read_text())
    del info["tiny"]["prediction"]
    (tmp_path / "m" / "cinepipe_video.json").write_text(json.dumps(info))
    old = VideoModel.load(tmp_path / "m", device="cpu")
    assert old.prediction == "flow"
    with torch.no_grad():
        assert torch.allclose(old.predict(x, sigma, text), out, atol=1e-5)


def test_denoising_error_is_reproducible_and_falls_as_the_model_learns(tiny):
    frames = moving_squares(8, FMT)
    before = cd.denoising_error(tiny, frames, sigmas=(0.3, 0.9), seeds=2)
    assert set(before) == {0.3, 0.9} and before == cd.denoising_error(tiny, frames, sigmas=(0.3, 0.9), seeds=2)
    train_flow(tiny, frames, [cd.GENERIC_CAPTION] * 8, tiny.denoiser.parameters(), steps=40, batch_size=8,
               lr=3e-3, warmup=5, seed=0)
    after = cd.denoising_error(tiny, frames, sigmas=(0.3, 0.9), seeds=2)
    assert after[0.3] < before[0.3] and after[0.9] < before[0.9], (before, after)
    assert cd.denoising_error(tiny, frames[:0]) == {}


def test_loading_something_else_fails_with_the_path_and_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        VideoModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="neither a cinepipe video model"):
        VideoModel.load(tmp_path / "empty")


def test_flow_matching_training_lowers_the_loss(tiny):
    frames = moving_squares(16, FMT)

    def held_out_loss() -> float:  # the same clips, noise and noise levels every time
        with torch.no_grad():
            return float(tiny.flow_loss(tiny.encode_video(frames), tiny.encode_text(["squares"] * 16),
                                        torch.Generator().manual_seed(123)))

    before = held_out_loss()
    history = train_flow(tiny, frames, ["squares"] * 16, tiny.denoiser.parameters(), steps=40, batch_size=8,
                         lr=3e-3, warmup=5, seed=0)
    assert len(history) == 40 and history[0]["lr"] < history[5]["lr"]  # warm-up
    assert held_out_loss() < 0.8 * before


def test_the_motion_term_adds_the_error_in_the_change_between_frames(tiny):
    """``motion_weight`` adds, on the same noise draw, that many times the squared error of the predicted change
    from frame to frame; its scale is large for slow clips, small for fast ones, and 1 for still ones."""
    frames = moving_squares(4, FMT, 1)
    x0 = tiny.encode_video(frames)
    text = tiny.encode_text(["squares"] * 4)
    with torch.no_grad():
        plain = tiny.flow_loss(x0, text, torch.Generator().manual_seed(3))
        weighted = tiny.flow_loss(x0, text, torch.Generator().manual_seed(3), motion_weight=2.0)
        generator = torch.Generator().manual_seed(3)
        sigma = torch.sigmoid(torch.randn(4, generator=generator))
        noise = torch.randn(x0.shape, generator=generator)
        s = sigma.view(4, 1, 1, 1, 1)
        flow = tiny.predict((1 - s) * x0 + s * noise, sigma, text)
        change = torch.nn.functional.mse_loss(flow.diff(dim=2), (noise - x0).diff(dim=2))
    assert float(weighted - plain) == pytest.approx(2.0 * float(change), rel=1e-4)
    slow = np.repeat(frames[:, :1], FMT.frames, axis=1)
    slow[:, -1] = frames[:, 1]  # one square moves once, by 2 px
    assert cd.motion_loss_scale(slow) > cd.motion_loss_scale(frames) > 1.0
    assert cd.motion_loss_scale(np.repeat(frames[:, :1], FMT.frames, axis=1)) == 1.0
    settings = LoraSettings(motion_loss_weight=2.0)
    assert cd.lora_motion_weight("pan_left", frames, settings) == pytest.approx(2.0 * cd.motion_loss_scale(frames))
    assert cd.lora_motion_weight("close_up", frames, settings) == 0.0


def test_a_slow_movement_trains_on_its_clips_played_faster():
    """The pace: 1 for framing, angle and a movement that changes enough between frames; for a slow one the square
    root of its motion scale over the target, rounded down to a half, at most max_pace and at most what keeps the
    window inside the shortest clip the pattern trains on (its own clips and, augmented, its opposite's)."""
    import pandas as pd

    frames = moving_squares(4, FMT, 1)
    slow = np.repeat(frames[:, :1], FMT.frames, axis=1)
    slow[:, -1] = frames[:, 1]
    scale = cd.motion_loss_scale(slow)
    table = pd.DataFrame({"shot_id": ["a", "b", "c"], "split": ["train", "val", "test"],
                          "movement": ["truck_left", "truck_right", "truck_left"], "duration_s": [4.0, 3.0, 0.1]})
    settings = LoraSettings(pace_target=scale / 6.3, max_pace=3.0)  # sqrt(6.3) = 2.51
    assert cd.lora_pace(table, "truck_left", slow, FMT, settings) == 2.5
    assert cd.lora_pace(table, "truck_left", slow, FMT, replace(settings, max_pace=2.2)) == 2.0
    assert cd.lora_pace(table, "truck_left", slow, FMT, replace(settings, pace_target=scale / 1.2)) == 1.0
    assert cd.lora_pace(table, "truck_left", slow, FMT, replace(settings, pace_target=0)) == 1.0
    assert cd.lora_pace(table, "close_up", slow, FMT, settings) == 1.0
    # the truck_right clip (3 s; the test split's 0.1 s clip does not count) bounds the window: 3 s x 8 fps / 5
    # frame steps = 4.8, unless the LoRA does not train on mirrored clips
    assert cd.lora_pace(table, "truck_left", slow, FMT, replace(settings, pace_target=scale / 100, max_pace=9)) == 4.5
    short = table.assign(duration_s=[4.0, 1.0, 0.1])
    assert cd.lora_pace(short, "truck_left", slow, FMT, replace(settings, max_pace=9)) == 1.5  # 1.6
    assert cd.lora_pace(short, "truck_left", slow, FMT, replace(settings, max_pace=9, augment=False)) == 2.5
    assert cd.motion_loss_scale(frames) < scale and cd.lora_pace(table, "truck_left", frames, FMT, replace(
        settings, pace_target=cd.motion_loss_scale(frames))) == 1.0


def test_a_zoom_trains_on_its_windows_magnified_further_over_time():
    """zoom_in and dolly_in gain exp(zoom_boost) over a window, zoom_out and dolly_out lose it; every frame is a
    crop (no border), the clips come out at the format's size, and the estimator reads the added zoom."""
    rng = np.random.default_rng(0)
    settings = LoraSettings(zoom_boost=0.4)
    assert cd.lora_zoom_boost("zoom_in", settings) == 0.4 == cd.lora_zoom_boost("dolly_in", settings)
    assert cd.lora_zoom_boost("zoom_out", settings) == -0.4 == cd.lora_zoom_boost("dolly_out", settings)
    for other in ("pan_left", "truck_right", "static", "close_up", "dutch_angle"):
        assert cd.lora_zoom_boost(other, settings) == 0.0
    assert cd.lora_zoom_boost("zoom_in", LoraSettings(zoom_boost=0)) == 0.0
    # a still picture with detail at every scale (blurred noise), at twice the format's size
    import cv2

    picture = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), (0, 0), 1.5)
    still = np.repeat(picture[None, None], FMT.frames, axis=1)
    grown = cd.zoom_clips(still, 0.4, 32)
    shrunk = cd.zoom_clips(still, -0.4, 32)
    assert grown.shape == shrunk.shape == (1, FMT.frames, 32, 32, 3) and grown.dtype == np.uint8
    small = cv2.resize(picture, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(grown[0, 0].astype(int) - small).mean() < 1.0  # a zoom in starts at the picture itself
    assert np.abs(shrunk[0, -1].astype(int) - small).mean() < 1.0  # a zoom out ends there
    assert cd.video_motion(grown[0], FMT.fps)["label"] == "zoom+"
    assert cd.video_motion(shrunk[0], FMT.fps)["label"] == "zoom-"
    assert cd.video_motion(cd.zoom_clips(still, 0.0, 32)[0], FMT.fps)["label"] == "static"


def test_a_lora_is_saved_in_the_diffusers_format_and_loads_back(tiny, tmp_path):
    tiny.save(tmp_path / "base")
    settings = LoraSettings(rank=4, alpha=4, steps=6, lr=5e-3)
    cd.add_lora(tiny, "pan_left", settings)
    params = [p for n, p in tiny.denoiser.named_parameters() if "lora_" in n]
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in tiny.denoiser.named_parameters() if "lora_" not in n)
    train_flow(tiny, moving_squares(8, FMT, -1), ["pans left"] * 8, params, 6, 4, 5e-3)
    cd.save_lora(tiny, "pan_left", tmp_path / "lora", {"clips": 8})

    from safetensors import safe_open

    with safe_open(str(tmp_path / "lora" / cd.LORA_WEIGHTS), "pt") as fh:
        keys = list(fh.keys())
        meta = fh.metadata()
    assert keys and all(k.startswith("unet.") and "lora_" in k for k in keys)  # as AnimateDiffPipeline reads them
    # a movement LoRA adapts the motion modules and the resnets' convolutions, not the spatial transformers
    assert all(".motion_modules." in k or ".resnets." in k for k in keys) and not any(".attentions." in k for k in keys)
    assert json.loads(meta["lora_adapter_metadata"])["unet.r"] == 4  # read back as the LoraConfig
    from diffusers import AnimateDiffPipeline

    parsed = AnimateDiffPipeline.lora_state_dict(str(tmp_path / "lora"), weight_name=cd.LORA_WEIGHTS)[0]
    assert sorted(parsed) == sorted(keys)  # diffusers' own reader of UNet pipelines' LoRAs takes the file as it is

    with_lora = tiny.sample(["pans left"], [3], FAST)
    tiny.denoiser.disable_adapters()
    without = tiny.sample(["pans left"], [3], FAST)
    assert not np.array_equal(with_lora, without)

    fresh = VideoModel.load(tmp_path / "base", device="cpu")
    assert cd.load_lora(fresh, tmp_path / "lora") == "pan_left"
    cd.activate(fresh, {"pan_left": 1.0})
    again = fresh.sample(["pans left"], [3], FAST)
    # the same up to float rounding (the reloaded adapter's weights are scaled in another order): a few pixels
    # one level apart
    assert np.abs(again.astype(int) - with_lora).max() <= 1 and np.mean(again != with_lora) < 0.01
    cd.activate(fresh, {})
    assert np.array_equal(fresh.sample(["pans left"], [3], FAST), without)


def _adapted(model, pattern: str) -> list[str]:
    cd.add_lora(model, pattern, LoraSettings(rank=2, alpha=2))
    return sorted({n.split(".lora_")[0] for n, _ in model.denoiser.named_parameters() if f".{pattern}." in n + "."
                   and "lora_" in n})


def test_lora_targets_by_family_on_the_unet(tiny):
    movement = _adapted(tiny, "zoom_in")
    assert any(".motion_modules." in n and ".attn" in n for n in movement)
    assert any(".resnets." in n and n.endswith((".conv1", ".conv2")) for n in movement)
    assert all(".motion_modules." in n or ".resnets." in n for n in movement)
    framing = _adapted(tiny, "close_up")
    assert framing and all(".attentions." in n and (".attn2." in n or ".ff." in n) for n in framing)
    assert not any(".motion_modules." in n for n in framing)
    assert _adapted(tiny, "low_angle") == [n for n in framing]  # angle: the same modules


def test_framing_and_angle_loras_target_cross_attention_and_feed_forward_on_wan():
    targets = cd.lora_targets("close_up", LoraSettings(), "wan")
    assert all(t.startswith(("attn2.", "ffn.")) for t in targets)
    assert cd.lora_targets("low_angle", LoraSettings(), "wan") == targets
    assert all(t.startswith("attn1.") for t in cd.lora_targets("zoom_in", LoraSettings(), "wan"))


def _tiny_wan_pipeline(path):
    """A tiny diffusers Wan text-to-video pipeline (VAE, UMT5 encoder, a word-level tokenizer), saved to ``path``."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = "a the camera pans left right zooms in out of person shot close up woman standing courtyard".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab) + 8, d_model=32, d_kv=8, d_ff=64,
                                               num_layers=1, num_heads=2, relative_attention_num_buckets=8))
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                        in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, rope_max_seq_len=32)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.save_pretrained(str(path))
    return path


def test_the_real_model_path_on_a_tiny_wan_pipeline_directory(tmp_path):
    """Load a diffusers pipeline directory (no hub), train a LoRA through its VAE latents, save it, and apply it
    with diffusers' own ``WanPipeline.load_lora_weights`` / ``set_adapters``."""
    from diffusers import WanPipeline

    fmt = VideoFormat(size=32, frames=5, fps=8.0)
    path = _tiny_wan_pipeline(tmp_path / "wan")
    with pytest.raises(ModelLoadError, match="1 \\+ a multiple of 4"):
        VideoModel.load(path, VideoFormat(size=32, frames=6), device="cpu")
    model = VideoModel.load(path, fmt, device="cpu")
    assert model.kind == "pipeline" and model.latent_shape(1) == (1, 4, 2, 4, 4)
    cd.add_lora(model, "pan_left", LoraSettings(rank=2, alpha=2))
    params = [p for n, p in model.denoiser.named_parameters() if "lora_" in n]
    history = train_flow(model, moving_squares(4, fmt, -1), ["the camera pans left"] * 4, params, 3, 2, 1e-2)
    assert len(history) == 3 and np.isfinite(history[-1]["loss"])
    cd.save_lora(model, "pan_left", tmp_path / "lora")
    video = model.sample(["a woman standing in a courtyard"], [0], FAST)
    assert video.shape == (1, 5, 32, 32, 3)

    pipe = WanPipeline.from_pretrained(str(path), local_files_only=True)
    pipe.load_lora_weights(str(tmp_path / "lora"), weight_name=cd.LORA_WEIGHTS, adapter_name="pan_left")
    pipe.set_adapters(["pan_left"], [0.8])
    out = pipe("a woman standing", num_frames=5, height=32, width=32, num_inference_steps=2, guidance_scale=1.0,
               output_type="np", max_sequence_length=16)
    assert out.frames.shape == (1, 5, 32, 32, 3)


def test_window_positions_take_a_centred_window_at_the_target_rate():
    fmt = VideoFormat(frames=8, fps=8.0)
    assert window_positions(48, 24.0, fmt) == [13, 16, 19, 22, 25, 28, 31, 34]  # every 3rd frame, centred
    short = window_positions(10, 24.0, fmt)
    assert len(short) == 8 and max(short) == 9


def test_motion_scores_judge_the_image_motion():
    measured = [{"label": "pan-"}, {"label": "pan-"}, {"label": "static"}, {"label": "pan+"}]
    assert cd.motion_scores("pan_left", measured) == {"acc": 0.5, "static_frac": 0.25}
    assert cd.motion_scores("truck_left", measured)["acc"] == 0.5  # no parallax at 32 px: judged alike
    assert cd.motion_scores("dolly_in", [{"label": "zoom+"}])["acc"] == 1.0
    assert cd.motion_scores("dolly_in", [{"label": "zoom-"}])["acc"] == 0.0


def test_the_small_video_motion_estimator_reads_pans_tilts_zooms_and_stillness():
    """What motion-control accuracy relies on, on 32 px, 8-frame videos: a window sliding right over a texture is
    the camera panning right (the image moves "pan+"), its mirror "pan-"; sliding down is a tilt down; a growing
    crop is a zoom out; no change is static."""
    import cv2

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((160, 160)) * 255).astype(np.uint8), (0, 0), 2.0)
    texture = np.repeat(texture[:, :, None], 3, axis=2)

    def clip(boxes):
        return np.stack([cv2.resize(texture[y:y + s, x:x + s], (32, 32), interpolation=cv2.INTER_AREA)
                         for x, y, s in boxes])

    right = clip([(40 + 2 * t, 40, 64) for t in range(8)])
    assert cd.video_motion(right, 8.0)["label"] == "pan+"
    assert cd.video_motion(right[:, :, ::-1].copy(), 8.0)["label"] == "pan-"
    assert cd.video_motion(clip([(40, 40 + 2 * t, 64) for t in range(8)]), 8.0)["label"] == "tilt-"
    assert cd.video_motion(clip([(60 - 2 * t, 60 - 2 * t, 40 + 4 * t) for t in range(8)]), 8.0)["label"] == "zoom-"
    still = cd.video_motion(clip([(40, 40, 64)] * 8), 8.0)
    assert still["label"] == "static" and abs(still["pan"]) < 1e-3

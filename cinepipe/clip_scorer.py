"""Using a trained CameraCLIP: the model registry, and a scorer that stays loaded (CLIPLoRA calls it many times).

``register`` logs a trained checkpoint to its MLflow run (artifact ``model/camera_clip.pt``) and registers it as a
new version of ``CameraCLIP`` in the model registry, tagged with the dataset version (its lineage).
``ClipScorer.from_registry`` loads the latest (or a given) version once; ``score`` then takes batches of videos
(uint8 RGB frames [B, T, H, W, 3], any size: they are resized on the model's device) and texts, and returns the
cosine similarities [B, K]. Text embeddings are cached, so the same prompts cost nothing the second time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cinepipe.clip_data import decode_clip
from cinepipe.clip_model import CameraClip, load_checkpoint
from cinepipe.labels import FAMILIES
from cinepipe.model_registry import download_model, latest_model_version, register_model
from cinepipe.tracking import TrackedRun, Tracker

MODEL_NAME = "CameraCLIP"
ARTIFACT_DIR = "model"
CHECKPOINT_FILE = "camera_clip.pt"


def register(run: TrackedRun, checkpoint: Path, dataset_version: str, tags: dict | None = None) -> str:
    """Log the checkpoint to ``run`` and register a new ``CameraCLIP`` version; returns the version number."""
    return register_model(run, checkpoint, MODEL_NAME, ARTIFACT_DIR, dataset_version, tags,
                          "CameraCLIP: a video-text CLIP for shot framing, angle and camera movement")


def latest_version(tracker: Tracker) -> str | None:
    return latest_model_version(tracker, MODEL_NAME)


class ClipScorer:
    """A loaded CameraCLIP for scoring videos against texts, batched, with cached text embeddings."""

    def __init__(self, model: CameraClip, tokenizer, info: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = info or {}
        self.device = next(model.parameters()).device
        self._texts: dict[str, torch.Tensor] = {}
        self._classes: dict[str, torch.Tensor] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> "ClipScorer":
        model, tokenizer, extra = load_checkpoint(path, device)
        return cls(model, tokenizer, {"checkpoint": str(path), **extra})

    @classmethod
    def from_registry(cls, tracker: Tracker, version: str | None = None, device: str | None = None) -> "ClipScorer":
        # the downloaded files are read into memory and deleted: repeated loads must not fill the temp disk
        with tempfile.TemporaryDirectory(prefix="cinepipe-cameraclip-") as tmp:
            try:
                local, version, run_id = download_model(tracker, MODEL_NAME, ARTIFACT_DIR, version, tmp)
            except LookupError as err:
                raise LookupError(f"{err} (materialize camera_clip first)") from None
            scorer = cls.from_checkpoint(local / CHECKPOINT_FILE, device)
        scorer.info.update(version=version, run_id=run_id)
        return scorer

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature: cosine similarities times this are the logits of a softmax over texts."""
        return min(100.0, float(self.model.logit_scale.detach().exp().item()))

    @property
    def frames(self) -> int:
        return self.model.settings.frames

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            emb = self.model.encode_text(self.tokenizer(missing).to(self.device))
            self._texts.update(zip(missing, emb))
        return torch.stack([self._texts[t] for t in texts])

    @torch.no_grad()
    def embed_videos(self, videos) -> torch.Tensor:
        """uint8 RGB frames [B, T, H, W, 3] (numpy or torch; T resampled to the model's frame count)."""
        x = torch.as_tensor(np.asarray(videos)) if not isinstance(videos, torch.Tensor) else videos
        if x.shape[1] != self.frames:
            x = x[:, np.linspace(0, x.shape[1] - 1, self.frames).round().astype(int)]
        size = self.model.image_size
        if x.shape[2] != size or x.shape[3] != size:
            b, t = x.shape[:2]
            flat = x.to(self.device).flatten(0, 1).permute(0, 3, 1, 2).float()
            flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = flat.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).view(b, t, size, size, 3)
        return self.model.encode_video(self.model.normalise_frames(x))

    def score(self, videos, texts: list[str]) -> np.ndarray:
        """Cosine similarity of every video with every text: [B, K]."""
        return (self.embed_videos(videos) @ self.embed_texts(texts).T).float().cpu().numpy()

    def score_files(self, paths: list[str], texts: list[str]) -> np.ndarray:
        size = self.model.image_size
        return self.score(np.stack([decode_clip(str(p), self.frames, size) for p in paths]), texts)

    def classify(self, videos) -> list[dict]:
        """Per video and category: the top value and every value's score (prompt embeddings averaged)."""
        from cinepipe.clip_eval import prompts_for
        from cinepipe.taxonomy import TAXONOMY

        video = self.embed_videos(videos)
        out = [dict() for _ in range(video.shape[0])]
        for family in FAMILIES:
            values = list(TAXONOMY.values(family))
            if family not in self._classes:  # the class embeddings: computed once per scorer
                self._classes[family] = torch.stack([
                    F.normalize(self.embed_texts(prompts_for(family, v)).mean(0), dim=-1) for v in values])
            classes = self._classes[family]
            scores = (video @ classes.T).float().cpu().numpy()
            for i, row in enumerate(scores):
                out[i][family] = {"top": values[int(row.argmax())],
                                  "scores": {v: round(float(s), 4) for v, s in zip(values, row)}}
        return out

"""Faces for the framing labeller: MTCNN, the three-stage cascade of small CNNs of Zhang et al. (2016), "Joint Face
Detection and Alignment using Multi-task Cascaded Convolutional Networks", with the trained P-, R- and O-Net weights
that ship inside facenet-pytorch's wheel (MIT; nothing is downloaded).

The cascade is driven here, not by facenet-pytorch's ``MTCNN.detect``: the same networks, stages, thresholds, box
regressions, box conventions and resampling (area averaging of float tensors; OpenCV's ``INTER_AREA`` is faster but
moves the faces' probabilities by up to 0.1 either way, enough to lose a real face at the 0.9 the framing labeller
asks), so the detections are facenet-pytorch's, but a search can be limited to faces from (``faces_from``) or below
(``faces_below``) a size: only the pyramid levels for those faces are computed. A search for the large faces first
(the cheap levels) and, only on the frames where that finds none, one for the small faces costs no more than one
search for all.

Stages, for a batch of frames of one size:

1. P-Net, a 12 px fully convolutional window (stride 2) over the pyramid (levels ``factor`` apart, from
   12 / ``min_face`` down to the level where the frame's short side is 12 px): candidate boxes above
   ``thresholds[0]``, merged per level (IoU 0.5) and over levels (IoU 0.7), regressed and squared;
2. R-Net on each candidate's 24x24 crop: kept above ``thresholds[1]``, merged (IoU 0.7), regressed, squared;
3. O-Net on 48x48 crops: kept above ``thresholds[2]``, with five landmarks (eyes, nose, mouth corners), regressed,
   and merged by the overlap over the smaller box (0.7).

Device-agnostic: the pictures and networks are on ``device`` (CUDA unchanged); the boxes are kept on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the frame
    prob: float
    landmarks: np.ndarray  # (5, 2) x, y: left eye, right eye, nose, left and right mouth corners

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _normalised(pictures: torch.Tensor) -> torch.Tensor:
    """Pictures (N x 3 x H x W, 0-255) as the networks' input, (x - 127.5) / 128."""
    return (pictures - 127.5) * 0.0078125


def _resampled(pictures: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(pictures, size=(height, width), mode="area")


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (x1, y1, x2, y2, ...) made square about their centres, on the longer side."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regressed(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """The second and third stages' box regression (offsets in box sizes, sizes counted inclusively)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return boxes


def _nms(boxes: np.ndarray, frames: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by non-maximum suppression per frame (score in column 4), best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    t = torch.from_numpy(boxes[:, :4].astype(np.float32))
    keep = batched_nms(t, torch.from_numpy(boxes[:, 4].astype(np.float32)), torch.from_numpy(frames), iou)
    return keep.numpy()


def _nms_min(boxes: np.ndarray, frames: np.ndarray, overlap: float) -> np.ndarray:
    """Non-maximum suppression per frame by the overlap over the smaller box's area (sizes counted inclusively)."""
    keep: list[int] = []
    for f in np.unique(frames):
        idx = np.flatnonzero(frames == f)
        idx = idx[np.argsort(-boxes[idx, 4], kind="stable")]
        area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
        while len(idx):
            i, rest = idx[0], idx[1:]
            keep.append(int(i))
            iw = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
            ih = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
            idx = rest[iw * ih / np.minimum(area[i], area[rest]) <= overlap]
    return np.asarray(keep, np.int64)


def _crops(pictures: torch.Tensor, boxes: np.ndarray, frames: np.ndarray, size: int
           ) -> tuple[torch.Tensor | None, np.ndarray]:
    """Each box's picture, cut from its frame (clipped to the frame, as facenet-pytorch does: no padding) and
    resized to ``size`` x ``size`` (K x 3 x size x size); and the indices of the boxes that overlap their frame."""
    h, w = pictures.shape[2:]
    out, valid = [], []
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    for k, ((x1, y1, x2, y2), f) in enumerate(zip(corners, frames)):
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)  # 1-based, inclusive
        if x2 < x1 or y2 < y1:
            continue
        out.append(_resampled(pictures[f:f + 1, :, y1 - 1:y2, x1 - 1:x2], size, size))
        valid.append(k)
    return (torch.cat(out) if out else None), np.asarray(valid, np.int64)


class FaceDetector:
    """MTCNN over batches of frames; build once and reuse (the networks stay loaded)."""

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 device: str | torch.device = "cpu"):
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet  # the trained weights, inside the wheel

        self.device = torch.device(device)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.pnet, self.rnet, self.onet = (net().eval().to(self.device) for net in (PNet, RNet, ONet))

    def scales(self, height: int, width: int, min_face: float = 12.0, faces_from: float | None = None,
               faces_below: float | None = None) -> list[float]:
        """The pyramid of a search for faces from ``min_face`` px (levels ``factor`` apart from 12 / ``min_face``
        down to the level where the frame's short side is 12 px), and of it only the levels for faces from
        ``faces_from`` px and below ``faces_below`` px, to within 5 % (a level finds faces of 12 / scale px, and up
        to a level's step larger). Two searches split at one size cover the pyramid once between them."""
        scale, short = 12.0 / max(12.0, float(min_face)), min(height, width)
        out = []
        while short * scale >= 12:
            size = 12.0 / scale
            if (faces_from is None or size >= 0.95 * faces_from) and (faces_below is None or size < 0.95 * faces_below):
                out.append(scale)
            scale *= self.factor
        return out

    @torch.no_grad()
    def detect(self, bgrs: Sequence[np.ndarray], min_face: float = 12.0, faces_from: float | None = None,
               faces_below: float | None = None) -> list[list[Face]]:
        """Faces per frame (BGR uint8, all one size), most probable first, found at the pyramid levels of
        :meth:`scales`."""
        if not len(bgrs):
            return []
        if len({f.shape for f in bgrs}) > 1:
            raise ValueError("frames of one size only: " + ", ".join(sorted({str(f.shape) for f in bgrs})))
        rgb = np.ascontiguousarray(np.stack(bgrs)[..., ::-1])
        pictures = torch.from_numpy(rgb).to(self.device).permute(0, 3, 1, 2).float()
        h, w = pictures.shape[2:]
        boxes, frames = self._proposals(pictures, self.scales(h, w, min_face, faces_from, faces_below))
        boxes, frames = self._refined(pictures, boxes, frames)
        boxes, frames, marks = self._output(pictures, boxes, frames)
        out: list[list[Face]] = [[] for _ in bgrs]
        for box, f, mark in zip(boxes, frames, marks):
            out[f].append(Face(tuple(float(v) for v in box[:4]), float(box[4]), mark))
        return [sorted(faces, key=lambda face: -face.prob) for faces in out]

    def _proposals(self, pictures: torch.Tensor, scales: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: P-Net over the pyramid; boxes (x1, y1, x2, y2, score) and their frame indices."""
        h, w = pictures.shape[2:]
        found_boxes, found_frames = [], []
        for scale in scales:
            reg, prob = self.pnet(_normalised(_resampled(pictures, int(h * scale + 1), int(w * scale + 1))))
            hits = (prob[:, 1] >= self.thresholds[0]).nonzero().cpu().numpy()  # (frame, y, x)
            if len(hits) == 0:
                continue
            score = prob[:, 1].cpu().numpy()[hits[:, 0], hits[:, 1], hits[:, 2]]
            offsets = reg.cpu().numpy()[hits[:, 0], :, hits[:, 1], hits[:, 2]]
            xy = hits[:, [2, 1]].astype(np.float64)
            q1 = np.floor((2 * xy + 1) / scale)
            q2 = np.floor((2 * xy + 12) / scale)
            boxes = np.concatenate([q1, q2, score[:, None], offsets], axis=1)
            keep = _nms(boxes, hits[:, 0], 0.5)
            found_boxes.append(boxes[keep])
            found_frames.append(hits[keep, 0])
        if not found_boxes:
            return np.zeros((0, 5)), np.zeros(0, np.int64)
        boxes, frames = np.concatenate(found_boxes), np.concatenate(found_frames)
        keep = _nms(boxes, frames, 0.7)
        boxes, frames = boxes[keep], frames[keep]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([bw, bh, bw, bh], axis=1)
        return _square(np.concatenate([moved, boxes[:, 4:5]], axis=1)), frames

    def _refined(self, pictures: torch.Tensor, boxes: np.ndarray, frames: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: R-Net on 24x24 crops."""
        crops, valid = _crops(pictures, boxes, frames, 24)
        if crops is None:
            return np.zeros((0, 5)), np.zeros(0, np.int64)
        reg, prob = self.rnet(_normalised(crops))
        score, reg = prob[:, 1].cpu().numpy(), reg.cpu().numpy()
        ok = score > self.thresholds[1]
        boxes = np.concatenate([boxes[valid][ok, :4], score[ok, None]], axis=1)
        frames, reg = frames[valid][ok], reg[ok]
        keep = _nms(boxes, frames, 0.7)
        return _square(_regressed(boxes[keep], reg[keep])), frames[keep]

    def _output(self, pictures: torch.Tensor, boxes: np.ndarray, frames: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48x48 crops; final boxes, frames and landmarks."""
        crops, valid = _crops(pictures, boxes, frames, 48)
        if crops is None:
            return np.zeros((0, 5)), np.zeros(0, np.int64), np.zeros((0, 5, 2))
        reg, points, prob = self.onet(_normalised(crops))
        score, reg, points = prob[:, 1].cpu().numpy(), reg.cpu().numpy(), points.cpu().numpy()
        ok = score > self.thresholds[2]
        boxes = np.concatenate([boxes[valid][ok, :4], score[ok, None]], axis=1)
        frames, reg, points = frames[valid][ok], reg[ok], points[ok]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        marks = np.stack([bw[:, None] * points[:, :5] + boxes[:, 0:1] - 1,
                          bh[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = _regressed(boxes, reg)
        keep = _nms_min(boxes, frames, 0.7)
        return boxes[keep], frames[keep], marks[keep]

"""CameraCLIP evaluation: retrieval with label-equal hits, zero-shot classification, and the direction test.

Definitions (the numbers MLflow shows follow them):

- **Retrieval with shared captions.** Captions come from templates, so many test clips describe the same thing.
  A retrieved item counts as a hit when its labels (framing, angle, movement) equal the query's.
  text->video: each test clip's caption is a query over all test clips; R@k = share of queries with a hit among
  the top k clips; the rank is that of the first hit (median rank reported). video->text: each test clip is a
  query over the captions of all test clips, the same way.
- **Zero-shot classification** per category: a clip takes the value whose prompts (every caption template with
  only that value filled in, embeddings averaged) score highest; accuracy per category, and per pattern (the
  share of clips of that pattern classified as it).
- **Direction test**: for every test clip whose movement has an opposite (pan_left/pan_right, tilt_up/tilt_down,
  zoom_in/zoom_out, dolly_in/dolly_out, truck_left/truck_right), its true caption must score higher than the same
  caption with the opposite movement; the accuracy over those clips.
"""

from __future__ import annotations

import numpy as np
import torch

from cinepipe.captions import TEMPLATES, caption, caption_from_template
from cinepipe.labels import FAMILIES
from cinepipe.taxonomy import TAXONOMY


def _ranks_of_first_hit(similarity: np.ndarray, same: np.ndarray) -> np.ndarray:
    """1-based rank of the first hit per query row (similarity [Q, N], same [Q, N] bool); inf if none."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(same, order, axis=1)
    first = np.where(hits.any(1), hits.argmax(1) + 1, np.inf)
    return first.astype(float)


def retrieval_metrics(video: np.ndarray, text: np.ndarray, keys: list[tuple], prefix: str = "") -> dict:
    """text->video and video->text R@1/5/10 and median rank; ``video`` and ``text`` are unit embeddings [N, D]
    of the same N test clips (text = each clip's caption), ``keys`` their label triples."""
    same = np.array([[a == b for b in keys] for a in keys])
    sim = text @ video.T  # [queries (captions), clips]
    out = {}
    for name, s in (("t2v", sim), ("v2t", sim.T)):
        ranks = _ranks_of_first_hit(s, same)
        for k in (1, 5, 10):
            out[f"{prefix}{name}_r{k}"] = float(np.mean(ranks <= k))
        out[f"{prefix}{name}_median_rank"] = float(np.median(ranks))
    return out


def prompts_for(family: str, value: str) -> list[str]:
    """Every template with only ``family`` set to ``value`` (the others left out)."""
    labels = {f: None for f in FAMILIES}
    labels[family] = value
    return sorted({caption_from_template(k, labels["framing"], labels["angle"], labels["movement"])
                   for k in range(len(TEMPLATES))})


@torch.no_grad()
def class_embeddings(encode_text, family: str) -> tuple[list[str], np.ndarray]:
    """(values, [V, D] unit embeddings): the mean prompt embedding of each value of a category."""
    values = list(TAXONOMY.values(family))
    rows = []
    for value in values:
        emb = encode_text(prompts_for(family, value))
        mean = emb.mean(0)
        rows.append(mean / np.linalg.norm(mean).clip(min=1e-8))
    return values, np.stack(rows)


def zero_shot(video: np.ndarray, truth: dict[str, list], encode_text, prefix: str = "") -> tuple[dict, dict]:
    """Zero-shot accuracy per category and per pattern; returns (metrics, predictions per family)."""
    metrics, predictions = {}, {}
    for family in FAMILIES:
        values, classes = class_embeddings(encode_text, family)
        predicted = [values[i] for i in (video @ classes.T).argmax(1)]
        predictions[family] = predicted
        labelled = [(t, p) for t, p in zip(truth[family], predicted) if t is not None]
        if labelled:
            metrics[f"{prefix}zeroshot_{family}_acc"] = float(np.mean([t == p for t, p in labelled]))
        for value in values:
            of_value = [p for t, p in labelled if t == value]
            if of_value:
                metrics[f"{prefix}zeroshot_acc_{value}"] = float(np.mean([p == value for p in of_value]))
    return metrics, predictions


def direction_test(video: np.ndarray, rows: list[dict], encode_text, prefix: str = "") -> dict:
    """Share of movement clips whose true caption beats the caption with the opposite movement."""
    wins, total = 0, 0
    for i, row in enumerate(rows):
        opposite = TAXONOMY.opposite(row["movement"]) if row["movement"] else None
        if not opposite:
            continue
        true_text = caption(row["shot_id"], row["framing"], row["angle"], row["movement"])
        flipped = caption(row["shot_id"], row["framing"], row["angle"], opposite)
        emb = encode_text([true_text, flipped])
        wins += float(video[i] @ emb[0]) > float(video[i] @ emb[1])
        total += 1
    return {f"{prefix}direction_acc": wins / total if total else float("nan"), f"{prefix}direction_clips": total}

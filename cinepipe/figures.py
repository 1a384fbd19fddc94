"""Figures logged to MLflow: confusion matrices (matplotlib, headless)."""

from __future__ import annotations

import pandas as pd


def confusion_figure(matrix: pd.DataFrame, title: str):
    """A confusion matrix (rows: truth, columns: predicted, counts) as a matplotlib figure, with counts written
    in the cells and row-normalised shading."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    values = matrix.to_numpy(dtype=float)
    shares = values / values.sum(axis=1, keepdims=True).clip(min=1)
    size = max(4.0, 0.55 * max(matrix.shape) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if values[i, j]:
                ax.text(j, i, f"{int(values[i, j])}", ha="center", va="center",
                        color="white" if shares[i, j] > 0.6 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig

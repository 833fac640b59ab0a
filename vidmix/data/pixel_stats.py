"""A dataset's per-channel pixel mean and std, summed exactly over its videos' frames (numpy
only: the learning benchmark uses it on an accelerator image without the data stack)."""

from __future__ import annotations

import numpy as np


def pixel_sums(frames) -> np.ndarray:
    """(3, 3) float64: per RGB channel the pixel count, the sum and the sum of squares of the
    frames' values (0-255), exact per frame; summed over videos they give the dataset's mean and
    std (`pixel_stats`). `frames`: RGB images or (H, W, 3) uint8 arrays, taken one at a time."""
    sums = np.zeros((3, 3))
    for frame in frames:
        x = np.asarray(frame, np.uint8).reshape(-1, 3).astype(np.int64)
        sums += [np.full(3, len(x)), x.sum(0), (x * x).sum(0)]
    return sums


def pixel_stats(sums: np.ndarray) -> dict:
    """{"mean": [r, g, b], "std": [r, g, b]} of pixel values in [0, 1], from summed
    `pixel_sums`."""
    n, total, squares = sums
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0)) / 255.0
    mean = mean / 255.0
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}

"""Batch-level label mixing: label smoothing, mixup (Zhang et al. 2018), cutmix (Yun et al. 2019).

Runs on the host, in the loader's batch transform (its numpy RNG is grain's per-batch seed).
Each example is mixed with the batch reversed, as in timm; cutmix cuts the same box out of every
frame of the clip.
"""

from __future__ import annotations

import numpy as np


def smooth_one_hot(labels, num_classes, smoothing=0.0):
    on = np.eye(num_classes, dtype=np.float32)[labels]
    return on * (1 - smoothing) + smoothing / num_classes


def mix_batch(video, labels, num_classes, rng: np.random.Generator, *, mixup_alpha=0.0,
              cutmix_alpha=0.0, switch_prob=0.5, smoothing=0.0):
    """Returns (video, targets (B, num_classes) float32). With both alphas on, each batch uses
    cutmix with probability `switch_prob`; lambda is the kept fraction of the original clip."""
    targets = smooth_one_hot(labels, num_classes, smoothing)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    if not use_cutmix and mixup_alpha <= 0:
        return video, targets
    lam = float(rng.beta(*(2 * [cutmix_alpha if use_cutmix else mixup_alpha])))
    flipped = video[::-1]
    if use_cutmix:
        h, w = video.shape[2:4]
        ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
        x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
        video = video.copy()
        video[:, :, y0:y1, x0:x1] = flipped[:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        video = (lam * video + (1 - lam) * flipped).astype(video.dtype)
    return video, (lam * targets + (1 - lam) * targets[::-1]).astype(np.float32)

"""Batch-level mixing draws: mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019).

A mixed clip is no longer uint8 pixels, so the loader only draws (here, in its batch transform,
from grain's per-batch seed: deterministic and resumable) and the jitted train step mixes the
normalised clips and their targets (`vidmix.training.inputs.mix`). As in timm, each example is
mixed with the batch reversed, one lambda per batch; cutmix cuts the same box out of every frame
of the clip.
"""

from __future__ import annotations

import numpy as np


def draw_mix(batch_size: int, h: int, w: int, rng: np.random.Generator, *, mixup_alpha=0.0,
             cutmix_alpha=0.0, switch_prob=0.5) -> dict[str, np.ndarray]:
    """One batch's draws: {"mix_lam": (B,) float32, "mix_box": (B, 4) int32 (y0, y1, x0, x1)}.

    Clip i becomes mix_lam·x_i + (1 - mix_lam)·x_j outside mix_box and x_j inside it, j the
    example at the mirrored place. Mixup: lambda ~ Beta(mixup_alpha, mixup_alpha) and an empty box;
    cutmix: mix_lam 1 and a box of about (1 - lambda) of the frame, lambda ~ Beta(cutmix_alpha,
    cutmix_alpha), clipped to the frame. With both alphas on, a batch uses cutmix with probability
    `switch_prob`."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("draw_mix needs mixup_alpha > 0 or cutmix_alpha > 0")
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    lam = float(rng.beta(*(2 * [cutmix_alpha if use_cutmix else mixup_alpha])))
    box = np.zeros(4, np.int32)
    if use_cutmix:
        ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        box[:2] = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
        box[2:] = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
        lam = 1.0
    return {"mix_lam": np.full(batch_size, lam, np.float32),
            "mix_box": np.tile(box, (batch_size, 1))}

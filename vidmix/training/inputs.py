"""A training batch as the train step feeds it to the model, inside the jitted step.

The loader yields uint8 clips and, where asked, its augmentation draws (`vidmix.data.pipeline`):
`erase_box` / `erase_seed` per clip (random erasing) and `mix_lam` / `mix_box` (mixup, cutmix).
Both act on normalised clips, so here the clips are normalised with the model's pixel statistics,
erased, then mixed (timm's order: erasing per sample, mixing per batch), all inside the compiled
step. The draws come from the host, so a step is a function of its batch alone (bitwise
resumable).

Boxes are (y0, y1, x0, x1) int32 in pixels, the same in every frame of a clip; an empty box
(y1 <= y0 or x1 <= x0) covers nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def box_mask(boxes: jax.Array, h: int, w: int) -> jax.Array:
    """(B, 4) boxes -> (B, 1, H, W, 1) bool: the pixels inside each clip's box."""
    y, x = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    y0, y1, x0, x1 = (boxes[:, i, None, None] for i in range(4))
    return ((y >= y0) & (y < y1) & (x >= x0) & (x < x1))[:, None, :, :, None]


def erase(video: jax.Array, boxes: jax.Array, seeds: jax.Array) -> jax.Array:
    """Random erasing in timm's per-pixel mode: each clip's box filled with N(0, 1) noise from its
    seed (the same noise in every frame). video: normalised (B, T, H, W, C) float; boxes (B, 4);
    seeds (B,) int32. Returns the erased video."""
    _, _, h, w, c = video.shape
    noise = jax.vmap(lambda s: jax.random.normal(jax.random.key(s), (h, w, c), video.dtype))(seeds)
    return jnp.where(box_mask(boxes, h, w), noise[:, None], video)


def mix(video: jax.Array, targets: jax.Array, lam: jax.Array,
        boxes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mixup / cutmix with the batch reversed (`vidmix.data.mix.draw_mix`): clip i becomes
    lam_i·x_i + (1 - lam_i)·x_j outside its box and x_j inside it, j = B - 1 - i; its targets
    keep weight lam_i·(1 - box area / (H·W)) (the share of clip i left), the rest goes to j's.
    video: normalised (B, T, H, W, C) float; targets (B, classes); lam (B,); boxes (B, 4).
    Returns (video, targets)."""
    _, _, h, w, _ = video.shape
    weight = lam.astype(video.dtype)[:, None, None, None, None]
    blend = weight * video + (1 - weight) * video[::-1]
    video = jnp.where(box_mask(boxes, h, w), video[::-1], blend)
    area = (jnp.maximum(boxes[:, 1] - boxes[:, 0], 0) * jnp.maximum(boxes[:, 3] - boxes[:, 2], 0))
    keep = (lam * (1 - area / (h * w)))[:, None]
    return video, keep * targets + (1 - keep) * targets[::-1]


def train_inputs(batch: dict, cfg, num_classes: int,
                 label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """(video, targets) of a loader batch: the model's input and the soft targets (B, classes),
    float32. cfg: the model's config (pixel statistics, `ModelConfig.normalise`). Without draws
    the video is passed on as it is (the model normalises uint8 itself); with them it is
    normalised to float32, erased, then mixed."""
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes), label_smoothing)
    video = batch["video"]
    if "erase_box" in batch or "mix_lam" in batch:
        video = cfg.normalise(video, jnp.float32)
    if "erase_box" in batch:
        video = erase(video, batch["erase_box"], batch["erase_seed"])
    if "mix_lam" in batch:
        video, targets = mix(video, targets, batch["mix_lam"], batch["mix_box"])
    return video, targets

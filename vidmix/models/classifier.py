"""A video classifier: the video ViT backbone and a head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.backbone import VideoViT
from vidmix.models.config import VideoViTConfig
from vidmix.models.heads import HEADS


class VideoClassifier(nnx.Module):
    """`model(video, train=False)`: normalised video (B, T, H, W, 3) -> fp32 logits (B, classes)."""

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.backbone = VideoViT(cfg, rngs=rngs)
        self.head = HEADS[cfg.head](cfg, rngs=rngs)

    def features(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """The normalised CLS features the head sees: (B, T', D) or (B, 1, D)."""
        return self.backbone(video, train=train, pool=self.head.pool_frames)

    def __call__(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        logits = self.head(self.features(video, train=train), train=train)
        return logits.astype(jnp.float32)

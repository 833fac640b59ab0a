"""A video classifier: the video ViT backbone and a head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.backbone import VideoViT
from vidmix.models.config import VideoViTConfig
from vidmix.models.heads import HEADS


class VideoClassifier(nnx.Module):
    """`model(video, train=False)`: video (B, T, H, W, 3), uint8 pixels (normalised inside with
    the config's pixel_mean / pixel_std) or already normalised floats -> fp32 logits (B, classes).
    """

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.backbone = VideoViT(cfg, rngs=rngs)
        self.head = HEADS[cfg.head](cfg, rngs=rngs)

    def features(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """The features the head sees, after the backbone's final LayerNorm: (B, F, D).

        T' = num_frames / tubelet_size token frames, D = width.
        - `mixing` and `space` with the `temporal_attention`, `avg` or `summary` head: one CLS per
          frame, (B, T', D).
        - `mixing` or `space` with the `linear` head: (B, 1, D), the frames' CLS tokens averaged
          before the final norm (TimeSformer's space-only read-out).
        - `joint` and `divided` (any head): the clip's one CLS, (B, 1, D).
        `model.head(model.features(video))` is `model(video)` (in the compute dtype; the model
        returns fp32 logits). All output tokens (before the final norm): `backbone.tokens(video)`,
        (B, T', 1 + N, D) per frame or (B, 1 + T'·N, D) per clip, N = patches per frame.
        """
        return self.backbone(video, train=train, pool=self.head.pool_frames)

    def __call__(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        logits = self.head(self.features(video, train=train), train=train)
        return logits.astype(jnp.float32)

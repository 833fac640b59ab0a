"""Classifier heads. Each takes the backbone's normalised CLS features (B, F, D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.backbone import plain_block
from vidmix.models.config import VideoViTConfig
from vidmix.models.layers import dense_init

# Classifiers start at zero (as in big_vision): the first logits are uniform whatever the features.
zeros = nnx.initializers.zeros


def _classifier(cfg: VideoViTConfig, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cfg.width, cfg.num_classes, kernel_init=zeros, dtype=jnp.dtype(cfg.dtype),
                      rngs=rngs)


class LinearHead(nnx.Module):
    """TimeSformer: one Linear on the clip's CLS (frames' CLS averaged before the final norm)."""

    pool_frames = True

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(cfg.head_dropout_rate, rngs=rngs)
        self.classifier = _classifier(cfg, rngs)

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        return self.classifier(self.dropout(feats[:, 0], deterministic=not train))


class AvgHead(nnx.Module):
    """Average consensus (TSN): a Linear classifier on every frame, logits averaged over frames.

    Also the classifier of the paper's summary-token XViT (head='summary'), whose cross-frame
    exchange happens inside the backbone's attention.
    """

    pool_frames = False

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(cfg.head_dropout_rate, rngs=rngs)
        self.classifier = _classifier(cfg, rngs)

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        return self.classifier(self.dropout(feats, deterministic=not train)).mean(axis=1)


class TemporalAttentionHead(nnx.Module):
    """XViT's clip head: one transformer block over [token; frame features], no positions.

    qkv without bias and LayerNorm eps 1e-5 as in the release; then token 0 -> LayerNorm ->
    Dense(D) -> GELU -> Dropout -> Dense(classes). Dropout also on the input features.
    """

    pool_frames = False

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        d, dtype = cfg.width, jnp.dtype(cfg.dtype)
        self.token = nnx.Param(jnp.zeros((d,)))
        self.block = plain_block(d, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=False,
                                 attention_impl=cfg.attention_impl,
                                 eps=1e-5, dtype=dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.pre_logits = nnx.Linear(d, d, kernel_init=dense_init, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.head_dropout_rate, rngs=rngs)
        self.classifier = _classifier(cfg, rngs)

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        b, _, d = feats.shape
        feats = self.dropout(feats, deterministic=not train)
        token = jnp.broadcast_to(self.token[...].astype(feats.dtype), (b, 1, d))
        x = self.block(jnp.concatenate([token, feats], axis=1), train=train)[:, 0]
        x = jax.nn.gelu(self.pre_logits(self.norm(x)), approximate=False)
        return self.classifier(self.dropout(x, deterministic=not train))


HEADS = {
    "linear": LinearHead,
    "avg": AvgHead,
    "summary": AvgHead,
    "temporal_attention": TemporalAttentionHead,
}

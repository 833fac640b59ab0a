"""Classifier heads. The video ViT's heads take the backbone's normalised CLS features (B, F, D);
their tails (`ClassifierHead`, `MlpHead`) are also VTN's and PST's heads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.backbone import plain_block
from vidmix.models.config import VideoViTConfig
from vidmix.models.layers import dense_init

# Classifiers start at zero (as in big_vision): the first logits are uniform whatever the features.
zeros = nnx.initializers.zeros


class ClassifierHead(nnx.Module):
    """Dropout, then a zero-initialised Linear classifier: (..., D) -> (..., classes).

    The tail of the linear and average heads here and of PST's pooled head."""

    def __init__(self, dim: int, num_classes: int, *, dropout_rate: float, dtype,
                 rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.classifier = nnx.Linear(dim, num_classes, kernel_init=zeros, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.classifier(self.dropout(x, deterministic=not train))


class MlpHead(nnx.Module):
    """LayerNorm -> Dense(hidden) -> GELU -> Dropout -> zero-initialised Dense(classes).

    The tail of XViT's temporal-attention head and VTN's head (parameters `norm`, `pre_logits`,
    `classifier`). Subclasses that create parameters of their own before these call
    `init_mlp` after them, so the random draws keep their order.
    """

    def __init__(self, dim: int, hidden: int, num_classes: int, *, eps: float,
                 dropout_rate: float, dtype, rngs: nnx.Rngs):
        self.init_mlp(dim, hidden, num_classes, eps=eps, dropout_rate=dropout_rate, dtype=dtype,
                      rngs=rngs)

    def init_mlp(self, dim: int, hidden: int, num_classes: int, *, eps: float,
                 dropout_rate: float, dtype, rngs: nnx.Rngs) -> None:
        self.norm = nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, rngs=rngs)
        self.pre_logits = nnx.Linear(dim, hidden, kernel_init=dense_init, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.classifier = nnx.Linear(hidden, num_classes, kernel_init=zeros, dtype=dtype,
                                     rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = jax.nn.gelu(self.pre_logits(self.norm(x)), approximate=False)
        return self.classifier(self.dropout(x, deterministic=not train))


class _ViTClassifierHead(ClassifierHead):
    """A `ClassifierHead` of a video ViT config: width in, num_classes out, head dropout."""

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg.width, cfg.num_classes, dropout_rate=cfg.head_dropout_rate,
                         dtype=jnp.dtype(cfg.dtype), rngs=rngs)


class LinearHead(_ViTClassifierHead):
    """TimeSformer: one Linear on the clip's CLS (frames' CLS averaged before the final norm)."""

    pool_frames = True

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        return super().__call__(feats[:, 0], train=train)


class AvgHead(_ViTClassifierHead):
    """Average consensus (TSN): a Linear classifier on every frame, logits averaged over frames.

    Also the classifier of the paper's summary-token XViT (head='summary'), whose cross-frame
    exchange happens inside the backbone's attention.
    """

    pool_frames = False

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        return super().__call__(feats, train=train).mean(axis=1)


class TemporalAttentionHead(MlpHead):
    """XViT's clip head: one transformer block over [token; frame features].

    qkv without bias and LayerNorm eps 1e-5 as in the release; then token 0 -> LayerNorm ->
    Dense(D) -> GELU -> Dropout -> Dense(classes) (`MlpHead`). Dropout also on the input features.

    With `cfg.head_positions` a learned position per frame, N(0, 0.02) in a fresh model, is
    added to the frame features, making the head itself see their order. The release's head
    (the default) has none: it is a function of the *set* of frame features, and relies on the
    backbone's mixing for order, which it learns from scratch (docs/learning.md). A release
    checkpoint loaded into a model with positions gets zero positions, its exact function.
    """

    pool_frames = False

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        d, dtype = cfg.width, jnp.dtype(cfg.dtype)
        self.token = nnx.Param(jnp.zeros((d,)))
        self.block = plain_block(d, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=False,
                                 attention_impl=cfg.attention_impl,
                                 eps=1e-5, dtype=dtype, rngs=rngs)
        self.init_mlp(d, d, cfg.num_classes, eps=1e-5, dropout_rate=cfg.head_dropout_rate,
                      dtype=dtype, rngs=rngs)
        self.positions = (nnx.Param(0.02 * jax.random.normal(rngs.params(),
                                                             (cfg.token_frames, d)))
                          if cfg.head_positions else nnx.data(None))

    def __call__(self, feats: jax.Array, *, train: bool = False) -> jax.Array:
        b, _, d = feats.shape
        if self.positions is not None:
            feats = feats + self.positions[...].astype(feats.dtype)
        feats = self.dropout(feats, deterministic=not train)
        token = jnp.broadcast_to(self.token[...].astype(feats.dtype), (b, 1, d))
        x = self.block(jnp.concatenate([token, feats], axis=1), train=train)[:, 0]
        return super().__call__(x, train=train)


HEADS = {
    "linear": LinearHead,
    "avg": AvgHead,
    "summary": AvgHead,
    "temporal_attention": TemporalAttentionHead,
}

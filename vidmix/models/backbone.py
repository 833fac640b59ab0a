"""The one video ViT backbone: patch embedding, position and temporal embeddings, and a stack of
pre-LN blocks whose attention scheme is pluggable (`schemes.py`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.config import VideoViTConfig
from vidmix.models.layers import Attention, DropPath, Mlp
from vidmix.models.schemes import JointAttention, Scheme, make_scheme
from vidmix.models.stack import LayerStack


class Block(nnx.Module):
    """Pre-LN transformer block: x += Attn(LN(x)); x += MLP(LN(x)), attention per `scheme`.

    Divided space-time blocks also own a temporal branch: `temporal_norm`, `temporal_attn` and
    `temporal_fc` (zero-initialised, so a fresh block starts as its spatial part).
    """

    def __init__(self, dim: int, num_heads: int, *, scheme: Scheme, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, eps: float = 1e-6, drop_path: float = 0.0,
                 dropout_rate: float = 0.0, stochastic_depth: bool | None = None,
                 attention_impl: str = "auto", dtype=jnp.float32, rngs: nnx.Rngs):
        self.scheme = scheme
        norm = dict(epsilon=eps, dtype=dtype, rngs=rngs)
        attn = dict(qkv_bias=qkv_bias, dropout_rate=dropout_rate, dtype=dtype,
                    implementation=attention_impl, rngs=rngs)
        self.norm1 = nnx.LayerNorm(dim, **norm)
        self.attn = Attention(dim, num_heads, **attn)
        if scheme.temporal_branch:
            self.temporal_norm = nnx.LayerNorm(dim, **norm)
            self.temporal_attn = Attention(dim, num_heads, **attn)
            self.temporal_fc = nnx.Linear(dim, dim, dtype=dtype, kernel_init=nnx.initializers.zeros,
                                          rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, **norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout_rate=dropout_rate, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs, enabled=stochastic_depth)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.scheme.mix(self, x, train)
        return x + self.drop_path(self.mlp(self.norm2(x), train=train), train=train)


def plain_block(dim: int, num_heads: int, **kwargs) -> Block:
    """A standard transformer block (full attention over the sequence axis)."""
    return Block(dim, num_heads, scheme=JointAttention(), **kwargs)


class VideoViT(nnx.Module):
    """Video (B, T, H, W, 3) -> CLS features (B, F, D): F = T per-frame, or 1 per clip."""

    def __init__(self, cfg: VideoViTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, dtype = cfg.width, jnp.dtype(cfg.dtype)
        self.scheme = make_scheme(cfg)
        p, t = cfg.patch_size, cfg.tubelet_size
        kernel = (p, p) if t == 1 else (t, p, p)
        self.patch_embed = nnx.Conv(3, d, kernel_size=kernel, strides=kernel, padding="VALID",
                                    dtype=dtype, rngs=rngs)
        self.cls_token = nnx.Param(jnp.zeros((d,)))
        pos = cfg.pos_embed_std * jax.random.normal(rngs.params(), (cfg.num_patches + 1, d))
        self.pos_embed = nnx.Param(pos)
        self.temporal_embed = nnx.data(None)
        if cfg.embed_slots:  # zeros (the releases'), or drawn when training from scratch
            shape = (cfg.embed_slots, d)
            self.temporal_embed = nnx.Param(
                nnx.initializers.truncated_normal(cfg.temporal_embed_std)(rngs.params(), shape)
                if cfg.temporal_embed_std else jnp.zeros(shape))
        rates = np.linspace(0.0, cfg.drop_path_rate, cfg.depth)
        # one scanned stack (stack.py); stochastic depth on in every layer or in none, so the
        # layers share one structure (the first layer's rate is 0)
        self.blocks = LayerStack([
            Block(d, cfg.num_heads, scheme=self.scheme, mlp_ratio=cfg.mlp_ratio,
                  qkv_bias=cfg.qkv_bias, eps=cfg.layer_norm_eps, drop_path=float(rates[i]),
                  dropout_rate=cfg.dropout_rate, stochastic_depth=cfg.drop_path_rate > 0,
                  attention_impl=cfg.attention_impl, dtype=dtype, rngs=rngs)
            for i in range(cfg.depth)
        ], remat=cfg.remat, unroll=cfg.scan_unroll)
        self.norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)

    def embed(self, video: jax.Array) -> jax.Array:
        """Patch tokens plus position and temporal embeddings, in the scheme's layout."""
        cfg = self.cfg
        b, d = video.shape[0], cfg.width
        dtype = jnp.dtype(cfg.dtype)
        if cfg.tubelet_size == 1:
            frames = video.reshape(-1, *video.shape[2:])
            patches = self.patch_embed(frames)  # (B·T, h, w, D)
        else:
            patches = self.patch_embed(video)  # (B, T', h, w, D)
        t = cfg.token_frames
        patches = patches.reshape(b, t, cfg.num_patches, d)
        pos = self.pos_embed[...].astype(dtype)
        patches = patches + pos[1:]
        cls = (self.cls_token[...] + self.pos_embed[0]).astype(dtype)
        temporal = (self.temporal_embed[...][np.arange(t) % cfg.embed_slots].astype(dtype)
                    if self.temporal_embed is not None else jnp.zeros((t, d), dtype))
        if self.scheme.clip_cls:  # the clip's CLS belongs to no frame: no temporal embedding
            patches = patches + temporal[:, None]
            cls = jnp.broadcast_to(cls, (b, 1, d))
            return jnp.concatenate([cls, patches.reshape(b, t * cfg.num_patches, d)], axis=1)
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, t, 1, d)), patches], axis=2)
        return x + temporal[:, None]

    def tokens(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """All output tokens of the last block (before the final norm), in the scheme's layout."""
        self.cfg.check_clip(video)
        x = self.embed(self.cfg.normalise(video))
        return self.blocks(x, train=train)

    def __call__(self, video: jax.Array, *, train: bool = False, pool: bool = False) -> jax.Array:
        """Normalised CLS features (B, F, D); `pool=True` averages the frames' CLS tokens before
        the final norm, as TimeSformer's space-only model averages its frames."""
        x = self.tokens(video, train=train)
        cls = x[:, :1] if self.scheme.clip_cls else x[:, :, 0]
        if pool:
            cls = cls.mean(axis=1, keepdims=True)
        return self.norm(cls)

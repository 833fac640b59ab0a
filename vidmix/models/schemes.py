"""Attention schemes: how a block lets tokens talk across space and time.

A scheme is a small, stateless object; the parameters live in the `Block` (`backbone.py`). Token
layouts:
- per-frame CLS (`space`, `mixing`): x is (B, T, 1 + N, D), the CLS first in every frame;
- per-clip CLS (`joint`, `divided`): x is (B, 1 + T·N, D), [CLS, frame 0 patches, frame 1 ...].
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from vidmix.models.config import VideoViTConfig
from vidmix.models.temporal_shift import temporal_shift


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Plain attention over the last two axes of x, with an optional key/value hook."""

    clip_cls = False  # one CLS per clip (True) or one per frame (False)
    temporal_branch = False  # does the block own a separate temporal attention?

    def kv_hook(self):
        return None

    def mix(self, block, x: jax.Array, train: bool) -> jax.Array:
        update = block.attn(block.norm1(x), train=train, kv_hook=self.kv_hook())
        return x + block.drop_path(update, train=train)


@dataclasses.dataclass(frozen=True)
class SpaceAttention(Scheme):
    """TimeSformer `space_only`: every frame attends within itself (an image ViT per frame)."""


@dataclasses.dataclass(frozen=True)
class JointAttention(Scheme):
    """TimeSformer `joint_space_time`: all 1 + T·N tokens attend to each other (cost ∝ T²)."""

    clip_cls = True


@dataclasses.dataclass(frozen=True)
class MixingAttention(Scheme):
    """XViT space-time mixing: attention within each frame, keys and values shifted in time.

    With `summary=True`, the paper's summary-token variant: the spatial mean of each frame's
    (unshifted) keys and values is appended to the keys and values of every frame of the clip.
    """

    fold: int = 0
    group: int | None = None
    mode: str = "zero"
    summary: bool = False

    def kv_hook(self):
        return functools.partial(_mix_kv, fold=self.fold, group=self.group, mode=self.mode,
                                 summary=self.summary)


def _mix_kv(k, v, *, fold, group, mode, summary):
    """k, v: (B, T, L, D) -> shifted (and optionally summary-extended) keys and values."""
    out = []
    for a in (k, v):
        shifted = temporal_shift(a, fold, group=group, mode=mode) if fold else a
        if summary:
            b, t, _, d = a.shape
            means = jnp.broadcast_to(a.mean(axis=2)[:, None], (b, t, t, d))  # every frame's mean
            shifted = jnp.concatenate([shifted, means], axis=2)
        out.append(shifted)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class DividedAttention(Scheme):
    """TimeSformer divided space-time attention: temporal attention, then spatial attention.

    1. For each patch position, attention over its T tokens (own LayerNorm and attention, the CLS
       excluded), through `temporal_fc`, added residually.
    2. For each frame, [CLS; patches] through the block's spatial attention; the CLS gets the mean
       of its T per-frame updates.
    Stochastic depth drops the whole temporal branch (the release drops the attention output and
    still adds `temporal_fc`'s bias); at evaluation the two are the same.
    """

    clip_cls = True
    temporal_branch = True
    num_frames: int = 8

    def mix(self, block, x, train):
        b, s, d = x.shape
        t = self.num_frames
        n = (s - 1) // t
        cls, patches = x[:, :1], x[:, 1:].reshape(b, t, n, d)
        # Temporal: (B, N, T, D), attention along T.
        xt = patches.transpose(0, 2, 1, 3)
        u = block.temporal_fc(block.temporal_attn(block.temporal_norm(xt), train=train))
        patches = patches + block.drop_path(u.transpose(0, 2, 1, 3), train=train)
        # Spatial: the clip's CLS joins every frame, (B, T, 1 + N, D).
        xs = jnp.concatenate([jnp.broadcast_to(cls[:, None], (b, t, 1, d)), patches], axis=2)
        upd = block.drop_path(block.attn(block.norm1(xs), train=train), train=train)
        cls = cls + upd[:, :, 0].mean(axis=1, keepdims=True)
        patches = patches + upd[:, :, 1:]
        return jnp.concatenate([cls, patches.reshape(b, t * n, d)], axis=1)


def _mixing(cfg: VideoViTConfig) -> Scheme:
    return MixingAttention(fold=cfg.shift_fold, group=cfg.shift_group, mode=cfg.shift_mode,
                           summary=cfg.head == "summary")


def _space(cfg: VideoViTConfig) -> Scheme:
    if cfg.head == "summary":  # summary tokens give per-frame attention a cross-frame exchange
        return MixingAttention(fold=0, summary=True)
    return SpaceAttention()


SCHEMES = {
    "mixing": _mixing,
    "space": _space,
    "joint": lambda cfg: JointAttention(),
    "divided": lambda cfg: DividedAttention(num_frames=cfg.token_frames),
}


def make_scheme(cfg: VideoViTConfig) -> Scheme:
    """The attention `Scheme` that `cfg.attention` names (see `SCHEMES`)."""
    return SCHEMES[cfg.attention](cfg)

"""XViT's space-time mixing: a temporal shift of flat channel slices (a memory move, no FLOPs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _shift_time(x: jax.Array, offset: int, mode: str) -> jax.Array:
    """out[:, :, t] = x[:, :, t + offset] on axis 2; outside the group: zeros or wrap-around."""
    if mode == "roll":
        return jnp.roll(x, -offset, axis=2)
    pad = jnp.zeros_like(x[:, :, :1])
    if offset > 0:
        return jnp.concatenate([x[:, :, 1:], pad], axis=2)
    return jnp.concatenate([pad, x[:, :, :-1]], axis=2)


def temporal_shift(x: jax.Array, fold: int, *, group: int | None = None, mode: str = "zero"):
    """Mix channels across neighbouring frames, as XViT does to its keys and values.

    x: (B, T, ..., C). Channels [0, fold) of frame t take the values of frame t+1, channels
    [fold, 2*fold) those of frame t-1, the others stay. Frames are split into consecutive groups of
    `group` frames (default: one group) and nothing crosses a group boundary; at a group's edges the
    missing neighbour is zeros (`mode="zero"`, the paper and release) or the frame at the other end
    of the group (`mode="roll"`).
    """
    b, t = x.shape[:2]
    group = group or t
    if t % group:
        raise ValueError(f"{t} frames cannot be split into shift groups of {group}")
    g = x.reshape(b, t // group, group, *x.shape[2:])
    future = _shift_time(g[..., :fold], +1, mode)
    past = _shift_time(g[..., fold:2 * fold], -1, mode)
    g = jnp.concatenate([future, past, g[..., 2 * fold:]], axis=-1)
    return g.reshape(x.shape)

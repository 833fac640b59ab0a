"""Temporal mixing for PST (Xiang et al., ECCV 2022): patch shift and channel shift.

Both are pure memory moves (gathers along time), no arithmetic, so a block that uses them costs
exactly as much as a 2-D Swin block. Tokens arrive grouped in windows, time on axis 1:
(B, T, num_windows, window_tokens, C), window tokens in row-major order.

- Patch shift (odd blocks): inside each window, whole tokens (all channels) move in time according
  to their position in a small tile that repeats from the window origin. With pattern entry δ the
  token at time t is replaced by the token of time t + δ, cyclically over the clip's time steps.
  The inverse (δ -> -δ) puts the attention output back in place.
- Channel shift (even blocks): per head, channels [0, c/8) come from t - 1 and [c/8, c/4) from
  t + 1 (c = head dim); the first/last time steps keep their own values (no zero padding).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Named patch-shift patterns: row = h mod k, column = w mod k, entry = time offset δ (the output
# at time t takes the token of time t + δ). "tps" is the paper's and the release's default
# ("pattern C"): the 9 patches of a 3x3 tile see 9 different time steps, -4 ... +4.
PATTERNS: dict[str, tuple[tuple[int, ...], ...]] = {
    "tps": ((4, -1, -2),
            (1, 0, -3),
            (2, 3, -4)),
    # No temporal move at all (the SW-MSA of 2-D Swin); useful for ablations and tests.
    "none": ((0,),),
}


def get_pattern(name: str) -> np.ndarray:
    """The (kh, kw) integer table of pattern `name`."""
    if name not in PATTERNS:
        raise ValueError(f"unknown patch-shift pattern {name!r}; known: {', '.join(PATTERNS)}")
    return np.asarray(PATTERNS[name], dtype=np.int64)


@functools.cache
def window_offsets(pattern: str, window: tuple[int, int]) -> np.ndarray:
    """Time offset δ of every token of a (wh, ww) window, row-major, shape (wh * ww,).

    The tile is anchored at the window origin: token (h, w) of the window gets
    pattern[h mod kh, w mod kw].
    """
    table = get_pattern(pattern)
    kh, kw = table.shape
    h, w = np.meshgrid(np.arange(window[0]), np.arange(window[1]), indexing="ij")
    return table[h % kh, w % kw].reshape(-1)


@functools.cache
def _shift_index(offsets: tuple[int, ...], frames: int, inverse: bool) -> np.ndarray:
    """(T, N) source time of each output (time, token): (t + δ_n) mod T (δ negated if inverse)."""
    delta = -np.asarray(offsets) if inverse else np.asarray(offsets)
    return (np.arange(frames)[:, None] + delta[None, :]) % frames


def patch_shift(x: jax.Array, offsets: np.ndarray, *, inverse: bool = False) -> jax.Array:
    """Move window tokens in time: out[:, t, :, n] = x[:, (t + δ_n) mod T, :, n].

    x: (B, T, num_windows, N, C); offsets: (N,) from `window_offsets`. `inverse=True` undoes it.
    """
    b, t, nw, n, c = x.shape
    if len(offsets) != n:
        raise ValueError(f"{len(offsets)} patch-shift offsets for windows of {n} tokens")
    index = _shift_index(tuple(int(d) for d in offsets), t, inverse)  # (T, N)
    index = jnp.asarray(index)[None, :, None, :, None]
    return jnp.take_along_axis(x, jnp.broadcast_to(index, (b, t, nw, n, 1)), axis=1,
                               mode="promise_in_bounds")


def channel_shift(x: jax.Array, num_heads: int, *, fold_div: int = 8) -> jax.Array:
    """Per head: channels [0, c/f) from t - 1, [c/f, 2c/f) from t + 1, the rest unchanged.

    x: (B, T, ..., C) with C = num_heads * c, head-major. At the clip's ends the shifted channels
    keep their own values (t = 0 has no t - 1, t = T - 1 no t + 1). No shift back afterwards.
    """
    t, channels = x.shape[1], x.shape[-1]
    head_dim = channels // num_heads
    fold = head_dim // fold_div
    if fold == 0:
        return x
    prev = np.maximum(np.arange(t) - 1, 0)  # source time of the "from t - 1" channels
    nxt = np.minimum(np.arange(t) + 1, t - 1)  # source time of the "from t + 1" channels
    heads = x.reshape(*x.shape[:-1], num_heads, head_dim)
    from_prev = jnp.take(heads[..., :fold], prev, axis=1)
    from_next = jnp.take(heads[..., fold:2 * fold], nxt, axis=1)
    out = jnp.concatenate([from_prev, from_next, heads[..., 2 * fold:]], axis=-1)
    return out.reshape(x.shape)


__all__ = ["PATTERNS", "channel_shift", "get_pattern", "patch_shift", "window_offsets"]

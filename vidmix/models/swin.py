"""A 2-D Swin Transformer (Liu et al. 2021) applied to every time step of a clip, channels-last.

Tokens stay in a (B, T, H, W, C) layout from the patch embedding to the final norm. Attention
never crosses time steps: windows are (1, w, w). Time enters only through PST's memory moves
(`patch_shift.py`): a channel shift in the even blocks of each stage and a patch shift in the odd
(shifted-window) blocks; with both off this is exactly the image Swin on every time step.

Geometry follows the official Swin and `transformers`: a stage whose resolution is <= the window
uses window = min(resolution) and no shifted windows; feature maps are zero-padded (after the
first norm) to window multiples, and patch merging pads odd sizes; shifted windows roll the map by
-w // 2 and mask (with -100) the pairs of tokens that came from different regions.

Relative position bias with patch-shifted tokens (our choice, documented here and in
`PSTConfig`): the table has (2 S - 1) (2 w - 1)^2 rows, one 2-D table per temporal offset
-(S-1) ... S-1 (S = `temporal_window`, 16 as in the release, so its files load as they are). The
2-D image table is tiled over the temporal offsets. In a patch-shift block, query token n and key
token m of a window hold tokens of times t + δ_n and t + δ_m, so the bias uses the temporal offset
δ_n - δ_m plus their 2-D offset ("offset" lookup, the default): the same for every frame, and in
blocks without patch shift the offset is 0 (the image model's table). The release instead looks
the offset up relative to time slot 0 — for query frame t it uses (t + δ_n) mod S - δ_m mod S, and
t - 0 in the channel-shift blocks — which makes the bias depend on the frame index; that is
available as `bias_lookup="release"` (then T' must equal S) to run the release's checkpoints as
trained, and is otherwise treated as the bug it likely is.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.layers import Attention, DropPath, Mlp, dense_init
from vidmix.models.patch_shift import channel_shift, patch_shift, window_offsets
from vidmix.models.stack import LayerStack

MASKED = -100.0  # the official Swin's additive mask value for token pairs from different regions
trunc_normal = nnx.initializers.truncated_normal(stddev=0.02)


# Geometry (static, numpy) ---------------------------------------------------------------------
def stage_resolutions(grid: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """Token grid of every stage: patch merging halves it, rounding up (odd sizes are padded)."""
    res = [tuple(grid)]
    for _ in range(num_stages - 1):
        h, w = res[-1]
        res.append(((h + 1) // 2, (w + 1) // 2))
    return res


def stage_window(resolution: tuple[int, int], window: int) -> tuple[int, int]:
    """(window, shift) of a stage: the whole map, unshifted, when it is no larger than a window."""
    if min(resolution) <= window:
        return min(resolution), 0
    return window, window // 2


def padded(size: int, window: int) -> int:
    """`size` rounded up to a multiple of `window`."""
    return -(-size // window) * window


@functools.cache
def shifted_window_mask(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    """(num_windows, N, N) additive mask for shifted windows on a padded (hp, wp) map.

    After rolling by -shift, each axis has three regions, [0, size - window), [size - window,
    size - shift) and [size - shift, size); tokens of different regions were not neighbours, so
    their pairs get -100.
    """
    def regions(size):
        idx = np.arange(size)
        return (idx >= size - window).astype(int) + (idx >= size - shift).astype(int)

    ids = regions(hp)[:, None] * 3 + regions(wp)[None, :]
    ids = ids.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3)
    ids = ids.reshape(-1, window * window)
    return np.where(ids[:, :, None] == ids[:, None, :], 0.0, MASKED).astype(np.float32)


@functools.cache
def temporal_offsets(pattern: str | None, window: int, frames: int, slots: int,
                     lookup: str) -> np.ndarray:
    """(F, N, N) temporal offset between query n and key m of a window, F = 1 or T (per frame).

    pattern: the block's patch-shift pattern, or None (no patch shift). See the module docstring
    for the "offset" and "release" lookups.
    """
    n = window * window
    delta = (window_offsets(pattern, (window, window)) if pattern is not None
             else np.zeros(n, np.int64))
    if lookup == "offset":
        return (delta[:, None] - delta[None, :])[None]
    t = np.arange(frames)[:, None, None]
    if pattern is None:  # the release's "old" index: frame t against slot 0
        return np.broadcast_to(t, (frames, n, n)).copy()
    return (t + delta[None, :, None]) % slots - (delta[None, None, :] % slots)


@functools.cache
def relative_index(offsets_key: tuple, window: int, slots: int) -> np.ndarray:
    """Rows of the (2S-1)(2w-1)^2-row table for every (frame, query, key): (F, N, N)."""
    dt = temporal_offsets(*offsets_key)
    if np.abs(dt).max() > slots - 1:
        raise ValueError(f"temporal offsets up to {np.abs(dt).max()} need temporal_window > "
                         f"{np.abs(dt).max()}, got {slots}")
    h, w = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    h, w = h.reshape(-1), w.reshape(-1)
    dh = h[:, None] - h[None, :] + window - 1
    dw = w[:, None] - w[None, :] + window - 1
    side = 2 * window - 1
    return (dt + slots - 1) * side * side + (dh * side + dw)[None]


def table_rows(window: int, slots: int) -> int:
    """Rows of the relative position bias table: (2 * slots - 1) * (2 * window - 1) ** 2."""
    return (2 * slots - 1) * (2 * window - 1) ** 2


# Windows --------------------------------------------------------------------------------------
def window_partition(x: jax.Array, window: int) -> jax.Array:
    """(B, T, Hp, Wp, C) -> (B, T, num_windows, window * window, C), windows row-major."""
    b, t, h, w, c = x.shape
    x = x.reshape(b, t, h // window, window, w // window, window, c)
    return x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, t, -1, window * window, c)


def window_merge(x: jax.Array, window: int, hp: int, wp: int) -> jax.Array:
    """Inverse of `window_partition`."""
    b, t, _, _, c = x.shape
    x = x.reshape(b, t, hp // window, wp // window, window, window, c)
    return x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, t, hp, wp, c)


class WindowAttention(Attention):
    """`layers.Attention` inside each (1, w, w) window, with a relative position bias and, in
    shifted windows, a mask; parameters `qkv`, `proj` and `relative_position_bias_table`.

    `temporal` is the block's time mixing: None, "channel" (channel shift of the normed tokens)
    or "patch" (patch shift of the normed tokens, attention output shifted back before `proj`).
    `implementation` ("auto", "xla", "cudnn"): the attention kernel
    (`layers.dot_product_attention`).
    """

    def __init__(self, dim: int, num_heads: int, *, window: int, temporal: str | None,
                 pattern: str, slots: int, lookup: str, channel_div: int, qkv_bias: bool,
                 dropout_rate: float, dtype, implementation: str = "auto", rngs: nnx.Rngs):
        self.init_projections(dim, num_heads, qkv_bias=qkv_bias, dtype=dtype,
                              implementation=implementation, rngs=rngs)
        self.window, self.temporal = window, temporal
        self.pattern, self.slots, self.lookup = pattern, slots, lookup
        self.channel_div = channel_div
        rows = table_rows(window, slots)
        self.relative_position_bias_table = nnx.Param(
            trunc_normal(rngs.params(), (rows, num_heads), jnp.float32))
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def position_bias(self, frames: int) -> jax.Array:
        """(F, heads, N, N) relative position bias, F = 1 or `frames`."""
        pattern = self.pattern if self.temporal == "patch" else None
        key = (pattern, self.window, frames, self.slots, self.lookup)
        index = relative_index(key, self.window, self.slots)
        bias = self.relative_position_bias_table[...][index]  # (F, N, N, heads)
        return bias.transpose(0, 3, 1, 2)

    def __call__(self, x: jax.Array, mask: np.ndarray | None, *, train: bool = False):
        """x: (B, T, num_windows, N, C) normed window tokens -> attention output, same shape;
        mask: (num_windows, N, N) additive, or None."""
        out_hook = None
        if self.temporal == "channel":
            x = channel_shift(x, self.num_heads, fold_div=self.channel_div)
        elif self.temporal == "patch":
            offsets = window_offsets(self.pattern, (self.window, self.window))
            x = patch_shift(x, offsets)
            out_hook = functools.partial(patch_shift, offsets=offsets, inverse=True)
        bias = self.position_bias(x.shape[1])[:, None]  # (F, 1, heads, N, N)
        if mask is not None:
            bias = bias + jnp.asarray(mask)[None, :, None]  # (F, nW, heads, N, N)
        return super().__call__(x, train=train, bias=bias, out_hook=out_hook)


class SwinBlock(nnx.Module):
    """x += Attn(LN(x)) over (shifted) windows; x += MLP(LN(x)). x: (B, T, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, *, resolution: tuple[int, int], window: int,
                 shift: int, temporal: str | None, pattern: str, slots: int, lookup: str,
                 channel_div: int, mlp_ratio: float, qkv_bias: bool, eps: float, drop_path: float,
                 dropout_rate: float, dtype, stochastic_depth: bool | None = None,
                 implementation: str = "auto", rngs: nnx.Rngs):
        self.resolution, self.window, self.shift = tuple(resolution), window, shift
        norm = dict(epsilon=eps, dtype=dtype, rngs=rngs)
        self.norm1 = nnx.LayerNorm(dim, **norm)
        self.attn = WindowAttention(dim, num_heads, window=window, temporal=temporal,
                                    pattern=pattern, slots=slots, lookup=lookup,
                                    channel_div=channel_div, qkv_bias=qkv_bias,
                                    dropout_rate=dropout_rate, dtype=dtype,
                                    implementation=implementation, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, **norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout_rate=dropout_rate, dtype=dtype, rngs=rngs)
        # A block that never drops (rate 0: the first) takes a fixed key instead of a draw, so
        # that stochastic depth can be on in every block of a stage (one structure to scan) and
        # the random draws of every other parameter stay those of separate blocks.
        key = jax.random.key(0) if drop_path == 0 else None
        self.drop_path = DropPath(drop_path, rngs=rngs, enabled=stochastic_depth, key=key)

    def attention(self, x: jax.Array, train: bool) -> jax.Array:
        h, w = self.resolution
        win, s = self.window, self.shift
        hp, wp = padded(h, win), padded(w, win)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        mask = None
        if s:
            x = jnp.roll(x, (-s, -s), axis=(2, 3))
            mask = shifted_window_mask(hp, wp, win, s)
        x = window_merge(self.attn(window_partition(x, win), mask, train=train), win, hp, wp)
        if s:
            x = jnp.roll(x, (s, s), axis=(2, 3))
        return x[:, :, :h, :w]

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = x + self.drop_path(self.attention(self.norm1(x), train), train=train)
        return x + self.drop_path(self.mlp(self.norm2(x), train=train), train=train)


class PatchMerging(nnx.Module):
    """2x2 neighbourhoods -> one token: concat (h, w) = (0,0), (1,0), (0,1), (1,1) -> LN ->
    Linear(4C, 2C), no bias."""

    def __init__(self, dim: int, *, eps: float, dtype, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(4 * dim, epsilon=eps, dtype=dtype, rngs=rngs)
        self.reduction = nnx.Linear(4 * dim, 2 * dim, use_bias=False, dtype=dtype,
                                    kernel_init=dense_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[2:4]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        parts = [x[:, :, r::2, c::2] for c in range(2) for r in range(2)]
        return self.reduction(self.norm(jnp.concatenate(parts, axis=-1)))


class SwinStage(nnx.Module):
    """`depth` blocks (even: W-MSA, odd: SW-MSA), then patch merging unless it is the last.

    The blocks run as a `LayerStack` scanned over pairs (an even and an odd block: one step of
    one structure); with an odd depth, the last block runs after the scan. Checkpoint names stay
    per block, `blocks/{j}/...`.
    """

    def __init__(self, blocks: list[SwinBlock], downsample: PatchMerging | None, *,
                 remat: str = "none", unroll="auto"):
        self.blocks = LayerStack(blocks, group=2, remat=remat, unroll=unroll)
        self.downsample = downsample if downsample is not None else nnx.data(None)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.blocks(x, train=train)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nnx.Module):
    """(B, T, H, W, 3) -> (B, T / tp, H / p, W / p, D): Conv over (tp, p, p), then optional LN."""

    def __init__(self, dim: int, *, patch: int, temporal_patch: int, norm: bool, eps: float,
                 dtype, rngs: nnx.Rngs):
        kernel = (temporal_patch, patch, patch)
        self.proj = nnx.Conv(3, dim, kernel_size=kernel, strides=kernel, padding="VALID",
                             dtype=dtype, rngs=rngs)
        self.norm = (nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, rngs=rngs) if norm
                     else nnx.data(None))

    def __call__(self, video: jax.Array) -> jax.Array:
        x = self.proj(video)
        return self.norm(x) if self.norm is not None else x


def block_mixing(cfg, index: int) -> str | None:
    """PST's alternation inside a stage: even blocks channel shift, odd blocks patch shift."""
    if index % 2 == 0:
        return "channel" if cfg.channel_shift else None
    return "patch" if cfg.patch_shift else None


class SwinBackbone(nnx.Module):
    """Video (B, T, H, W, 3) -> final normed features (B, T', h, w, C) (a `PSTConfig`)."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dtype = jnp.dtype(cfg.dtype)
        self.patch_embed = PatchEmbed(cfg.embed_dim, patch=cfg.patch_size,
                                      temporal_patch=cfg.temporal_patch, norm=cfg.patch_norm,
                                      eps=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)
        # absolute positions (off in the releases): Swin's `ape`, one (h, w, C) table for every
        # time step, and with "space_time" one (C,) row per time step on top
        init = nnx.initializers.truncated_normal(cfg.pos_embed_std)
        self.absolute_pos_embed = nnx.data(None)
        self.temporal_pos_embed = nnx.data(None)
        if cfg.absolute_pos_embed != "none":
            self.absolute_pos_embed = nnx.Param(init(rngs.params(), (*cfg.grid, cfg.embed_dim)))
        if cfg.absolute_pos_embed == "space_time":
            self.temporal_pos_embed = nnx.Param(init(rngs.params(),
                                                     (cfg.time_steps, cfg.embed_dim)))
        rates = np.linspace(0.0, cfg.drop_path_rate, sum(cfg.depths))
        resolutions = stage_resolutions(cfg.grid, len(cfg.depths))
        stages, k = [], 0
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
            dim = cfg.embed_dim * 2 ** i
            window, shift = stage_window(resolutions[i], cfg.window_size)
            blocks = []
            for j in range(depth):
                blocks.append(SwinBlock(
                    dim, heads, resolution=resolutions[i], window=window,
                    shift=shift if j % 2 else 0, temporal=block_mixing(cfg, j),
                    pattern=cfg.shift_pattern, slots=cfg.temporal_window, lookup=cfg.bias_lookup,
                    channel_div=cfg.channel_shift_div, mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias, eps=cfg.layer_norm_eps, drop_path=float(rates[k]),
                    dropout_rate=cfg.dropout_rate, dtype=dtype,
                    stochastic_depth=cfg.drop_path_rate > 0,
                    implementation=cfg.attention_impl, rngs=rngs))
                k += 1
            last = i == len(cfg.depths) - 1
            merge = None if last else PatchMerging(dim, eps=cfg.layer_norm_eps, dtype=dtype,
                                                   rngs=rngs)
            stages.append(SwinStage(blocks, merge, remat=cfg.remat, unroll=cfg.scan_unroll))
        self.layers = nnx.List(stages)
        self.norm = nnx.LayerNorm(cfg.num_features, epsilon=cfg.layer_norm_eps, dtype=dtype,
                                  rngs=rngs)

    def __call__(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        self.cfg.check_clip(video)
        x = self.patch_embed(self.cfg.normalise(video))
        if self.absolute_pos_embed is not None:
            x = x + self.absolute_pos_embed[...].astype(x.dtype)
        if self.temporal_pos_embed is not None:
            x = x + self.temporal_pos_embed[...].astype(x.dtype)[:, None, None]
        for stage in self.layers:
            x = stage(x, train=train)
        return self.norm(x)

"""What a model looks at: the attention weights every block used, and attention rollout.

- `attention_maps(model, video)`: one forward pass that also returns the softmax weights of every
  attention in the model (ViT family: every block and the temporal-attention head; VTN: the
  per-frame ViT and the Longformer; PST: the window attention). The weights are computed on the
  side, from the same queries and keys, inside `layers.capture_attention()`; the logits come from
  the normal forward path, so they are the model's own.
- `attention_rollout(model, video)`: one non-negative map per clip over the token grid,
  (B, T', H/P, W/P), summing to 1: attention rollout (Abnar & Zuidema 2020) from the clip's read-out
  back to the patches, for the ViT family (all four schemes) and VTN.
- `plot_rollout(video, rollout)`: the map over the frames, as a matplotlib figure.

Rollout, as computed here. For every attention step with head-averaged weights A (rows sum to 1),
the residual connection is accounted for as Â = ½·A + ½·I, and the read-out's row is multiplied
through the steps from the last block to the first: r ← r·Â. Every Â is row-stochastic, so r stays
a distribution over the input tokens. At the end the mass on CLS tokens (learned constants that
hold no pixel) is dropped and the rest renormalised over the T'·h·w patches. Per scheme:

- `space`: one CLS per frame, attention inside each frame: each frame's rollout stays in its frame.
- `mixing` (XViT): attention inside each frame over keys and values whose channels were shifted in
  time. A weight on key j of frame t is attributed to token j of the frames that supplied that
  head's key/value channels, in proportion to how many of the head's channels each supplied
  (`AttentionMaps.key_sources`; XViT-B with shift_div 8: head 0's keys come wholly from t+1, head
  1's half from t+1 and half from t-1, head 2's wholly from t-1, heads 3-11 from t). Channels that
  are zeros (clip or group edges, `shift_mode="zero"`) carry nothing: their share is dropped and
  the row renormalised. For a head fed by one frame this is exact; for a head whose channels come
  from two frames (head 1 above) it is an approximation by channel share: its logits mix the
  channels of both and do not split into per-frame parts. With summary tokens (head="summary"), a
  weight on frame s's summary key goes in equal parts to the 1 + N tokens of frame s (their mean).
- `joint`: plain rollout over the 1 + T'·N tokens of the clip.
- `divided`: each block is two steps, composed in the order they run: temporal (the patch tokens of
  each position attend over the T' frames; the CLS is not in it, so its row is the identity) then
  spatial (each frame's [CLS; patches]; the clip CLS gets the mean over frames of its per-frame
  rows, so its row spreads 1/T' over every frame), each with its own ½·A + ½·I.
- The read-out: with one CLS per frame, the frames' CLS rows are weighted by how the head uses the
  frames: equally for the `linear` (mean of the frames' CLS), `avg` and `summary` heads; by the
  `temporal_attention` head's attention from its token to the frames (head-averaged, its token's
  own weight dropped) otherwise. With one CLS per clip (`joint`, `divided`), its row.
- VTN: the frames' weights are the Longformer's rollout from [CLS] (the global row of each layer and
  the frames' band rows, ½·A + ½·I per layer), and each frame's map is the rollout of its ViT.

Not covered: PST has its window attention weights in `attention_maps`, but no rollout (no CLS;
shifted windows, patch merging and the temporal patch shift would each need a construction of
their own); dropout and stochastic depth (maps are taken in evaluation mode).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.classifier import VideoClassifier
from vidmix.models.heads import TemporalAttentionHead
from vidmix.models.layers import ATTENTION_WEIGHTS, capture_attention
from vidmix.models.pst import PST
from vidmix.models.schemes import MixingAttention
from vidmix.models.swin import padded, stage_resolutions
from vidmix.models.temporal_shift import temporal_shift
from vidmix.models.vtn import VTN

Maps = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """The attention weights one forward pass used (float32, every row sums to 1 over its keys).

    B = batch, T' = token frames (num_frames / tubelet_size; VTN: the frames given; PST: time
    steps), heads = that attention's heads, N = patches per frame (h·w, row-major), Q = 1 + N.

    logits: (B, classes), the model's logits from this very pass (fp32).
    blocks: one dict per backbone block, input to output:
      - `mixing`, `space`: {"space": (B, T', heads, Q, Lk)}: every frame's tokens [CLS; patches]
        over the keys of the same frame. For `mixing` the keys are the time-shifted ones the block
        attended to (key j of frame t holds channels of frames t-1, t, t+1, see `key_sources`).
        Lk = Q, or Q + T' with summary tokens (key Q + s: the mean of frame s).
      - `joint`: {"joint": (B, heads, 1 + T'·N, 1 + T'·N)}, tokens [CLS, frame 0's patches,
        frame 1's patches, ...].
      - `divided`: {"time": (B, N, heads, T', T'), "space": (B, T', heads, Q, Q)}: the temporal
        attention of every patch position over the frames (run first), then the spatial attention
        of every frame, the clip's CLS first.
      - VTN: the per-frame ViT's blocks, {"space": (B, T, heads, Q, Q)}.
      - PST: every Swin block of every stage, {"window": (B, T', windows, heads, n, n)}: the
        window attention of each (padded, for odd blocks rolled) window of n = w·w tokens,
        relative position bias and shifted-window mask included. For patch-shift blocks, token
        i of a window at time t is the token of time t + δ_i (`patch_shift.py`). `block_info`
        says which window and shift each block used.
    head: the ViT family's `temporal_attention` head: {"head": (B, heads, 1 + T', 1 + T')}, its
      token then the frames' features; {} for the other heads and families.
    temporal: VTN's Longformer layers: [{"longformer": (B, heads, 1 + T, 1 + T)}], row 0 the
      [CLS]'s global attention (own projections) over every real token, rows 1.. the frames'
      attention over [CLS] and the frames within attention_window / 2 (zeros elsewhere and on
      masked frames); [] for the other families.
    family: "vit", "vtn" or "pst". attention: the ViT scheme ("mixing", "space", "joint",
      "divided"); VTN: "space"; PST: "window".
    grid: (h, w) of the ViT's patch grid (PST: its first stage's token grid). frames: T'.
    key_sources: `mixing`/`space`: (heads, T', T'), the share of head h's key/value channels at
      frame t that come from frame s (rows sum to 1 except where zeros pad a clip or group edge);
      None for the other schemes and families.
    summary: whether the keys end with the frames' summary tokens.
    block_info: PST: one dict per block (stage, block, resolution, window, shift, temporal mixing,
      padded grid); [] otherwise.
    """

    logits: jax.Array
    blocks: list[Maps]
    head: Maps
    temporal: list[Maps]
    family: str
    attention: str
    grid: tuple[int, int]
    frames: int
    key_sources: np.ndarray | None = None
    summary: bool = False
    block_info: list[dict] = dataclasses.field(default_factory=list)


# Capture ---------------------------------------------------------------------------------------
def _layer(stack_tree, i: int):
    """Layer i's sown values from a scanned `LayerStack`'s (sown once: a list, one per layer)."""
    (layers,) = stack_tree["layers"]
    return layers[i]


def _weights(tree, *path):
    """The one value sown at `path` (a dict path into nnx.to_pure_dict of the intermediates)."""
    for key in path:
        tree = tree[key]
    (value,) = tree[ATTENTION_WEIGHTS]  # each attention runs once per forward pass
    return value


@functools.lru_cache(maxsize=16)
def _capturing_forward(graphdef, jit: bool):
    def forward(state, video, kwargs):
        model = nnx.merge(graphdef, state)  # a copy: the caller's model is never touched

        def call(m, v):
            with capture_attention():
                return m(v, train=False, **kwargs)

        logits, inter = nnx.capture(call, nnx.Intermediate)(model, video)
        return logits, nnx.to_pure_dict(inter)

    return jax.jit(forward) if jit else forward


def key_sources(cfg) -> np.ndarray:
    """(heads, T', T') share of head h's key/value channels at frame t taken from frame s, for a
    `mixing` or `space` ViT config (identity without a shift)."""
    t, d, heads = cfg.token_frames, cfg.width, cfg.num_heads
    if cfg.attention != "mixing":
        return np.broadcast_to(np.eye(t, dtype=np.float32), (heads, t, t)).copy()
    # Shift one indicator per source frame through the model's own shift: out[s, t, c] = 1 where
    # channel c of frame t comes from frame s.
    onehot = jnp.broadcast_to(jnp.eye(t, dtype=jnp.float32)[:, :, None], (t, t, d))
    moved = np.asarray(temporal_shift(onehot, cfg.shift_fold, group=cfg.shift_group,
                                      mode=cfg.shift_mode))
    per_head = moved.reshape(t, t, heads, d // heads).mean(-1)  # (s, t, h)
    return np.ascontiguousarray(per_head.transpose(2, 1, 0))


def attention_maps(model: nnx.Module, video: jax.Array, *, jit: bool = True,
                   **kwargs) -> AttentionMaps:
    """The attention weights every block of `model` used on `video` (evaluation mode), and its
    logits; see `AttentionMaps` for the structure and shapes.

    model: a `VideoClassifier` (XViT, TimeSformer, ViT presets), `VTN` or `PST`. video: the clip
    exactly as the model takes it, (B, T, H, W, 3), uint8 pixels or normalised floats. kwargs go
    to the model's call (VTN: `positions=`, `mask=`). The model is not modified, and its outputs
    are those of a plain `model(video, train=False)`: the weights are computed beside the normal
    attention, from the same queries and keys. Memory: every map is kept, e.g. joint attention
    stores depth·heads·(1 + T'N)² floats, and VTN's per-frame ViT runs all frames in one pass.
    """
    if not isinstance(model, (VideoClassifier, VTN, PST)):
        raise TypeError(f"attention_maps takes a VideoClassifier, VTN or PST, got "
                        f"{type(model).__name__}")
    graphdef, state = nnx.split(model)
    logits, tree = _capturing_forward(graphdef, jit)(state, jnp.asarray(video), kwargs)
    if isinstance(model, VideoClassifier):
        return _vit_maps(model, logits, tree)
    if isinstance(model, VTN):
        return _vtn_maps(model, logits, tree)
    return _pst_maps(model, logits, tree)


def _vit_maps(model: VideoClassifier, logits, tree) -> AttentionMaps:
    cfg, scheme = model.config, model.backbone.scheme
    blocks = []
    for i in range(cfg.depth):
        node = _layer(tree["backbone"]["blocks"], i)
        if cfg.attention == "divided":
            blocks.append({"time": _weights(node, "temporal_attn"),
                           "space": _weights(node, "attn")})
        else:  # mixing and space attend inside each frame
            name = "joint" if cfg.attention == "joint" else "space"
            blocks.append({name: _weights(node, "attn")})
    head = ({"head": _weights(tree["head"], "block", "attn")}
            if isinstance(model.head, TemporalAttentionHead) else {})
    summary = isinstance(scheme, MixingAttention) and scheme.summary
    sources = key_sources(cfg) if cfg.per_frame_cls else None
    return AttentionMaps(logits, blocks, head, [], "vit", cfg.attention, cfg.grid,
                         cfg.token_frames, sources, summary)


def _vtn_maps(model: VTN, logits, tree) -> AttentionMaps:
    cfg = model.config
    b = logits.shape[0]
    blocks = []
    for i in range(cfg.depth):
        w = _weights(_layer(tree["backbone"]["blocks"], i), "attn")  # (B·T, 1, heads, Q, Q)
        blocks.append({"space": w.reshape(b, -1, *w.shape[2:])})
    frames = blocks[0]["space"].shape[1]
    length = frames + 1
    temporal = [{"longformer": _weights(_layer(tree["temporal"]["layers"], i), "attention")[
        :, :, :length, :length]} for i in range(cfg.temporal_layers)]
    grid = model.backbone.cfg.grid
    heads = cfg.num_heads
    sources = np.broadcast_to(np.eye(frames, dtype=np.float32), (heads, frames, frames)).copy()
    return AttentionMaps(logits, blocks, {}, temporal, "vtn", "space", grid, frames, sources)


def _pst_maps(model: PST, logits, tree) -> AttentionMaps:
    cfg = model.config
    blocks, info = [], []
    resolutions = stage_resolutions(cfg.grid, len(cfg.depths))
    for i, stage in enumerate(model.backbone.layers):
        for j, block in enumerate(stage.blocks):
            blocks.append({"window": _weights(_layer(tree["backbone"]["layers"][i]["blocks"], j),
                                              "attn")})
            h, w = resolutions[i]
            info.append(dict(stage=i, block=j, resolution=(h, w), window=block.window,
                             shift=block.shift, temporal=block.attn.temporal,
                             padded=(padded(h, block.window), padded(w, block.window))))
    return AttentionMaps(logits, blocks, {}, [], "pst", "window", cfg.grid, cfg.time_steps,
                         block_info=info)


# Rollout ---------------------------------------------------------------------------------------
def attention_rollout(model: nnx.Module, video: jax.Array | None = None, *,
                      maps: AttentionMaps | None = None, head_weights: bool = True,
                      **kwargs) -> jax.Array:
    """Attention rollout of the clip's read-out over its patches: (B, T', h, w), float32,
    non-negative, summing to 1 over T'·h·w for every clip (T' token frames, (h, w) = (H/P, W/P)).

    The construction for each scheme is in this module's docstring. `maps`: reuse the result of
    `attention_maps(model, video)` (then `video` is not needed). `head_weights=False` weighs the
    frames' CLS rows equally instead of by the head's (or VTN's Longformer's) attention. kwargs go
    to the model (VTN: `positions=`, `mask=`). Raises NotImplementedError for PST.
    """
    if maps is None:
        if video is None:
            raise ValueError("attention_rollout needs a video or maps=attention_maps(...)")
        maps = attention_maps(model, video, **kwargs)
    return rollout(maps, head_weights=head_weights)


def rollout(maps: AttentionMaps, *, head_weights: bool = True) -> jax.Array:
    """Attention rollout from an `AttentionMaps` (see `attention_rollout`)."""
    if maps.family == "pst":
        raise NotImplementedError("attention rollout is not defined for PST (no CLS token; "
                                  "use attention_maps(...).blocks for its window attention)")
    h, w = maps.grid
    n, t = h * w, maps.frames
    if maps.attention in ("joint", "divided"):
        batch = maps.blocks[0]["space" if maps.attention == "divided" else "joint"].shape[0]
        r = jnp.zeros((batch, 1 + t * n), jnp.float32).at[:, 0].set(1.0)
        for block in reversed(maps.blocks):
            if maps.attention == "joint":
                r = _clip_step(r, block["joint"])
            else:
                r = _time_step(_divided_space_step(r, block["space"]), block["time"])
        patches = r[:, 1:].reshape(batch, t, n)
    else:  # one CLS per frame: mixing, space, VTN's per-frame ViT
        weights = _frame_weights(maps, head_weights)
        r = jnp.zeros((*weights.shape, 1 + n), jnp.float32).at[..., 0].set(weights)
        sources = jnp.asarray(maps.key_sources, jnp.float32)
        for block in reversed(maps.blocks):
            r = _frame_step(r, block["space"], sources, maps.summary)
        patches = r[..., 1:]
    patches = patches / patches.sum(axis=(1, 2), keepdims=True)
    return patches.reshape(patches.shape[0], t, h, w)


def _frame_weights(maps: AttentionMaps, head_weights: bool) -> jax.Array:
    """(B, T'): how much the read-out takes from each frame's CLS (sums to 1)."""
    batch, t = maps.blocks[0]["space"].shape[:2]
    if head_weights and maps.head:  # the TA head's token attending to the frames
        row = maps.head["head"].mean(axis=1)[:, 0, 1:]
    elif head_weights and maps.temporal:  # VTN: rollout of the Longformer from [CLS]
        r = jnp.zeros((batch, 1 + t), jnp.float32).at[:, 0].set(1.0)
        for layer in reversed(maps.temporal):
            r = _clip_step(r, layer["longformer"])
        row = r[:, 1:]
    else:
        row = jnp.ones((batch, t), jnp.float32)
    return row / row.sum(axis=1, keepdims=True)


def _clip_step(r: jax.Array, a: jax.Array) -> jax.Array:
    """r·Â with Â = ½·mean_heads(a) + ½·I; r (B, L), a (B, heads, L, L)."""
    return 0.5 * jnp.einsum("bq,bqk->bk", r, a.mean(axis=1)) + 0.5 * r


def _frame_step(r: jax.Array, a: jax.Array, sources: jax.Array, summary: bool) -> jax.Array:
    """r·Â for attention inside each frame over (shifted, summary-extended) keys.

    r: (B, T, Q) mass on every frame's tokens; a: (B, T, heads, Q, Lk); sources (heads, T, T).
    Â's row for token i of frame t: ½·M + ½·I, with M the head-averaged weights attributed to
    the source frames of every head's keys (and a summary key spread over its frame), rows
    renormalised; a row with nothing attributable (all keys zeros) is the identity.
    """
    q = r.shape[-1]
    heads = a.shape[2]
    local = a[..., :q]
    supplied = sources.sum(axis=-1)  # (heads, T): share of a head's channels that hold data
    rowsum = jnp.einsum("bthik,ht->bti", local, supplied) / heads
    if summary:
        rowsum = rowsum + a[..., q:].sum(axis=(2, 4)) / heads
    ok = rowsum > 0
    u = jnp.where(ok, r / jnp.where(ok, rowsum, 1.0), 0.0)
    spread = jnp.einsum("bti,bthij->bthj", u, local)
    m = jnp.einsum("bthj,hts->bsj", spread, sources) / heads
    if summary:
        m = m + (jnp.einsum("bti,bthis->bs", u, a[..., q:]) / (heads * q))[..., None]
    return 0.5 * m + 0.5 * r + 0.5 * jnp.where(ok, 0.0, r)


def _divided_space_step(r: jax.Array, a: jax.Array) -> jax.Array:
    """r·Â for divided attention's spatial step; r (B, 1 + T·N), a (B, T, heads, Q, Q)."""
    b, t = a.shape[:2]
    mean = a.mean(axis=2)  # (B, T, Q, Q)
    cls, patches = r[:, :1], r[:, 1:].reshape(b, t, -1)
    # The clip CLS's row is the mean over frames of its rows: give each frame 1/T of its mass.
    u = jnp.concatenate([jnp.broadcast_to(cls[:, None] / t, (b, t, 1)), patches], axis=-1)
    spread = jnp.einsum("bti,btij->btj", u, mean)
    m = jnp.concatenate([spread[:, :, 0].sum(axis=1, keepdims=True),
                         spread[:, :, 1:].reshape(b, -1)], axis=1)
    return 0.5 * m + 0.5 * r


def _time_step(r: jax.Array, a: jax.Array) -> jax.Array:
    """r·Â for divided attention's temporal step; r (B, 1 + T·N), a (B, N, heads, T, T). The CLS
    takes no part: its row is the identity."""
    b, n, _, t, _ = a.shape
    patches = r[:, 1:].reshape(b, t, n)
    moved = jnp.einsum("btn,bnts->bsn", patches, a.mean(axis=2))
    return jnp.concatenate([r[:, :1], (0.5 * moved + 0.5 * patches).reshape(b, -1)], axis=1)


# Picture ---------------------------------------------------------------------------------------
def plot_rollout(video, rollout, *, mean=0.5, std=0.5, alpha: float = 0.5, cmap: str = "jet",
                 title: str | None = None, frame_size: float = 1.8):
    """Frames (top row) and the rollout over them (bottom row); returns the matplotlib Figure.

    video: one clip (T, H, W, 3), or a batch whose first clip is shown; uint8 frames are shown
    as they are, float frames are un-normalised as x·std + mean (pass the model's
    `config.pixel_mean` / `pixel_std`; the defaults are the ViT's 0.5, 0.5; mean=0, std=1 for
    frames in [0, 1]). rollout: (T', h, w) from `attention_rollout` (or a
    batch, first clip); frame t shows map t // (T / T'), so tubelets show their map on each of
    their frames. One colour scale for the whole clip, so brighter frames drew more of the
    read-out; each panel is titled with its frame's share of the map.
    """
    import matplotlib.pyplot as plt

    video, maps = np.asarray(video), np.asarray(rollout, np.float32)
    if video.ndim == 5:
        video = video[0]
    if maps.ndim == 4:
        maps = maps[0]
    t, tm = video.shape[0], maps.shape[0]
    if t % tm:
        raise ValueError(f"{t} frames cannot show {tm} maps (need T divisible by T')")
    if video.dtype == np.uint8:
        frames = video.astype(np.float32) / 255.0
    else:
        frames = np.clip(video.astype(np.float32) * np.asarray(std, np.float32)
                         + np.asarray(mean, np.float32), 0.0, 1.0)
    height, width = frames.shape[1:3]
    vmax = float(maps.max()) or 1.0
    fig, axes = plt.subplots(2, t, figsize=(frame_size * t, 2 * frame_size * height / width + 0.6),
                             squeeze=False)
    share = maps.sum(axis=(1, 2)) / (t // tm)
    for i in range(t):
        m = maps[i * tm // t]
        for row in (0, 1):
            axes[row, i].imshow(frames[i])
            axes[row, i].set_xticks([]), axes[row, i].set_yticks([])
        image = axes[1, i].imshow(m, cmap=cmap, alpha=alpha, vmin=0.0, vmax=vmax,
                                  extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                                  interpolation="bilinear")
        axes[0, i].set_title(f"frame {i}", fontsize=9)
        axes[1, i].set_title(f"{share[i * tm // t]:.0%}", fontsize=9)
    fig.colorbar(image, ax=axes[1].tolist(), fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


__all__ = ["AttentionMaps", "attention_maps", "attention_rollout", "key_sources", "plot_rollout",
           "rollout"]

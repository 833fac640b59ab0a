"""VTN, the Video Transformer Network (Neimark et al. 2021): an image ViT on every frame, a
Longformer over the frames' CLS features, and an MLP head on a learned [CLS] token.

The temporal encoder's attention costs O(T·w), so one pass can take a whole video of hundreds or
thousands of frames: `num_frames` is only the training clip length; the model takes any T.
Each frame's position is its index in the decoded video (`positions`), so that positions reflect
real time whatever the sampling, taken modulo `max_positions - 2` as in the release; the [CLS]
token and padded (masked) frames have position ids of their own.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.backbone import VideoViT
from vidmix.models.config import KINETICS_PIXELS, VIT_SIZES, VideoViTConfig, ViTFields
from vidmix.models.heads import MlpHead
from vidmix.models.layers import capturing
from vidmix.models.longformer import POSITION_INITS, LongformerEncoder


@dataclasses.dataclass(frozen=True)
class VTNConfig(ViTFields):
    """All options of a VTN: ViT backbone (`ViTFields`: patch_size, width, depth, ...; remat
    applies to the backbone blocks and the temporal layers), Longformer temporal encoder, MLP
    head."""

    num_classes: int = 400
    num_frames: int = 16  # the training clip length; the model takes any number of frames
    # Temporal encoder: Longformer over [CLS; frame features] (width = the backbone's).
    temporal_layers: int = 3
    temporal_heads: int = 12
    temporal_mlp_dim: int = 3072
    attention_window: int = 18  # each token sees keys within attention_window / 2 of it
    max_positions: int = 288  # frame ids mod (max_positions - 2); [CLS] and padding take the rest
    temporal_dropout_rate: float = 0.1  # embeddings and layer outputs
    temporal_attention_dropout_rate: float = 0.1  # attention probabilities
    temporal_layer_norm_eps: float = 1e-12
    # std of the fresh position embeddings (BERT's 0.02, the release's; loaded weights replace
    # them). They are the encoder's only source of frame order, added to frame features of unit
    # scale: from scratch, ~1.0 lets it see the order at all (docs/learning.md).
    temporal_position_std: float = 0.02
    # how that fresh table is drawn (longformer.POSITION_INITS): "normal" (BERT's) or "sincos",
    # sinusoids at that scale. The positions are frame indices, so a clip of stride 2 starting at
    # frame 0 or 1 uses disjoint rows: with "normal" every row is unrelated to its neighbours and
    # order must be learned twice; "sincos" starts neighbours close (docs/learning.md)
    temporal_position_init: str = "normal"
    # Head: [CLS] -> LayerNorm -> Dense(head_mlp_dim) -> GELU -> Dropout -> Dense(classes).
    head_mlp_dim: int | None = None  # None: the width
    head_layer_norm_eps: float = 1e-5
    frame_chunk: int | None = None  # frames per backbone pass (bounds memory); None: all at once
    head_dropout_rate: float = 0.5

    @property
    def cls_position(self) -> int:
        """Position id of the [CLS] token (frames use ids 0 .. cls_position - 1)."""
        return self.max_positions - 2

    @property
    def pad_position(self) -> int:
        """Position id of padded (masked) frames; its embedding row starts at zero."""
        return self.max_positions - 1

    @property
    def head_hidden(self) -> int:
        return self.head_mlp_dim or self.width

    def backbone_config(self) -> VideoViTConfig:
        """The per-frame image ViT: space attention on one frame, no temporal embedding."""
        return VideoViTConfig(**self.vit_fields(), num_classes=self.num_classes, num_frames=1,
                              attention="space", head="avg", temporal_embed_slots=0)

    def validate(self) -> None:
        self.backbone_config()  # the ViT's own checks (sizes, patch grid, rates, dtype)
        for name in ("num_classes", "num_frames", "temporal_layers", "temporal_heads",
                     "temporal_mlp_dim", "attention_window", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("head_mlp_dim", "frame_chunk"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {value!r}")
        if self.width % self.temporal_heads:
            raise ValueError(f"width {self.width} is not divisible by temporal_heads "
                             f"{self.temporal_heads}")
        if self.attention_window % 2:
            raise ValueError(f"attention_window must be even (a window of w tokens sees w/2 on "
                             f"each side), got {self.attention_window}")
        if self.max_positions < 3:
            raise ValueError(f"max_positions must be >= 3 (frames, [CLS], padding), got "
                             f"{self.max_positions}")
        self.check_rates("temporal_dropout_rate", "temporal_attention_dropout_rate",
                         "head_dropout_rate")
        std = self.temporal_position_std
        if not (isinstance(std, (int, float)) and std > 0):
            raise ValueError(f"temporal_position_std must be a number > 0, got {std!r}")
        if self.temporal_position_init not in POSITION_INITS:
            raise ValueError(f"unknown temporal_position_init {self.temporal_position_init!r}; "
                             f"choose from {sorted(POSITION_INITS)}")

    def describe(self) -> dict[str, str]:
        """What the model zoo table shows about this model."""
        return dict(family="vtn", attention=f"space + longformer (window {self.attention_window})",
                    head="mlp", size=f"{self.width} x {self.depth} + {self.temporal_layers}")


class VTNHead(MlpHead):
    """[CLS] output -> LayerNorm -> Dense -> GELU -> Dropout -> Dense(classes) (zero-initialised
    classifier, as every vidmix head)."""

    def __init__(self, cfg: VTNConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg.width, cfg.head_hidden, cfg.num_classes, eps=cfg.head_layer_norm_eps,
                         dropout_rate=cfg.head_dropout_rate, dtype=jnp.dtype(cfg.dtype),
                         rngs=rngs)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _fold_in(key: jax.Array, i) -> jax.Array:
    """`jax.random.fold_in` of every key of a key array (scanned layers hold one per layer)."""
    flat = key.reshape(-1)
    return jax.vmap(lambda k: jax.random.fold_in(k, i))(flat).reshape(key.shape)


class VTN(nnx.Module):
    """`model(video, train=False, positions=None, mask=None)` -> fp32 logits (B, classes).

    video: (B, T, H, W, 3), any T, uint8 pixels or normalised floats (`ModelConfig.normalise`).
    positions: (B, T) int, each frame's index in the decoded video (default 0 .. T-1). mask:
    (B, T) bool, the real frames (default all); masked frames (padding of a batch of videos of
    different lengths) have no effect on the output.
    """

    whole_video = True  # takes clips of any length (the trainer evaluates whole videos)

    def __init__(self, cfg: VTNConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        dtype = jnp.dtype(cfg.dtype)
        self.backbone = VideoViT(cfg.backbone_config(), rngs=rngs)
        self.cls_token = nnx.Param(jax.random.normal(rngs.params(), (cfg.width,)))
        self.temporal = LongformerEncoder(
            cfg.width, num_layers=cfg.temporal_layers, num_heads=cfg.temporal_heads,
            mlp_dim=cfg.temporal_mlp_dim, attention_window=cfg.attention_window,
            max_positions=cfg.max_positions, type_vocab_size=2, pad_position=cfg.pad_position,
            num_global=1, dropout_rate=cfg.temporal_dropout_rate,
            attention_dropout_rate=cfg.temporal_attention_dropout_rate,
            eps=cfg.temporal_layer_norm_eps, position_std=cfg.temporal_position_std,
            position_init=cfg.temporal_position_init,
            dtype=dtype, remat=cfg.remat, unroll=cfg.scan_unroll,
            implementation=cfg.attention_impl, rngs=rngs)
        self.head = VTNHead(cfg, rngs=rngs)

    # Inputs --------------------------------------------------------------------------------------
    def check_video(self, video) -> None:
        want = (*self.config.image_hw, 3)
        if video.ndim != 5 or tuple(video.shape[2:]) != want or video.shape[1] < 1:
            raise ValueError(f"expected a video of shape (batch, frames, "
                             f"{', '.join(map(str, want))}) = (B, T, H, W, RGB) with any T >= 1, "
                             f"got {tuple(video.shape)} "
                             f"(this model was built for image_size={self.config.image_size})")

    def frame_inputs(self, video, positions, mask) -> tuple[jax.Array, jax.Array]:
        """Checked (positions, mask), both (B, T), with their defaults filled in."""
        b, t = video.shape[:2]
        positions = (jnp.broadcast_to(jnp.arange(t), (b, t)) if positions is None
                     else jnp.asarray(positions))
        mask = jnp.ones((b, t), bool) if mask is None else jnp.asarray(mask)
        for name, value in (("positions", positions), ("mask", mask)):
            if tuple(value.shape) != (b, t):
                raise ValueError(f"{name} must have shape (batch, frames) = {(b, t)}, got "
                                 f"{tuple(value.shape)}")
        if not jnp.issubdtype(positions.dtype, jnp.integer):
            raise ValueError(f"positions must be integer frame indices, got {positions.dtype}")
        mask = mask.astype(bool)
        if _is_concrete(positions) and _is_concrete(mask):  # (not checkable under jit)
            negative = np.asarray(positions)[np.asarray(mask)]
            if np.any(negative < 0):
                raise ValueError(f"positions of real frames must be frame indices >= 0, got "
                                 f"{int(negative.min())}")
        return positions, mask

    # Forward -------------------------------------------------------------------------------------
    def frame_features(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """(B, T, H, W, 3) -> the backbone's normalised CLS feature of every frame (B, T, D).

        These are the per-frame ViT features before any temporal context (the Longformer's
        inputs, before its embeddings); `temporal_tokens` gives them after the Longformer.
        Attention capture (`attention_maps`) runs all frames in one pass, whatever `frame_chunk`.
        """
        b, t = video.shape[:2]
        frames = video.reshape(b * t, 1, *video.shape[2:])
        chunk = self.config.frame_chunk
        if chunk is None or chunk >= b * t or capturing():
            return self.backbone(frames, train=train)[:, 0].reshape(b, t, -1)
        return self._chunked_features(frames, chunk, train).reshape(b, t, -1)

    def _chunked_features(self, frames: jax.Array, chunk: int, train: bool) -> jax.Array:
        """The backbone over `chunk` frames at a time (`lax.map`): memory bounded by the chunk.

        Random streams (drop path, dropout) are folded with the chunk index so that chunks draw
        different masks, and advance once, as in an unchunked call.
        """
        n = frames.shape[0]
        steps = -(-n // chunk)
        frames = jnp.pad(frames, [(0, steps * chunk - n)] + [(0, 0)] * (frames.ndim - 1))
        chunks = frames.reshape(steps, chunk, *frames.shape[1:])
        graphdef, keys, rest = nnx.split(self.backbone, nnx.RngKey, ...)

        def one_chunk(args):
            i, x = args
            chunk_keys = jax.tree.map(lambda key: _fold_in(key, i), keys)
            backbone = nnx.merge(graphdef, chunk_keys, rest, copy=True)  # fresh variables
            feats = backbone(x, train=train)[:, 0]
            return feats, nnx.state(backbone, nnx.RngCount)

        feats, counts = jax.lax.map(one_chunk, (jnp.arange(steps), chunks))
        nnx.update(self.backbone, jax.tree.map(lambda c: c[0], counts))
        return feats.reshape(steps * chunk, -1)[:n]

    def temporal_tokens(self, video: jax.Array, *, train: bool = False, positions=None,
                        mask=None) -> jax.Array:
        """The temporal encoder's last hidden states (B, 1 + T, D): [CLS] first, then one
        feature per frame in the frames' order, each in the context of the frames within
        `attention_window / 2` of it and of [CLS] (post-LN, as the Longformer outputs them).
        Rows of masked frames are outputs of padding: ignore them. Arguments as in `__call__`."""
        cfg = self.config
        self.check_video(video)
        positions, mask = self.frame_inputs(video, positions, mask)
        dtype = jnp.dtype(cfg.dtype)
        feats = self.frame_features(cfg.normalise(video), train=train)
        feats = jnp.where(mask[..., None], feats, 0)  # padded frames carry nothing
        b = feats.shape[0]
        cls = jnp.broadcast_to(self.cls_token[...].astype(dtype), (b, 1, cfg.width))
        x = jnp.concatenate([cls, feats], axis=1)
        # Position ids: frames by their time index, [CLS] and padding by reserved ids.
        frame_ids = jnp.where(mask, positions % cfg.cls_position, cfg.pad_position)
        position_ids = jnp.concatenate(
            [jnp.full((b, 1), cfg.cls_position, frame_ids.dtype), frame_ids], axis=1)
        token_types = jnp.concatenate(  # [CLS] is type 1, frames type 0
            [jnp.ones((b, 1), jnp.int32), jnp.zeros(mask.shape, jnp.int32)], axis=1)
        valid = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
        return self.temporal(x, position_ids=position_ids, token_type_ids=token_types,
                             valid=valid, train=train)

    def features(self, video: jax.Array, *, train: bool = False, positions=None,
                 mask=None) -> jax.Array:
        """The clip feature the head sees: the temporal encoder's [CLS] output, (B, D).

        `model.head(model.features(video, ...))` is `model(video, ...)` (in the compute dtype;
        the model returns it as fp32). Per-frame features: `frame_features(video)` (B, T, D),
        the ViT's CLS of each frame alone, or `temporal_tokens(video)[:, 1:]` (B, T, D), the
        same after the Longformer. Arguments as in `__call__`.
        """
        return self.temporal_tokens(video, train=train, positions=positions, mask=mask)[:, 0]

    def __call__(self, video: jax.Array, *, train: bool = False, positions=None,
                 mask=None) -> jax.Array:
        feats = self.features(video, train=train, positions=positions, mask=mask)
        return self.head(feats, train=train).astype(jnp.float32)


PRESETS = {
    # ViT-B-VTN of the release: ImageNet ViT-B/16, 3 Longformer layers, window 18, 16-frame clips,
    # pixels normalised with mean 0.45, std 0.225.
    "vtn_vit_b16": dict(**VIT_SIZES["B"], temporal_layers=3, temporal_heads=12,
                        temporal_mlp_dim=3072, attention_window=18, max_positions=288,
                        num_frames=16, **KINETICS_PIXELS),
}

__all__ = ["PRESETS", "VTN", "VTNConfig", "VTNHead"]

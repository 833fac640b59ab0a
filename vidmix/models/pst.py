"""PST, the Patch Shift Transformer (Xiang et al., ECCV 2022): a 2-D Swin on every time step whose
blocks exchange information across time by memory moves only.

Inside each stage, even blocks run window attention (W-MSA) on channel-shifted tokens and odd
blocks shifted-window attention (SW-MSA) on patch-shifted tokens (`patch_shift.py`); the head
averages over time and space, applies dropout and a linear classifier. With `patch_shift=False`
and `channel_shift=False` the model is the image Swin applied to every time step (its logits
averaged over time by the pooling), which is how image checkpoints are checked.

The relative position bias of patch-shifted tokens is described in `swin.py` (module docstring):
by default ("offset") it is indexed by the temporal offset between the source times of query and
key plus their 2-D offset, the table being the 2-D one tiled over temporal offsets; the release's
frame-dependent lookup (relative to time slot 0, likely a bug) is `bias_lookup="release"`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.config import IMAGENET_PIXELS, ModelConfig, choice
from vidmix.models.heads import ClassifierHead
from vidmix.models.patch_shift import PATTERNS, get_pattern
from vidmix.models.swin import SwinBackbone

BIAS_LOOKUPS = ("offset", "release")
ABSOLUTE_POSITIONS = ("none", "space", "space_time")

# The Swin sizes of Liu et al. 2021 (Swin-T and Swin-B, as PST-T and PST-B use them).
SWIN_SIZES = {
    "T": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "S": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "B": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


@dataclasses.dataclass(frozen=True)
class PSTConfig(ModelConfig):
    """All options of a PST (Swin with temporal patch and channel shift) and its head."""

    num_classes: int = 400
    num_frames: int = 32
    image_size: int | tuple[int, int] = 224
    patch_size: int = 4
    temporal_patch: int = 2  # frames per token: 32 frames -> 16 time steps
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-5
    patch_norm: bool = True
    # Learned absolute positions added to the patch embeddings, none in Swin's and PST's releases
    # (their tokens know only relative offsets inside a window): "space" is Swin's `ape`, one
    # (h, w) table shared by every time step; "space_time" adds a row per time step (T', C), as
    # TimeSformer's time embedding. Drawn from a truncated normal of `pos_embed_std` (Swin's 0.02;
    # from scratch about 1.0, the patch embeddings' scale: docs/learning.md, "PST and when")
    absolute_pos_embed: str = "none"
    pos_embed_std: float = 0.02
    # Temporal mixing: odd blocks of each stage patch-shift (SW-MSA), even blocks channel-shift
    # (W-MSA). Both False: the plain 2-D Swin on every time step.
    patch_shift: bool = True
    channel_shift: bool = True
    shift_pattern: str = "tps"  # a name in `patch_shift.PATTERNS`
    channel_shift_div: int = 8  # per head, head_dim // 8 channels from t-1 and as many from t+1
    # Relative-position table: one 2-D table per temporal offset -(S-1)..S-1, S = temporal_window
    # (16 as in the release, so its checkpoints load unchanged; 1 is enough without patch shift).
    temporal_window: int = 16
    bias_lookup: str = "offset"  # "offset" (clean) or "release" (frame-dependent; T' == S)
    dtype: str = "float32"  # compute dtype; parameters are always float32
    remat: str = "none"  # remat policy of every block (stack.REMAT_POLICIES)
    drop_path_rate: float = 0.1
    dropout_rate: float = 0.0
    head_dropout_rate: float = 0.5

    # Derived sizes -------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.image_hw
        return h // self.patch_size, w // self.patch_size

    @property
    def time_steps(self) -> int:
        return self.num_frames // self.temporal_patch

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    # Validation ----------------------------------------------------------------------------------
    def validate(self) -> None:
        choice("bias_lookup", self.bias_lookup, BIAS_LOOKUPS)
        choice("absolute_pos_embed", self.absolute_pos_embed, ABSOLUTE_POSITIONS)
        choice("shift_pattern", self.shift_pattern, tuple(PATTERNS))
        for name in ("num_classes", "num_frames", "patch_size", "temporal_patch", "embed_dim",
                     "window_size", "channel_shift_div", "temporal_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must be "
                             f"non-empty and of the same length (one per stage)")
        if any(not isinstance(v, int) or v < 1 for v in (*self.depths, *self.num_heads)):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must be "
                             f"positive integers")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** i) % heads:
                raise ValueError(f"stage {i} width {self.embed_dim * 2 ** i} is not divisible by "
                                 f"its {heads} heads")
        if self.channel_shift:
            head_dim = min(self.embed_dim * 2 ** i // n for i, n in enumerate(self.num_heads))
            if head_dim // self.channel_shift_div < 1:
                raise ValueError(f"channel_shift_div {self.channel_shift_div} leaves no channel "
                                 f"to shift in heads of {head_dim} channels")
        h, w = self.image_hw
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        if self.num_frames % self.temporal_patch:
            raise ValueError(f"num_frames {self.num_frames} is not a multiple of temporal_patch "
                             f"{self.temporal_patch} (each token spans {self.temporal_patch} "
                             f"frames)")
        if self.patch_shift and self.bias_lookup == "offset":
            table = get_pattern(self.shift_pattern)
            reach = int(table.max() - table.min())
            if reach > self.temporal_window - 1:
                raise ValueError(f"pattern {self.shift_pattern!r} has temporal offsets up to "
                                 f"{reach} between tokens: temporal_window must be > {reach}, got "
                                 f"{self.temporal_window}")
        if self.bias_lookup == "release" and self.time_steps != self.temporal_window:
            raise ValueError(f"bias_lookup='release' needs num_frames / temporal_patch == "
                             f"temporal_window ({self.temporal_window}), got {self.time_steps} "
                             f"time steps")
        self.check_non_negative("pos_embed_std")
        self.check_rates("drop_path_rate", "dropout_rate", "head_dropout_rate")
        self.check_dtype()

    def describe(self) -> dict[str, str]:
        """What the model zoo table shows about this model."""
        mixing = [name for name, on in (("patch shift", self.patch_shift),
                                        ("channel shift", self.channel_shift)) if on]
        attention = "window" + (f" + {' + '.join(mixing)}" if mixing else " (per frame)")
        return dict(family="swin", attention=attention, head="avg",
                    size=f"{self.embed_dim} x {'-'.join(map(str, self.depths))}")


class PoolHead(ClassifierHead):
    """Dropout and a zero-initialised linear classifier on the features averaged over time and
    space (`PST.features`)."""

    def __init__(self, cfg: PSTConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg.num_features, cfg.num_classes, dropout_rate=cfg.head_dropout_rate,
                         dtype=jnp.dtype(cfg.dtype), rngs=rngs)


class PST(nnx.Module):
    """`model(video, train=False)`: video (B, T, H, W, 3), uint8 pixels (normalised inside with
    the config's pixel_mean / pixel_std) or already normalised floats -> fp32 logits (B, classes).
    """

    def __init__(self, cfg: PSTConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.backbone = SwinBackbone(cfg, rngs=rngs)
        self.head = PoolHead(cfg, rngs=rngs)

    def feature_map(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """The backbone's final normed feature map (B, T', h, w, C): T' = num_frames /
        temporal_patch time steps, (h, w) the last stage's grid (image / (patch_size · 2^(stages
        - 1)), rounded up), C = `num_features`. Per time step: `feature_map(video).mean((2, 3))`,
        (B, T', C)."""
        return self.backbone(video, train=train)

    def features(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        """The clip feature the head sees: the feature map averaged over time and space, (B, C).

        `model.head(model.features(video))` is `model(video)` (in the compute dtype; the model
        returns fp32 logits). Per-time-step and per-position features: `feature_map`.
        """
        return self.feature_map(video, train=train).mean(axis=(1, 2, 3))

    def __call__(self, video: jax.Array, *, train: bool = False) -> jax.Array:
        logits = self.head(self.features(video, train=train), train=train)
        return logits.astype(jnp.float32)


_PST = dict(num_frames=32, drop_path_rate=0.1, head_dropout_rate=0.5, **IMAGENET_PIXELS)
PRESETS = {
    "pst_tiny": dict(**SWIN_SIZES["T"], **_PST),
    "pst_base": dict(**SWIN_SIZES["B"], **_PST),
}

__all__ = ["PRESETS", "PST", "PSTConfig", "SWIN_SIZES"]

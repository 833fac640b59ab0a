"""Model configurations: one frozen dataclass per family, validated once at construction.

`ModelConfig` holds what every family shares (classes, frames, dtype, pixel normalisation, remat,
attention implementation); `ViTFields` the ViT backbone's fields; `VideoViTConfig` the video ViTs
(XViT, TimeSformer, per-frame ViT). VTN's `VTNConfig` (vtn.py) and PST's `PSTConfig` (pst.py)
extend them. Presets (`registry.py`) are named sets of field values; every field can be
overridden by keyword in `create_model`.
"""

from __future__ import annotations

import dataclasses
import difflib

import jax
import jax.numpy as jnp
import numpy as np

# The standard ViT sizes (Dosovitskiy et al. 2021; Ti and S from Touvron et al. 2021).
VIT_SIZES = {
    "Ti": dict(width=192, depth=12, num_heads=3),
    "S": dict(width=384, depth=12, num_heads=6),
    "B": dict(width=768, depth=12, num_heads=12),
    "L": dict(width=1024, depth=24, num_heads=16),
    "H": dict(width=1280, depth=32, num_heads=16),
}

ATTENTIONS = ("mixing", "divided", "joint", "space")
HEADS = ("linear", "temporal_attention", "avg", "summary")
SHIFT_MODES = ("zero", "roll")
# Schemes that keep one CLS token per frame (and so give per-frame features to the head).
PER_FRAME_CLS = ("mixing", "space")
# Attention kernels (`layers.dot_product_attention`): cuDNN where it can run, else XLA ("auto").
ATTENTION_IMPLS = ("auto", "xla", "cudnn")
# Per-channel (R, G, B) pixel statistics on [0, 1] pixels: the Google ViT files (and XViT) take
# mean = std = 0.5; TimeSformer's and VTN's releases 0.45 / 0.225; Swin (PST) ImageNet's.
VIT_PIXELS = dict(pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5))
KINETICS_PIXELS = dict(pixel_mean=(0.45, 0.45, 0.45), pixel_std=(0.225, 0.225, 0.225))
IMAGENET_PIXELS = dict(pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What the config dataclasses of every family share: list fields become tuples (hashable,
    as the registry and cost caches need), `dtype` is normalised, `validate()` runs once;
    `image_hw`, `replace` and the common checks; the `attention_impl` and pixel statistics
    fields, and `normalise`, which turns a video into the model's input."""

    # "auto" | "xla" | "cudnn": how every attention of the model runs (`layers.py`)
    attention_impl: str = "auto"
    # How the compiled loop over each stack of layers runs (`stack.LayerStack.unrolled_steps`):
    # "auto" (every layer unrolled, except with remat on a CPU), True (unrolled), or a number of
    # layers per iteration (1: a loop, the fastest compile; on a CPU the least memory with remat)
    scan_unroll: str | int | bool = "auto"
    # The input normalisation the weights were trained with, per RGB channel on [0, 1] pixels: a
    # uint8 video is normalised with these inside the model (`normalise`). Presets set their
    # release's values (VIT_PIXELS, KINETICS_PIXELS, IMAGENET_PIXELS).
    pixel_mean: tuple[float, float, float] = VIT_PIXELS["pixel_mean"]
    pixel_std: tuple[float, float, float] = VIT_PIXELS["pixel_std"]

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
        choice("attention_impl", self.attention_impl, ATTENTION_IMPLS)
        for name in ("pixel_mean", "pixel_std"):
            value = getattr(self, name)
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                numbers = ()
            if len(numbers) != 3 or not np.all(np.isfinite(numbers)):
                raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}")
            object.__setattr__(self, name, numbers)
        if min(self.pixel_std) <= 0:
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std}")
        from vidmix.models.stack import remat_policy, scan_unroll

        scan_unroll(self.scan_unroll)
        if hasattr(self, "remat"):
            object.__setattr__(self, "remat", remat_policy(self.remat))
        self.validate()

    @property
    def image_hw(self) -> tuple[int, int]:
        s = self.image_size
        return (s, s) if isinstance(s, int) else tuple(s)

    def check_clip(self, video) -> None:
        """A clear error unless `video` is (B, num_frames, H, W, 3) at this config's size."""
        want = (self.num_frames, *self.image_hw, 3)
        if video.ndim != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(
                f"expected a video of shape (batch, {', '.join(map(str, want))}) = (B, T, H, W, "
                f"RGB), got {tuple(video.shape)}; this model was built for num_frames="
                f"{self.num_frames}, image_size={self.image_size} (make the model with other "
                "values to take other clips)")

    def normalise(self, video, dtype=None) -> jax.Array:
        """The model's input from `video` (..., 3): uint8 pixels become (x / 255 - pixel_mean) /
        pixel_std, computed in float32; a floating video is taken as normalised already. Returned
        in `dtype` (default: the compute dtype)."""
        video = jnp.asarray(video)
        dtype = jnp.dtype(dtype or self.dtype)
        if video.dtype == jnp.uint8:
            std = np.asarray(self.pixel_std, np.float32)
            scale, shift = 1 / (255 * std), np.asarray(self.pixel_mean, np.float32) / std
            return (video.astype(jnp.float32) * scale - shift).astype(dtype)
        if not jnp.issubdtype(video.dtype, jnp.floating):
            raise TypeError(f"a video is uint8 pixels or an already normalised float array, got "
                            f"{video.dtype}")
        return video.astype(dtype)

    def replace(self, **overrides):
        check_keys(overrides, type(self))
        return dataclasses.replace(self, **overrides)

    def check_rates(self, *names: str) -> None:
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def check_non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    def check_dtype(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTFields(ModelConfig):
    """The fields of a ViT backbone, declared once for the video ViT (`VideoViTConfig`) and VTN's
    per-frame ViT (`VTNConfig`); each family's config has them as flat fields of its own."""

    image_size: int | tuple[int, int] = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    dtype: str = "float32"  # compute dtype; parameters are always float32
    # what the backward pass recomputes in every block: "none", "full" (keep only each block's
    # input), "dots", "dots_all" (stack.REMAT_POLICIES); True/False mean "full"/"none"
    remat: str = "none"
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly from 0 to this over the blocks
    dropout_rate: float = 0.0  # dropout on the attention and MLP outputs of the backbone
    # std of the fresh position embeddings (the JAX ViT's and the releases' 0.02; loaded weights
    # replace them). From scratch the patch embeddings have a std near 1, so positions at 0.02
    # barely reach the attention (docs/learning.md)
    pos_embed_std: float = 0.02

    def vit_fields(self) -> dict:
        """{name: value} of the ViT backbone fields (and `attention_impl`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ViTFields)}


@dataclasses.dataclass(frozen=True)
class VideoViTConfig(ViTFields):
    """All options of a video ViT backbone and its head (the backbone's own: `ViTFields`)."""

    num_classes: int = 400
    num_frames: int = 8
    tubelet_size: int = 1  # frames per token; 1 = per-frame patch embedding
    attention: str = "mixing"
    head: str = "temporal_attention"
    # temporal_attention head: add learned per-frame positions to its frame features
    # (heads.TemporalAttentionHead). False, the default, is the release's head, which learns from
    # scratch once the pixels are normalised well (docs/learning.md)
    head_positions: bool = False
    # Space-time mixing (attention="mixing"): `width // shift_div` channels come from frame t+1 and
    # as many from frame t-1; shifts stay inside consecutive groups of `shift_group` token frames
    # (None: the whole clip is one group); `shift_mode` pads clip edges with zeros or rolls around.
    shift_div: int = 8
    shift_group: int | None = None
    shift_mode: str = "zero"
    # Temporal embedding slots: None = one per token frame, 0 = no temporal embedding. Frame t uses
    # slot t mod slots (the official XViT release uses 8 slots for 16 frames).
    temporal_embed_slots: int | None = None
    # The fresh temporal embedding: zeros (0.0, the releases'; their models start from image
    # weights) or a truncated normal of this std. Without it TimeSformer's fresh model is exactly
    # blind to frame order; from scratch, ~1.0 (the patch embeddings' scale) lets it learn time
    # (docs/learning.md). Loaded weights replace it.
    temporal_embed_std: float = 0.0
    head_dropout_rate: float = 0.0  # dropout in the head (XViT's TA head: 0.5)

    # Derived sizes -------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.image_hw
        return h // self.patch_size, w // self.patch_size

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def token_frames(self) -> int:
        """Number of frames after (tubelet) patch embedding."""
        return self.num_frames // self.tubelet_size

    @property
    def embed_slots(self) -> int:
        if self.temporal_embed_slots is None:
            return self.token_frames
        return self.temporal_embed_slots

    @property
    def per_frame_cls(self) -> bool:
        return self.attention in PER_FRAME_CLS

    @property
    def shift_fold(self) -> int:
        return self.width // self.shift_div

    # Validation ----------------------------------------------------------------------------------
    def validate(self) -> None:
        choice("attention", self.attention, ATTENTIONS)
        choice("head", self.head, HEADS)
        choice("shift_mode", self.shift_mode, SHIFT_MODES)
        for name in ("num_classes", "num_frames", "patch_size", "tubelet_size", "width", "depth",
                     "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        h, w = self.image_hw
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames {self.num_frames} is not a multiple of tubelet_size "
                             f"{self.tubelet_size}")
        if self.embed_slots < 0:
            raise ValueError(f"temporal_embed_slots must be >= 0, got {self.temporal_embed_slots}")
        self.check_non_negative("pos_embed_std", "temporal_embed_std")
        if self.attention == "mixing":
            if not 1 <= self.shift_div or self.shift_fold < 1 or 2 * self.shift_fold > self.width:
                raise ValueError(f"shift_div {self.shift_div} must leave 1 <= width // shift_div "
                                 f"<= width / 2 (width {self.width})")
            group = self.shift_group or self.token_frames
            if self.token_frames % group:
                raise ValueError(f"shift_group {self.shift_group} does not divide the "
                                 f"{self.token_frames} token frames")
        if self.head in ("temporal_attention", "summary") and not self.per_frame_cls:
            raise ValueError(f"head {self.head!r} needs one feature per frame, but attention "
                             f"{self.attention!r} keeps one CLS token per clip; use head 'linear' "
                             f"or 'avg', or attention {' or '.join(map(repr, PER_FRAME_CLS))}")
        self.check_rates("drop_path_rate", "dropout_rate", "head_dropout_rate")
        self.check_dtype()

    def describe(self) -> dict[str, str]:
        """What the model zoo table shows about this model."""
        return dict(family="vit", attention=self.attention, head=self.head,
                    size=f"{self.width} x {self.depth}")


def check_keys(overrides: dict, config_cls: type = VideoViTConfig) -> None:
    """Raise a clear error for override keys that are not fields of `config_cls`."""
    fields = tuple(f.name for f in dataclasses.fields(config_cls))
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, fields, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"unknown model option(s) {', '.join(hints)}; valid options: "
                        f"{', '.join(fields)}")


def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raises ValueError naming the option `name` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")

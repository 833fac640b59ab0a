"""Named presets and `create_model`."""

from __future__ import annotations

import difflib

from flax import nnx

from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import VIT_SIZES, VideoViTConfig, check_keys

# XViT (Bulat et al. 2021): mixing attention in every block, temporal-attention clip head.
# Clean defaults: one shift group, one temporal slot per frame, 25% of channels mixed (shift_div 8,
# the official Kinetics value). Official release quirks are options (shift_group=8 and
# temporal_embed_slots=8 for its 16-frame Kinetics checkpoints).
_XVIT = dict(attention="mixing", head="temporal_attention", shift_div=8, head_dropout_rate=0.5)
# TimeSformer (Bertasius et al. 2021): one CLS per clip, linear head, drop-path 0 -> 0.1.
_TIMESFORMER = dict(head="linear", drop_path_rate=0.1)

PRESETS: dict[str, dict] = {
    "xvit_s16": dict(**VIT_SIZES["S"], **_XVIT),
    "xvit_b16": dict(**VIT_SIZES["B"], **_XVIT),
    "xvit_l16": dict(**VIT_SIZES["L"], **_XVIT),
    "xvit_b16_summary": dict(**VIT_SIZES["B"], **{**_XVIT, "head": "summary",
                                                   "head_dropout_rate": 0.0}),
    "timesformer_b16": dict(**VIT_SIZES["B"], attention="divided", **_TIMESFORMER),
    "timesformer_b16_joint": dict(**VIT_SIZES["B"], attention="joint", **_TIMESFORMER),
    "timesformer_b16_space": dict(**VIT_SIZES["B"], attention="space", temporal_embed_slots=0,
                                  **_TIMESFORMER),
    # The per-frame baseline: an image ViT on every frame, logits averaged (TSN consensus).
    "vit_b16": dict(**VIT_SIZES["B"], attention="space", head="avg", temporal_embed_slots=0),
}


def list_models() -> list[str]:
    """Names of the presets, for `create_model`."""
    return sorted(PRESETS)


def model_config(name: str, **overrides) -> VideoViTConfig:
    """The config of preset `name` with `overrides` applied (validated)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    check_keys(overrides)
    return VideoViTConfig(**{**PRESETS[name], **overrides})


def create_model(name: str, *, rngs: nnx.Rngs | None = None, **overrides) -> VideoClassifier:
    """Build preset `name`, e.g. `create_model("xvit_b16", num_classes=400, num_frames=8)`.

    Overrides are any `VideoViTConfig` field: num_classes, num_frames, image_size, patch_size,
    width, depth, num_heads, mlp_ratio, attention, head, shift_div, shift_group,
    temporal_embed_slots, shift_mode, dtype, remat, drop_path_rate, dropout_rate, and more.
    """
    cfg = model_config(name, **overrides)
    return VideoClassifier(cfg, rngs=rngs if rngs is not None else nnx.Rngs(0))

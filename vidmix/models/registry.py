"""Named presets, model families and `create_model`.

A family is a config dataclass and the module it builds (`MODELS`); a preset is a family's config
class and a set of field values (`PRESETS`). Every config has `num_classes`, `num_frames`,
`image_size` (and `image_hw`), `dtype`, `remat`, `drop_path_rate`, `dropout_rate`,
`head_dropout_rate` and `describe()`, which is all training, cost and the zoo rely on.
"""

from __future__ import annotations

import difflib

from flax import nnx

from vidmix.models import pst, vtn
from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import KINETICS_PIXELS, VIT_SIZES, VideoViTConfig, check_keys

# config class -> the module it builds, `Module(cfg, rngs=...)`
MODELS: dict[type, type] = {VideoViTConfig: VideoClassifier}
# family name -> config class (the name saved model folders record, `vidmix.save_pretrained`)
FAMILIES: dict[str, type] = {"vit": VideoViTConfig}

# XViT (Bulat et al. 2021): mixing attention in every block, temporal-attention clip head.
# Clean defaults: one shift group, one temporal slot per frame, 25% of channels mixed (shift_div 8,
# the official Kinetics value). Official release quirks are options (shift_group=8 and
# temporal_embed_slots=8 for its 16-frame Kinetics checkpoints).
_XVIT = dict(attention="mixing", head="temporal_attention", shift_div=8, head_dropout_rate=0.5)
# TimeSformer (Bertasius et al. 2021): one CLS per clip, linear head, drop-path 0 -> 0.1, the
# release's pixel normalisation (mean 0.45, std 0.225). The others take the ViT's 0.5 / 0.5.
_TIMESFORMER = dict(head="linear", drop_path_rate=0.1, **KINETICS_PIXELS)

PRESETS: dict[str, tuple[type, dict]] = {name: (VideoViTConfig, fields) for name, fields in {
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
}.items()}


def register(config_cls: type, model_cls: type, presets: dict[str, dict], *, family: str) -> None:
    """Add a model family, under the name `family`, and its presets."""
    if FAMILIES.get(family, config_cls) is not config_cls:
        raise ValueError(f"model family {family!r} is already registered")
    FAMILIES[family] = config_cls
    MODELS[config_cls] = model_cls
    clash = set(presets) & set(PRESETS)
    if clash:
        raise ValueError(f"presets already registered: {sorted(clash)}")
    PRESETS.update({name: (config_cls, fields) for name, fields in presets.items()})


# The other families live in their own modules (which do not import this one).
# VTN: per-frame ViT + Longformer over time; PST: Swin with temporal patch/channel shift.
register(vtn.VTNConfig, vtn.VTN, vtn.PRESETS, family="vtn")
register(pst.PSTConfig, pst.PST, pst.PRESETS, family="pst")


def list_models() -> list[str]:
    """Names of the presets, for `create_model`."""
    return sorted(PRESETS)


def model_config(name: str, **overrides) -> VideoViTConfig:
    """The config of preset `name` with `overrides` applied (validated)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    config_cls, fields = PRESETS[name]
    check_keys(overrides, config_cls)
    return config_cls(**{**fields, **overrides})


def build_model(cfg, *, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """The module of config `cfg` (any family), freshly initialised."""
    if type(cfg) not in MODELS:
        raise TypeError(f"no model family for config type {type(cfg).__name__}")
    return MODELS[type(cfg)](cfg, rngs=rngs if rngs is not None else nnx.Rngs(0))


def create_model(name: str, *, rngs: nnx.Rngs | None = None, **overrides) -> nnx.Module:
    """Build preset `name`, e.g. `create_model("xvit_b16", num_classes=400, num_frames=8)`.

    Overrides are any field of the preset's config: for the ViT family (`VideoViTConfig`)
    num_classes, num_frames, image_size, patch_size, width, depth, num_heads, mlp_ratio,
    attention, head, shift_div, shift_group, temporal_embed_slots, shift_mode, dtype, remat,
    drop_path_rate, dropout_rate, and more. An unknown option is an error naming the valid ones.
    """
    return build_model(model_config(name, **overrides), rngs=rngs)

"""Model families, their named presets and `create_model`.

A family (`Family`) is declared once, with everything about it: its name, its config dataclass,
the module that config builds, its presets (named sets of config field values) and its weight
conversion (canonical checkpoint tensors -> its parameters, `vidmix.checkpoints.families`).
`register(Family(...))` adds it; `FAMILIES` holds them by name, and `PRESETS` (preset name ->
(config class, fields)) is the index `create_model` looks names up in.

Every config has `num_classes`, `num_frames`, `image_size` (and `image_hw`), `dtype`, `remat`,
`drop_path_rate`, `dropout_rate`, `head_dropout_rate` and `describe()`, which is all training,
cost and the zoo rely on.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable

from flax import nnx

from vidmix.models import pst, vtn
from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import KINETICS_PIXELS, VIT_SIZES, VideoViTConfig, check_keys


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """One model family, registered once with `register`.

    name: what saved model folders record (`vidmix.save_pretrained`). config: the config
    dataclass. model: the module it builds, `model(cfg, rngs=...)`. presets: preset name -> config
    field values. convert: the weight conversion `convert(cfg, tensors, params, *, inflate) ->
    (mapping, dropped)` (see `vidmix.checkpoints.families`), or its import path
    "package.module:function", imported on first use (so the models need not import the
    checkpoint code); None: the family loads only its own model folders.
    """

    name: str
    config: type
    model: type
    presets: dict[str, dict] = dataclasses.field(default_factory=dict)
    convert: Callable | str | None = None

    def conversion(self) -> Callable | None:
        """The weight conversion function (imported now if given by its path), or None."""
        if isinstance(self.convert, str):
            module, _, function = self.convert.partition(":")
            return getattr(importlib.import_module(module), function)
        return self.convert


# family name -> Family
FAMILIES: dict[str, Family] = {}
# index over FAMILIES: preset name -> (config class, fields)
PRESETS: dict[str, tuple[type, dict]] = {}


def register(family: Family) -> Family:
    """Add `family` and its presets (a name or preset already registered is an error); returns
    it."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    if any(f.config is family.config for f in FAMILIES.values()):
        raise ValueError(f"config {family.config.__name__} already has a model family")
    clash = set(family.presets) & set(PRESETS)
    if clash:
        raise ValueError(f"presets already registered: {sorted(clash)}")
    FAMILIES[family.name] = family
    PRESETS.update({name: (family.config, fields) for name, fields in family.presets.items()})
    return family


def unregister(name: str) -> Family:
    """Remove family `name` and its presets (e.g. a test's toy family); returns it."""
    family = FAMILIES.pop(name)
    for preset in family.presets:
        del PRESETS[preset]
    return family


def family_for(cfg) -> Family:
    """The registered family of model config `cfg` (TypeError if none)."""
    for family in FAMILIES.values():
        if type(cfg) is family.config:
            return family
    raise TypeError(f"{type(cfg).__name__} is not a registered model family "
                    f"({', '.join(f'{n}: {f.config.__name__}' for n, f in FAMILIES.items())})")


# XViT (Bulat et al. 2021): mixing attention in every block, temporal-attention clip head.
# Clean defaults: one shift group, one temporal slot per frame, 25% of channels mixed (shift_div 8,
# the official Kinetics value). Official release quirks are options (shift_group=8 and
# temporal_embed_slots=8 for its 16-frame Kinetics checkpoints).
_XVIT = dict(attention="mixing", head="temporal_attention", shift_div=8, head_dropout_rate=0.5)
# TimeSformer (Bertasius et al. 2021): one CLS per clip, linear head, drop-path 0 -> 0.1, the
# release's pixel normalisation (mean 0.45, std 0.225). The others take the ViT's 0.5 / 0.5.
_TIMESFORMER = dict(head="linear", drop_path_rate=0.1, **KINETICS_PIXELS)

_VIT_PRESETS = {
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


# The built-in families. The models live in their own modules (which do not import this one); the
# conversions in `vidmix.checkpoints.families`, imported when weights are first loaded.
register(Family("vit", VideoViTConfig, VideoClassifier, _VIT_PRESETS,
                convert="vidmix.checkpoints.families.vit:convert"))
# VTN: per-frame ViT + Longformer over time.
register(Family("vtn", vtn.VTNConfig, vtn.VTN, vtn.PRESETS,
                convert="vidmix.checkpoints.families.vtn:convert"))
# PST: Swin with temporal patch/channel shift.
register(Family("pst", pst.PSTConfig, pst.PST, pst.PRESETS,
                convert="vidmix.checkpoints.families.pst:convert"))


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
    return family_for(cfg).model(cfg, rngs=rngs if rngs is not None else nnx.Rngs(0))


def create_model(name: str, *, rngs: nnx.Rngs | None = None, **overrides) -> nnx.Module:
    """Build preset `name`, e.g. `create_model("xvit_b16", num_classes=400, num_frames=8)`.

    Overrides are any field of the preset's config: for the ViT family (`VideoViTConfig`)
    num_classes, num_frames, image_size, patch_size, width, depth, num_heads, mlp_ratio,
    attention, head, shift_div, shift_group, temporal_embed_slots, shift_mode, dtype, remat,
    drop_path_rate, dropout_rate, and more. An unknown option is an error naming the valid ones.
    """
    return build_model(model_config(name, **overrides), rngs=rngs)

"""A model is a folder: `save_pretrained(model, path)` and `from_pretrained(path)`.

The folder holds two files:
- `model.safetensors`: every parameter of the model, float32, under its vidmix name: the nnx
  parameter path joined by "/" (`backbone/blocks/0/attn/qkv/kernel`, `head/classifier/bias`).
  Names are per layer (`blocks/0`, `blocks/1`, ...), also for layers that run as a scanned stack
  (their stacked parameters are saved one layer at a time), so the layout does not depend on it.
  The header's metadata carries the format marker too, so the file alone is recognised.
- `config.json`: `{"format": "vidmix", "format_version": 2, "family": "vit" | "vtn" | "pst",
  "preset": the preset the model was made from (or null), "config": every field of the model's
  config, "class_names": [...] (or null), "preprocessing": {...} (or null)}`.

The model's config holds its input normalisation (`pixel_mean`, `pixel_std`: the model takes uint8
clips and normalises them itself). `preprocessing` is what inference needs to turn a video file
into clips, so that `python main.py --mode=predict --model=FOLDER --video=x.mp4` runs from the
folder alone. Its keys (all optional; `num_frames` and `image_size` default to the model's):
`num_frames` (frames per view; -1: the whole video, for whole-video models), `image_size`,
`short_side` (decoded frames are resized to this short side first; null: kept), `sampling`
("dense" | "segment"), `stride` (dense sampling), `num_clips`, `num_crops` (views per video),
`combine` ("sum_logits" | "mean_softmax"). Format 1 folders kept `mean` and `std` in
`preprocessing`; `read_config` moves them into the config as `pixel_mean` and `pixel_std`.

`from_pretrained` rebuilds the model from the folder alone and fills it strictly: a missing,
unexpected or mis-shaped tensor is a `CheckpointMismatchError` naming it. Overrides apply to the
config (`dtype="bfloat16"`, `remat=True`, dropout rates, `frame_chunk`...); one that changes the
parameters (e.g. `num_classes`, `depth`, or `num_frames` of a model with one temporal embedding per
frame) is an error naming the parameters it changes: to start another model from the weights,
create it and call `vidmix.load_weights(model, folder, ignore=("head/*",))`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.checkpoints.errors import CheckpointError, CheckpointMismatchError
from vidmix.checkpoints.mapping import Source, assign, flat_params, param_paths

log = logging.getLogger(__name__)

FORMAT = "vidmix"
FORMAT_VERSION = 2  # 2: the normalisation moved from `preprocessing` into the model's config
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSING_KEYS = ("num_frames", "image_size", "short_side", "sampling", "stride",
                      "num_clips", "num_crops", "combine")
# format 1 preprocessing key -> the model config field it became
NORMALISATION_KEYS = {"mean": "pixel_mean", "std": "pixel_std"}


# ---- families ---------------------------------------------------------------------------------


def family_of(cfg) -> str:
    """The registered family name of a model config ("vit", "vtn", "pst")."""
    from vidmix.models.registry import family_for

    return family_for(cfg).name


def family_config(name: str) -> type:
    """The config class of the registered family `name`."""
    from vidmix.models.registry import FAMILIES

    if name not in FAMILIES:
        raise CheckpointError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name].config


# ---- reading the folder -----------------------------------------------------------------------


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_version(info: dict, where: str) -> dict:
    version = info.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{where}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{where} was written by a newer vidmix (format_version {version}); "
                              f"this one reads up to {FORMAT_VERSION}: upgrade vidmix")
    return info


def _safetensors_metadata(path: str) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return f.metadata() or {}
    except Exception:  # not a readable safetensors file: not ours (the reader reports it)
        return {}


def marker(path: str | os.PathLike) -> dict | None:
    """The `config.json` of a vidmix model folder at `path` (a folder, or its `model.safetensors`),
    or None when `path` is not one. A lone weight file gives `{"format": ..., "format_version":
    ...}` from its header."""
    path = os.fspath(path)
    if os.path.isdir(path):
        info = _read_json(os.path.join(path, CONFIG_FILE))
        if info is None or info.get("format") != FORMAT:
            return None
        return _check_version(info, os.path.join(path, CONFIG_FILE))
    if not (os.path.isfile(path) and path.endswith(".safetensors")):
        return None
    meta = _safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        return None
    sibling = marker(os.path.dirname(os.path.abspath(path)))
    if sibling is not None:
        return sibling
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        version = None
    return _check_version({"format": FORMAT, "format_version": version}, path)


def read_config(path: str | os.PathLike) -> dict:
    """The validated `config.json` of the model folder `path` (class names, preprocessing, ...)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a folder; a vidmix model folder holds "
                                f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    info = marker(path)
    if info is None:
        raise CheckpointError(
            f"{path} is not a vidmix model folder (no {CONFIG_FILE} with \"format\": "
            f"\"{FORMAT}\"); write one with vidmix.save_pretrained or python -m vidmix.convert; "
            "other checkpoints load into a model made with vidmix.create_model through "
            "vidmix.load_weights")
    for key in ("family", "config"):
        if key not in info:
            raise CheckpointError(f"{path}/{CONFIG_FILE} has no {key!r}")
    if not isinstance(info["config"], dict):
        raise CheckpointError(f"{path}/{CONFIG_FILE}: 'config' must be an object")
    return _upgrade(info) if info["format_version"] == 1 else info


def _upgrade(info: dict) -> dict:
    """A format 1 config.json as format 2: `preprocessing` mean / std become the model config's
    pixel_mean / pixel_std (absent: the config's defaults apply, as format 1 used the run
    config's)."""
    pre = dict(info.get("preprocessing") or {})
    config = dict(info["config"])
    for old, new in NORMALISATION_KEYS.items():
        if old in pre:
            config.setdefault(new, pre.pop(old))
    return {**info, "format_version": FORMAT_VERSION, "config": config,
            "preprocessing": pre if info.get("preprocessing") is not None else None}


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a folder's (or a lone) `model.safetensors`."""
    from vidmix.checkpoints.readers import read_safetensors

    path = os.fspath(path)
    file = os.path.join(path, WEIGHTS_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {path}")
    return read_safetensors(file)


def config_from_dict(info: dict, **overrides):
    """The model config a folder's config.json describes, with `overrides` applied."""
    from vidmix.models.config import check_keys

    cls = family_config(info["family"])
    fields = dict(info["config"])
    try:
        check_keys(fields, cls)
    except TypeError as e:
        raise CheckpointError(f"config.json holds fields a {cls.__name__} does not have (written "
                              f"by another vidmix version?): {e}") from None
    absent = [f.name for f in dataclasses.fields(cls) if f.name not in fields]
    if absent:
        log.info("config.json has no %s: their defaults apply", ", ".join(absent))
    check_keys(overrides, cls)
    return cls(**{**fields, **overrides})


# ---- writing ----------------------------------------------------------------------------------


def model_tensors(model: nnx.Module) -> dict[str, np.ndarray]:
    """{vidmix name: float32 numpy array} of every parameter of `model`."""
    out = {}
    for name, array in flat_params(model).items():  # stacked layers: one entry per layer
        value = np.asarray(array)
        if jnp.issubdtype(value.dtype, jnp.floating):  # bfloat16 / float16 included
            value = value.astype(np.float32)
        out[name] = np.ascontiguousarray(value)
    return out


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_preprocessing(preprocessing: dict, cfg, *, whole_video: bool = False) -> dict:
    """`preprocessing` validated, with `num_frames` and `image_size` defaulting to the model's.
    Only a whole-video model (VTN) takes views of another length than its `num_frames`."""
    moved = [k for k in NORMALISATION_KEYS if k in preprocessing]
    if moved:
        raise ValueError(
            f"preprocessing {' and '.join(moved)}: the normalisation is the model's own config "
            f"now; make the model with {', '.join(f'{NORMALISATION_KEYS[k]}=...' for k in moved)} "
            f"(create_model, or from_pretrained(..., pixel_mean=..., pixel_std=...))")
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ValueError(f"unknown preprocessing key(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(PREPROCESSING_KEYS)}")
    out = {"num_frames": cfg.num_frames, "image_size": cfg.image_size,
           **{k: _jsonable(v) for k, v in preprocessing.items()}}
    if _jsonable(out["image_size"]) != _jsonable(cfg.image_size):
        raise ValueError(f"preprocessing image_size {out['image_size']} differs from the model's "
                         f"{cfg.image_size}")
    if out["num_frames"] != cfg.num_frames and not whole_video:
        raise ValueError(f"preprocessing num_frames {out['num_frames']} differs from the model's "
                         f"{cfg.num_frames} (only whole-video models take other view lengths)")
    return out


def save_pretrained(model: nnx.Module, path: str | os.PathLike, class_names=None, *,
                    preset: str | None = None, preprocessing: dict | None = None,
                    overwrite: bool = False) -> str:
    """Write `model` as a folder at `path` (created): `model.safetensors` and `config.json`.

    class_names: one label per class (saved in config.json). preset: the preset the model was made
    from, recorded for reference (the folder does not need it). preprocessing: how videos become
    the model's input (keys in this module's docstring), for prediction from the folder alone.
    An existing folder that already holds a model is an error unless `overwrite=True`.
    Returns the folder's absolute path.
    """
    from safetensors.numpy import save_file

    cfg = model.config
    info = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": family_of(cfg),
            "preset": preset,
            "config": {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}}
    if class_names is not None:
        class_names = [str(n) for n in class_names]
        if len(class_names) != cfg.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {cfg.num_classes} "
                             "classes")
    info["class_names"] = class_names
    whole_video = getattr(model, "whole_video", False)
    info["preprocessing"] = (None if preprocessing is None else
                             check_preprocessing(dict(preprocessing), cfg, whole_video=whole_video))
    json.dumps(info, allow_nan=False)  # fails here, before anything is written

    path = os.path.abspath(os.fspath(path))
    files = [os.path.join(path, WEIGHTS_FILE), os.path.join(path, CONFIG_FILE)]
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} exists and is not a folder")
    if not overwrite and any(os.path.exists(f) for f in files):
        raise FileExistsError(f"{path} already holds a model; choose a new folder (or "
                              "overwrite=True)")
    tensors = model_tensors(model)
    bad = [n for n, v in tensors.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"parameters with NaN or Inf values: {', '.join(bad)}")
    os.makedirs(path, exist_ok=True)
    tmp = [f + ".tmp" for f in files]
    save_file(tensors, tmp[0], metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    with open(tmp[1], "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    for t, f in zip(tmp, files, strict=True):
        os.replace(t, f)
    return path


# ---- loading ----------------------------------------------------------------------------------


def _identity(params) -> dict[str, Source]:
    return {name: Source((name,), lambda a, shape: a) for name in params}


def load_folder(model: nnx.Module, path: str | os.PathLike, *, ignore=()) -> nnx.Module:
    """Fill `model` from a vidmix folder (or its `model.safetensors`), name by name, strictly.

    `ignore` globs match model parameters (kept as they are) and the folder's tensors (left
    unused); the names are the same on both sides, so `ignore=("head/*",)` keeps a fresh head.
    """
    info = marker(path)
    if info is not None and "family" in info:
        saved, mine = info["family"], family_of(model.config)
        if saved != mine:
            raise CheckpointError(f"{os.fspath(path)} holds a {saved!r} model; this model is "
                                  f"{mine!r} ({type(model.config).__name__})")
    return load_folder_tensors(model, read_weights(path), ignore=ignore,
                               source=f"{os.fspath(path)} ({FORMAT})")


def load_folder_tensors(model: nnx.Module, tensors: dict, *, ignore=(), source: str = ""):
    """Fill `model` from {vidmix name: array}, name by name, strictly (`mapping.assign`)."""
    return assign(model, tensors, _identity(param_paths(model)), ignore=ignore, source=source)


def from_pretrained(path: str | os.PathLike, *, rngs: nnx.Rngs | None = None, **overrides):
    """The model saved in folder `path` by `save_pretrained`, rebuilt from the folder alone.

    overrides: config fields to change, e.g. `dtype="bfloat16"`, `remat=True`; one that changes
    any parameter's name or shape is a `CheckpointMismatchError` naming the overrides and the
    parameters. rngs: the RNG streams of dropout / drop-path (default `nnx.Rngs(0)`).
    """
    from vidmix.models.registry import build_model

    path = os.fspath(path)
    info = read_config(path)
    cfg = config_from_dict(info, **overrides)
    model = build_model(cfg, rngs=rngs)
    tensors = read_weights(path)
    try:
        return load_folder_tensors(model, tensors, source=f"{path} ({FORMAT})")
    except CheckpointMismatchError as e:
        if not overrides:
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise CheckpointMismatchError(
            e.missing, e.unexpected, e.mismatched,
            source=(f"{path} with the override(s) {given}, which change the model's "
                    "parameters (from_pretrained only applies overrides that keep every "
                    "parameter: dtype, remat, dropout rates, ...; to start another model from "
                    "these weights, make it with vidmix.create_model and call "
                    "vidmix.load_weights(model, folder, ignore=...))")) from None


__all__ = ["FORMAT", "FORMAT_VERSION", "PREPROCESSING_KEYS", "family_of", "from_pretrained",
           "load_folder", "load_folder_tensors", "marker", "read_config", "save_pretrained"]

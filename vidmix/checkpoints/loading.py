"""`load_weights`: read a weight file, recognise its layout, assign it strictly to a model."""

from __future__ import annotations

import os

from vidmix.checkpoints import pretrained
from vidmix.checkpoints.errors import CheckpointError
from vidmix.checkpoints.formats import FORMATS, detect_format
from vidmix.checkpoints.mapping import assign, param_paths
from vidmix.checkpoints.readers import read_tensors
from vidmix.models.registry import family_for


def _conversion(cfg):
    """The registered weight conversion of `cfg`'s family (`Family.convert`)."""
    try:
        convert = family_for(cfg).conversion()
    except TypeError:
        convert = None
    if convert is None:
        raise CheckpointError(f"no checkpoint conversion for {type(cfg).__name__} models")
    return convert


def load_weights(model, path: str | os.PathLike, *, format: str = "auto", ignore=(),
                 inflate: str = "average"):
    """Load the weights at `path` into `model` (in place) and return it.

    Reads Google ViT `.npz` (vision_transformer, Linen and big_vision layouts), timm and Hugging
    Face ViT weights (`.safetensors`, `.pth`, `.bin`), and TimeSformer (official `.pyth`, Hugging
    Face) and XViT (official `.pth`) video checkpoints, and vidmix's own model folders
    (`vidmix.save_pretrained`, recognised by their config.json; read name for name, so the model
    must have the folder's parameters, or `ignore` the others). What an image checkpoint lacks is
    initialised as the papers do (see `vidmix.checkpoints.families.vit`); position embeddings are
    resized to the model's grid; a head of another kind or class count is replaced by a new one
    (logged).

    format: "auto" (the one format of `FORMATS` that recognises the file's keys) or a name in
    `FORMATS`. ignore: glob patterns of model parameters to leave as they are (e.g. "head/*") and
    of source tensors to leave unused.
    inflate: how a 2-D patch kernel becomes a tubelet kernel, "average" or "central".
    Anything else that does not map one-to-one raises `CheckpointMismatchError` naming every key,
    and the model is left untouched.
    """
    if format not in ("auto", *FORMATS):
        raise ValueError(f"unknown checkpoint format {format!r}; known: {', '.join(FORMATS)}")
    if format == "vidmix" or (format == "auto" and pretrained.marker(path) is not None):
        return pretrained.load_folder(model, path, ignore=ignore)
    tensors = read_tensors(path)
    if format == "auto":
        format = detect_format(tensors.keys())
    tensors = FORMATS[format].to_canonical(tensors)
    params = param_paths(model)
    convert = _conversion(model.config)
    mapping, dropped = convert(model.config, tensors, params, inflate=inflate)
    return assign(model, tensors, mapping, ignore=ignore, dropped=dropped,
                  source=f"{os.fspath(path)} ({format})")

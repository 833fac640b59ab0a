"""`load_weights`: read a weight file, recognise its layout, assign it strictly to a model."""

from __future__ import annotations

import os
from types import ModuleType

from vidmix.checkpoints import hf_timesformer
from vidmix.checkpoints.errors import CheckpointError
from vidmix.checkpoints.mapping import assign, param_paths
from vidmix.checkpoints.readers import read_tensors

# Each format module offers detect(keys), normalise(tensors) and mapping(cfg).
FORMATS: dict[str, ModuleType] = {
    "hf_timesformer": hf_timesformer,
}


def detect_format(keys) -> str:
    found = [name for name, fmt in FORMATS.items() if fmt.detect(keys)]
    if not found:
        sample = ", ".join(sorted(keys)[:8])
        raise CheckpointError(f"unrecognised checkpoint layout (first keys: {sample}); known "
                              f"formats: {', '.join(FORMATS)}")
    return found[0]


def load_weights(model, path: str | os.PathLike, *, format: str = "auto", ignore=()):
    """Load the weights at `path` into `model` (in place) and return it.

    format: "auto" (recognised from the file's keys) or one of `FORMATS`. ignore: glob patterns of
    model parameters to leave as they are (e.g. "head/*" for a new classifier) and of source
    tensors to leave unused. Anything else that does not map one-to-one raises
    `CheckpointMismatchError` naming every key, and the model is left untouched.
    """
    tensors = read_tensors(path)
    if format == "auto":
        format = detect_format(tensors.keys())
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; known: {', '.join(FORMATS)}")
    fmt = FORMATS[format]
    tensors = fmt.normalise(tensors)
    params = param_paths(model)
    mapping = {k: v for k, v in fmt.mapping(model.config).items() if k in params}
    return assign(model, tensors, mapping, ignore=ignore, source=os.fspath(path))

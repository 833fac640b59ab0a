"""Saving and restoring a model's parameters as an orbax checkpoint."""

from __future__ import annotations

import os

import orbax.checkpoint as ocp
from flax import nnx


def save_params(model: nnx.Module, directory: str | os.PathLike) -> str:
    """Write the model's parameters to `directory` (must not exist yet); returns its path."""
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; choose a new output folder")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, nnx.state(model, nnx.Param))
    checkpointer.wait_until_finished()
    return path


def restore_params(model: nnx.Module, directory: str | os.PathLike) -> nnx.Module:
    """Fill `model`'s parameters from an orbax checkpoint written by `save_params`."""
    path = os.path.abspath(os.fspath(directory))
    abstract = nnx.state(model, nnx.Param)
    nnx.update(model, ocp.StandardCheckpointer().restore(path, abstract))
    return model

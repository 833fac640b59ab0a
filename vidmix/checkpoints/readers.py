"""Reading weight files into flat {name: numpy array} dicts."""

from __future__ import annotations

import os

import numpy as np

from vidmix.checkpoints.errors import CheckpointError


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a `.safetensors` file, read with numpy (no PyTorch needed)."""
    from safetensors.numpy import load_file

    try:
        return dict(load_file(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e


READERS = {".safetensors": read_safetensors}


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weight file, chosen by its extension (a directory: its `model.safetensors`)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise CheckpointError(f"cannot read {path}: unknown file type {ext!r}; readable: "
                              f"{', '.join(READERS)}")
    return READERS[ext](path)

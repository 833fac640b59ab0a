"""Reading weight files into flat {name: numpy array} dicts, without PyTorch or TensorFlow."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from vidmix.checkpoints.errors import CheckpointError


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a `.safetensors` file, read with numpy."""
    from safetensors.numpy import load_file

    try:
        return dict(load_file(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e


def read_npz(path: str) -> dict[str, np.ndarray]:
    """A flat `.npz` (Google ViT files); pickled objects are refused."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"cannot read {path} as npz: {e}") from e


def read_torch(path: str) -> dict[str, np.ndarray]:
    """A PyTorch pickle (`.pth`, `.bin`, `.pyth`, `.pt`): tensors only, no arbitrary objects."""
    from vidmix.checkpoints.torch_pickle import read_torch_file

    return read_torch_file(path)


READERS = {".safetensors": read_safetensors, ".npz": read_npz, ".pth": read_torch,
           ".bin": read_torch, ".pyth": read_torch, ".pt": read_torch}
# Wrappers around the weights in training checkpoints: kept, and stripped.
WRAPPERS = ("model_state.", "state_dict.", "model_ema.", "module.")


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weight file, chosen by its extension (a folder: its HF `model.safetensors`/`.bin`).

    Training checkpoints keep the weights under `model_state` (PySlowFast) or `state_dict`:
    then only those are returned, unwrapped (optimizer state and the rest are not weights).
    """
    path = os.fspath(path)
    if os.path.isdir(path):  # a Hugging Face model folder
        found = [os.path.join(path, f) for f in ("model.safetensors", "pytorch_model.bin")
                 if os.path.exists(os.path.join(path, f))]
        if not found:
            raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")
        path = found[0]
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise CheckpointError(f"cannot read {path}: unknown file type {ext!r}; readable: "
                              f"{', '.join(READERS)}")
    tensors = READERS[ext](path)
    for wrapper in WRAPPERS:
        inner = {k[len(wrapper):]: v for k, v in tensors.items() if k.startswith(wrapper)}
        if inner:
            tensors = inner
    return tensors

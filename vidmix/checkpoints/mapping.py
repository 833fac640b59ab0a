"""Strict, all-or-nothing assignment of converted tensors to a model's parameters.

A checkpoint format is described by a mapping {model parameter path: (source key, transform)}.
`assign` checks every parameter and every source tensor, reports all problems together, and only
then writes into the model, so a failed load leaves the model untouched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.checkpoints.errors import CheckpointMismatchError

Transform = Callable[[np.ndarray], np.ndarray]
Mapping = dict[str, tuple[str, Transform]]


# Transforms from PyTorch layouts --------------------------------------------------------------
def identity(x):
    return x


def linear_kernel(w):
    """torch Linear weight (out, in) -> Dense kernel (in, out)."""
    return w.T


def conv_kernel(w):
    """torch Conv2d weight (out, in, kh, kw) -> (kh, kw, in, out); Conv3d: time first too."""
    return np.moveaxis(w, (0, 1), (-1, -2))


def squeeze_leading(x):
    """(1, ..., D) -> (..., D): PyTorch keeps a batch axis on tokens and embeddings."""
    while x.ndim > 1 and x.shape[0] == 1:
        x = x[0]
    return x


# Model parameters ----------------------------------------------------------------------------
def param_paths(model: nnx.Module) -> dict[str, tuple]:
    """{'backbone/blocks/0/attn/qkv/kernel': shape, ...} for every parameter of the model."""
    flat_state = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {_name(p): tuple(v.shape) for p, v in flat_state}


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def assign(model: nnx.Module, tensors: dict[str, np.ndarray], mapping: Mapping, *,
           ignore: Iterable[str] = (), source: str = "") -> nnx.Module:
    """Fill every model parameter from `tensors` through `mapping`, strictly.

    `ignore` holds glob patterns: a matching model parameter keeps its current value, and a
    matching source tensor is deliberately unused. Anything else left over is an error.
    """
    ignore = tuple(ignore)
    flat_state = nnx.to_flat_state(nnx.state(model, nnx.Param))
    flat = {_name(p): v for p, v in flat_state}
    unknown = sorted(set(mapping) - set(flat))
    if unknown:  # a converter bug, not a user error
        raise KeyError(f"mapping names parameters the model does not have: {unknown}")

    missing, mismatched, new, used = [], [], {}, set()
    for name, var in flat.items():
        if _matches(name, ignore):
            continue
        if name not in mapping:
            missing.append(f"{name} (no source for it)")
            continue
        key, fn = mapping[name]
        if key not in tensors:
            missing.append(f"{name} <- {key}")
            continue
        used.add(key)
        value = np.asarray(fn(np.asarray(tensors[key])))
        if value.shape != tuple(var.shape):
            mismatched.append((f"{key} -> {name}", value.shape, tuple(var.shape)))
            continue
        new[name] = value
    unexpected = sorted(k for k in tensors if k not in used and not _matches(k, ignore))
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, source=source)

    updated = {p: jnp.asarray(new[_name(p)], dtype=v.dtype) for p, v in flat_state
               if _name(p) in new}
    nnx.update(model, nnx.from_flat_state(updated))
    return model

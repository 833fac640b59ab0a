"""Strict, all-or-nothing assignment of converted tensors to a model's parameters.

A conversion is a mapping {model parameter path: `Source`} over canonical tensor names.
`assign` checks every parameter and every source tensor, reports all problems together, and only
then writes into the model, so a failed load leaves the model untouched.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.checkpoints.errors import CheckpointMismatchError

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one model parameter comes from: `fn(*tensors[keys], shape=param_shape)`.

    No keys: an initialisation the papers prescribe (zeros), or, with `fn=None`, the parameter
    keeps its fresh initialisation (a new head).
    """

    keys: tuple[str, ...]
    fn: Callable | None = None
    note: str = ""


def take(key: str, fn: Transform | None = None) -> Source:
    """The tensor `key` as is, or passed through `fn` (e.g. `linear_kernel`)."""
    return Source((key,), (lambda a, shape: fn(a)) if fn else (lambda a, shape: a))


def zeros(note: str) -> Source:
    """A parameter initialised to zeros (no source tensor); `note` says why."""
    return Source((), lambda shape: np.zeros(shape, np.float32), note)


def keep(note: str) -> Source:
    """A parameter that keeps its fresh initialisation (e.g. a new head); `note` says why."""
    return Source((), None, note)


Mapping = dict[str, Source]


# Transforms from PyTorch layouts --------------------------------------------------------------
def linear_kernel(w):
    """torch Linear weight (out, in) -> Dense kernel (in, out)."""
    return w.T


def conv_kernel(w):
    """torch Conv2d weight (out, in, kh, kw) -> (kh, kw, in, out); Conv3d: time first too."""
    return np.moveaxis(w, (0, 1), (-1, -2))


def torch_linear(dst: str, src: str, bias: bool = True) -> Mapping:
    """A Dense at `dst` from the torch Linear `src` (weight transposed, bias as is)."""
    m = {f"{dst}/kernel": take(f"{src}.weight", linear_kernel)}
    if bias:
        m[f"{dst}/bias"] = take(f"{src}.bias")
    return m


def torch_norm(dst: str, src: str) -> Mapping:
    """A LayerNorm at `dst` from the torch LayerNorm `src`."""
    return {f"{dst}/scale": take(f"{src}.weight"), f"{dst}/bias": take(f"{src}.bias")}


def squeeze_leading(x):
    """(1, ..., n, D) -> (n, D): PyTorch keeps batch axes on tokens and embeddings."""
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    return x


# Model parameters ----------------------------------------------------------------------------
# Layers run as a scanned stack (`vidmix.models.stack.LayerStack`) keep their parameters stacked
# on a leading layer axis, at `<stack>/stacked/<rest>` (or `<stack>/stacked/<k>/<rest>` when the
# stack scans groups of layers; the layers after the last whole group at `<stack>/tail/<k>/<rest>`,
# unstacked); checkpoint code names them per layer, `<stack>/<i>/<rest>` with the layer's own
# shape, as an unrolled model would (`LayerStack.layer_paths`).


def _stacks(model: nnx.Module) -> dict[tuple, nnx.Module]:
    """{path of every LayerStack in the model: the stack}."""
    from vidmix.models.stack import LayerStack

    return {tuple(path): node for path, node in nnx.iter_graph(model)
            if isinstance(node, LayerStack)}


def _layer_names(path: tuple, stacks: dict[tuple, nnx.Module]):
    """[(per-layer name, index on the layer axis)] of a parameter path, one per layer it holds;
    [(name, None)] if it has no layer axis."""
    for prefix, stack in stacks.items():
        n = len(prefix)
        if path[:n] == prefix and len(path) > n:
            return [(_name((*prefix, *name)), i) for name, i in stack.layer_paths(path[n:])]
    return [(_name(path), None)]


def flat_params(model: nnx.Module) -> dict[str, jax.Array]:
    """{'backbone/blocks/0/attn/qkv/kernel': array, ...}: every parameter under its per-layer
    name (stacked layers split into their layers)."""
    stacks = _stacks(model)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        for name, i in _layer_names(path, stacks):
            out[name] = var[...] if i is None else var[...][i]
    return out


def unstack(model: nnx.Module, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tensors named by `model`'s own state paths (stacked layers at `.../stacked/...`, e.g. an
    orbax train state) renamed per layer, as `flat_params` names them."""
    stacks = _stacks(model)
    out = {}
    for key, value in tensors.items():
        path = tuple(int(p) if p.isdigit() else p for p in key.split("/"))
        for name, i in _layer_names(path, stacks):
            out[name] = value if i is None else value[i]
    return out


def param_paths(model: nnx.Module) -> dict[str, tuple]:
    """{'backbone/blocks/0/attn/qkv/kernel': shape, ...} for every parameter of the model (per
    layer, also for stacked layers)."""
    return {name: tuple(a.shape) for name, a in flat_params(model).items()}


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def assign(model: nnx.Module, tensors: dict[str, np.ndarray], mapping: Mapping, *,
           ignore: Iterable[str] = (), dropped: dict[str, str] | None = None,
           source: str = "") -> nnx.Module:
    """Fill every model parameter from `tensors` through `mapping`, strictly.

    `dropped` names source tensors the conversion deliberately leaves unused, with the reason
    (logged). `ignore` holds the user's glob patterns: a matching model parameter keeps its
    current value, a matching source tensor is unused. Anything else left over is an error, and
    on error the model is not modified.
    """
    ignore, dropped = tuple(ignore), dict(dropped or {})
    flat = flat_params(model)
    unknown = sorted(set(mapping) - set(flat))
    if unknown:  # a converter bug, not a user error
        raise KeyError(f"mapping names parameters the model does not have: {unknown}")

    missing, mismatched, new, used, notes = [], [], {}, set(), []
    for name, current in flat.items():
        if _matches(name, ignore):
            continue
        if name not in mapping:
            missing.append(f"{name} (no source for it)")
            continue
        src = mapping[name]
        if src.note:
            notes.append(f"{name}: {src.note}")
        absent = [k for k in src.keys if k not in tensors]
        if absent:
            missing.append(f"{name} <- {', '.join(absent)}")
            continue
        used.update(src.keys)
        if src.fn is None:
            continue
        shape = tuple(current.shape)
        value = np.asarray(src.fn(*(np.asarray(tensors[k]) for k in src.keys), shape=shape))
        if value.shape != shape:
            mismatched.append((f"{', '.join(src.keys) or 'init'} -> {name}", value.shape, shape))
            continue
        new[name] = value
    unexpected = sorted(k for k in tensors
                        if k not in used and k not in dropped and not _matches(k, ignore))
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, source=source)

    for note in notes:
        log.info("%s: %s", source, note)
    reasons = {}
    for key, why in dropped.items():
        if key in tensors and key not in used:
            reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        log.warning("%s: not used (%s): %s", source, why, ", ".join(sorted(keys)))
    stacks, updated = _stacks(model), {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = _layer_names(path, stacks)
        if not any(name in new for name, _ in names):
            continue
        if names[0][1] is None:
            updated[path] = jnp.asarray(new[names[0][0]], dtype=var.dtype)
        else:  # a stacked parameter: each layer from the file, or as it was (ignored)
            updated[path] = jnp.stack([jnp.asarray(new[name], dtype=var.dtype) if name in new
                                       else var[...][i] for name, i in names])
    nnx.update(model, nnx.from_flat_state(updated))
    return model

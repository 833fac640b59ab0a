"""From canonical Swin tensor names (official Swin / timm < 0.9, see `formats/swin.py`) to a PST.

Image -> video initialisation as in the PST release: the 2-D patch-embedding kernel is repeated
over its `temporal_patch` time steps and divided by their number (`inflate="average"`, so a still
clip gives the image features; "central" puts it on the middle step), and each 2-D relative
position table is tiled over the temporal offsets of the model's table (a 2-D table for another
window size is first resized bicubically). A video checkpoint's kernel and tiled tables are taken
as they are. A head with another class count is replaced by a fresh one and reported as unused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vidmix.checkpoints.families.vit import INFLATIONS, patch_kernel, resize_grid
from vidmix.checkpoints.mapping import (
    Mapping,
    Source,
    keep,
    linear_kernel,
    squeeze_leading,
    take,
    torch_linear,
    torch_norm,
    zeros,
)


def _table(src: str, window_side: int) -> Source:
    """The model's (2S-1)(2w-1)^2-row table from a video table of that size (as is) or from a
    2-D (2w'-1)^2-row table (resized to side 2w-1 if needed, repeated for every temporal offset,
    offset-major as in the release)."""

    def fn(a, shape):
        rows, heads = shape
        slices = rows // window_side ** 2
        if a.shape[0] == rows:
            return a
        side = int(round(np.sqrt(a.shape[0])))
        if side * side != a.shape[0]:
            return a  # neither a 2-D table nor the model's layout: reported as a shape mismatch
        if side != window_side:  # another window size: resize the 2-D table bicubically
            grid = jnp.asarray(a.reshape(side, side, heads), jnp.float32)
            a = np.asarray(jax.image.resize(grid, (window_side, window_side, heads), "bicubic"))
            a = a.reshape(window_side ** 2, heads)
        return np.tile(a, (slices, 1))  # the same 2-D table for every temporal offset
    return Source((src,), fn)



def _block(dst: str, src: str, qkv_bias: bool, window_side: int) -> Mapping:
    return {**torch_norm(f"{dst}/norm1", f"{src}.norm1"),
            **torch_linear(f"{dst}/attn/qkv", f"{src}.attn.qkv", qkv_bias),
            **torch_linear(f"{dst}/attn/proj", f"{src}.attn.proj"),
            f"{dst}/attn/relative_position_bias_table":
                _table(f"{src}.attn.relative_position_bias_table", window_side),
            **torch_norm(f"{dst}/norm2", f"{src}.norm2"),
            **torch_linear(f"{dst}/mlp/fc1", f"{src}.mlp.fc1"),
            **torch_linear(f"{dst}/mlp/fc2", f"{src}.mlp.fc2")}


HEAD_KEYS = ("head.",)


def convert(cfg, tensors: dict, params, *, inflate: str = "average"):
    """(mapping, dropped): how to fill a PST of config `cfg` (parameter names `params`) from
    canonical Swin `tensors`."""
    from vidmix.models.swin import stage_resolutions, stage_window

    if inflate not in INFLATIONS:
        raise ValueError(f"inflate must be one of {INFLATIONS}, got {inflate!r}")
    m: Mapping = {
        "backbone/patch_embed/proj/kernel": take(
            "patch_embed.proj.weight", lambda w: patch_kernel(w, cfg.temporal_patch, inflate)),
        "backbone/patch_embed/proj/bias": take("patch_embed.proj.bias"),
        **torch_norm("backbone/patch_embed/norm", "patch_embed.norm"),
        **torch_norm("backbone/norm", "norm"),
        # Swin's `ape` (1, n * n, C) -> (h, w, C), resized bicubically to the model's grid as a
        # ViT's positions are; only read when the model has one
        "backbone/absolute_pos_embed": take(
            "absolute_pos_embed",
            lambda a: resize_grid(squeeze_leading(a), cfg.grid).reshape(*cfg.grid, -1)),
        # no Swin file has a row per time step: zeros leave every time step as the file has it
        "backbone/temporal_pos_embed": zeros("Swin checkpoints have no temporal positions"),
    }
    resolutions = stage_resolutions(cfg.grid, len(cfg.depths))
    for i, depth in enumerate(cfg.depths):
        side = 2 * stage_window(resolutions[i], cfg.window_size)[0] - 1
        for j in range(depth):
            m.update(_block(f"backbone/layers/{i}/blocks/{j}", f"layers.{i}.blocks.{j}",
                            cfg.qkv_bias, side))
        m.update(torch_norm(f"backbone/layers/{i}/downsample/norm", f"layers.{i}.downsample.norm"))
        m[f"backbone/layers/{i}/downsample/reduction/kernel"] = take(
            f"layers.{i}.downsample.reduction.weight", linear_kernel)

    why = "the checkpoint has no classifier: new head"
    if "head.weight" in tensors:
        classes = tensors["head.weight"].shape[0]
        if classes == cfg.num_classes:
            m.update(torch_linear("head/classifier", "head"))
        else:
            why = (f"the checkpoint's classifier has {classes} classes, the model "
                   f"{cfg.num_classes}: new classifier")
    m.update({n: keep(why) for n in params if n.startswith("head/") and n not in m})
    dropped = {k: why for k in tensors if k.startswith(HEAD_KEYS)}
    return {n: s for n, s in m.items() if n in params}, dropped


__all__ = ["convert"]

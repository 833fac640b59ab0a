"""From canonical (timm / official-release) tensor names to a vidmix model, image or video.

Every format reader renames its file into these names, in PyTorch layouts:
- ViT: `cls_token`, `pos_embed` (N+1, D; row 0 = CLS), `patch_embed.proj.{weight,bias}`
  (D, 3, P, P) or (D, 3, t, P, P), `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
  mlp.fc2}.{weight,bias}` (qkv rows q, k, v), `norm.*`, `head.*`, `pre_logits.fc.*`;
- TimeSformer adds `time_embed` (T, D) and `blocks.{i}.{temporal_norm1, temporal_attn.qkv,
  temporal_attn.proj, temporal_fc}.*`;
- XViT adds `time_embed` (its `temp_embed`) and the TA head `consensus.{cls_token,
  temporal_encoder.0.*, mlp_head.0, mlp_head.1, mlp_head.4}.*`.

What a source lacks is initialised as the papers do: temporal embedding zeros; TimeSformer's
temporal branch copied from the spatial one with `temporal_fc` zero (the model starts as the image
model); a new head when the checkpoint has none of the model's kind or another class count.
Position embeddings are resized bicubically over the 2-D grid (CLS row kept), temporal embeddings
by nearest neighbour over time, and 2-D patch kernels inflated over a tubelet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vidmix.checkpoints.mapping import (
    Mapping,
    conv_kernel,
    keep,
    squeeze_leading,
    take,
    torch_linear,
    torch_norm,
    zeros,
)
from vidmix.models.config import VideoViTConfig

INFLATIONS = ("average", "central")


def resize_grid(patches: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(n*n, D) -> (gh*gw, D): a square grid of position rows resized bicubically."""
    n = int(round(np.sqrt(len(patches))))
    if n * n != len(patches):
        raise ValueError(f"position embedding of {len(patches)} patches is not a square grid")
    if (n, n) == tuple(grid):
        return patches
    grid_pos = jnp.asarray(patches.reshape(n, n, -1), jnp.float32)
    resized = jax.image.resize(grid_pos, (*grid, grid_pos.shape[-1]), method="bicubic")
    return np.asarray(resized).reshape(grid[0] * grid[1], -1)


def resize_pos_embed(pos: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(1 + n*n, D) -> (1 + gh*gw, D): bicubic over the patch grid, the CLS row unchanged."""
    return np.concatenate([pos[:1], resize_grid(pos[1:], grid)], axis=0)


def resize_time_embed(emb: np.ndarray, slots: int) -> np.ndarray:
    """(E, D) -> (slots, D), nearest neighbour (as TimeSformer does when T changes)."""
    if len(emb) == slots:
        return emb
    return emb[np.floor(np.arange(slots) * len(emb) / slots).astype(int)]


def patch_kernel(weight: np.ndarray, tubelet: int, inflate: str) -> np.ndarray:
    """torch conv weight -> vidmix kernel; a 2-D kernel is inflated over a tubelet of frames."""
    kernel = conv_kernel(weight)  # (P, P, 3, D) or (t, P, P, 3, D)
    if tubelet == 1 or kernel.ndim == 5:
        return kernel
    if inflate == "average":  # the tubelet sees the frame average: same response on a still clip
        return np.repeat(kernel[None] / tubelet, tubelet, axis=0)
    inflated = np.zeros((tubelet, *kernel.shape), kernel.dtype)  # "central frame" (ViViT)
    inflated[tubelet // 2] = kernel
    return inflated



def _block(dst: str, src: str, qkv_bias: bool = True) -> Mapping:
    return {**torch_norm(f"{dst}/norm1", f"{src}.norm1"),
            **torch_linear(f"{dst}/attn/qkv", f"{src}.attn.qkv", qkv_bias),
            **torch_linear(f"{dst}/attn/proj", f"{src}.attn.proj"),
            **torch_norm(f"{dst}/norm2", f"{src}.norm2"),
            **torch_linear(f"{dst}/mlp/fc1", f"{src}.mlp.fc1"),
            **torch_linear(f"{dst}/mlp/fc2", f"{src}.mlp.fc2")}


def _temporal_branch(dst: str, src: str, keys) -> Mapping:
    if f"{src}.temporal_attn.qkv.weight" in keys:  # a video checkpoint
        return {**torch_norm(f"{dst}/temporal_norm", f"{src}.temporal_norm1"),
                **torch_linear(f"{dst}/temporal_attn/qkv", f"{src}.temporal_attn.qkv"),
                **torch_linear(f"{dst}/temporal_attn/proj", f"{src}.temporal_attn.proj"),
                **torch_linear(f"{dst}/temporal_fc", f"{src}.temporal_fc")}
    return {**torch_norm(f"{dst}/temporal_norm", f"{src}.norm1"),  # TimeSformer's image init
            **torch_linear(f"{dst}/temporal_attn/qkv", f"{src}.attn.qkv"),
            **torch_linear(f"{dst}/temporal_attn/proj", f"{src}.attn.proj"),
            f"{dst}/temporal_fc/kernel": zeros("temporal_fc starts at zero"),
            f"{dst}/temporal_fc/bias": zeros("temporal_fc starts at zero")}


HEAD_KEYS = ("head.", "pre_logits.", "consensus.", "new_fc.")


def _head(cfg: VideoViTConfig, keys) -> tuple[Mapping, str]:
    """The head's mapping, or a fresh head; returns (mapping, why the source head is unused)."""
    fresh = lambda why: ({}, why)
    if cfg.head == "temporal_attention":
        if "consensus.cls_token" not in keys:
            return fresh("the checkpoint has no temporal-attention head: new head")
        m = {"head/token": take("consensus.cls_token", lambda x: x.reshape(-1)),
             **_block("head/block", "consensus.temporal_encoder.0", qkv_bias=False),
             **torch_norm("head/norm", "consensus.mlp_head.0"),
             **torch_linear("head/pre_logits", "consensus.mlp_head.1"),
             **torch_linear("head/classifier", "consensus.mlp_head.4"),
             "head/positions": zeros("the release's head has no positions: zeros keep its "
                                     "function")}
        return m, "the release's unused per-frame classifier"
    if "head.weight" not in keys:
        return fresh("the checkpoint has no classifier: new head")
    return torch_linear("head/classifier", "head"), "not part of this model's head"


def convert(cfg: VideoViTConfig, tensors: dict, params, *, inflate: str = "average"):
    """(mapping, dropped): how to fill a video ViT of config `cfg`, whose parameter names are
    `params`, from canonical `tensors`."""
    if inflate not in INFLATIONS:
        raise ValueError(f"inflate must be one of {INFLATIONS}, got {inflate!r}")
    keys = set(tensors)
    m: Mapping = {
        "backbone/patch_embed/kernel": take("patch_embed.proj.weight",
                                            lambda w: patch_kernel(w, cfg.tubelet_size, inflate)),
        "backbone/patch_embed/bias": take("patch_embed.proj.bias"),
        "backbone/cls_token": take("cls_token", lambda x: x.reshape(-1)),
        "backbone/pos_embed": take("pos_embed",
                                   lambda x: resize_pos_embed(squeeze_leading(x), cfg.grid)),
        "backbone/temporal_embed": (
            take("time_embed", lambda x: resize_time_embed(squeeze_leading(x), cfg.embed_slots))
            if "time_embed" in keys else zeros("temporal embedding starts at zero")),
        **torch_norm("backbone/norm", "norm"),
    }
    for i in range(cfg.depth):
        m.update(_block(f"backbone/blocks/{i}", f"blocks.{i}", cfg.qkv_bias))
        if cfg.attention == "divided":
            m.update(_temporal_branch(f"backbone/blocks/{i}", f"blocks.{i}", keys))
    head, why = _head(cfg, keys)
    classifier = head.get("head/classifier/kernel")
    source_classes = classifier and tensors[classifier.keys[0]].shape[0]
    if classifier and source_classes != cfg.num_classes:
        why = (f"the checkpoint's classifier has {source_classes} classes, the model "
               f"{cfg.num_classes}: new classifier")
        head = {n: s for n, s in head.items() if not n.startswith("head/classifier/")}
    m.update(head)
    m.update({n: keep(why) for n in params if n.startswith("head/") and n not in m})
    dropped = {k: why for k in keys if k.startswith(HEAD_KEYS)}
    return {n: s for n, s in m.items() if n in params}, dropped


__all__ = ["INFLATIONS", "convert", "patch_kernel", "resize_grid", "resize_pos_embed",
           "resize_time_embed"]

"""Google ViT `.npz` files: vision_transformer (original and Linen names) and big_vision.

Keys are joined by `/`. Original files number the sub-modules of a block across classes
(`LayerNorm_0`, `MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`), Linen files per
class (`LayerNorm_0`, `MultiHeadDotProductAttention_0`, `LayerNorm_1`, `MlpBlock_0`). big_vision
files use Linen names, may sit under `params/`, keep `pos_embedding` at the top level without a
CLS row, and may stack all blocks on a leading depth axis (`Transformer/encoderblock/...`).
"""

from __future__ import annotations

import re

import numpy as np

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import strip_prefix

_BLOCK_NAMES = {  # role -> (original name, Linen name)
    "norm1": ("LayerNorm_0", "LayerNorm_0"),
    "attn": ("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"),
    "norm2": ("LayerNorm_2", "LayerNorm_1"),
    "mlp": ("MlpBlock_3", "MlpBlock_0"),
}


def detect(keys) -> bool:
    """Whether the tensor names `keys` are a Google ViT layout (`Transformer/...`, maybe under
    `params/`)."""
    return any(k.removeprefix("params/").startswith("Transformer/") for k in keys)


def _unscan(tensors: dict) -> dict:
    """Stacked blocks `Transformer/encoderblock/x` (depth, ...) -> `encoderblock_{i}/x`."""
    out = {}
    for key, value in tensors.items():
        if key.startswith("Transformer/encoderblock/"):
            rest = key[len("Transformer/encoderblock/"):]
            for i in range(value.shape[0]):
                out[f"Transformer/encoderblock_{i}/{rest}"] = value[i]
        else:
            out[key] = value
    return out


def _linear(t: dict, src: str, dst: str, out: dict) -> None:
    if f"{src}/kernel" in t:
        out[f"{dst}.weight"] = t.pop(f"{src}/kernel").T
    if f"{src}/bias" in t:
        out[f"{dst}.bias"] = t.pop(f"{src}/bias")


def _norm(t: dict, src: str, dst: str, out: dict) -> None:
    for a, b in (("scale", "weight"), ("bias", "bias")):
        if f"{src}/{a}" in t:
            out[f"{dst}.{b}"] = t.pop(f"{src}/{a}")


def _attention(t: dict, src: str, dst: str, out: dict) -> None:
    parts = [f"{src}/{p}/kernel" for p in ("query", "key", "value")]
    if all(p in t for p in parts):  # (D, heads, head_dim) each -> torch rows q, k, v
        out[f"{dst}.qkv.weight"] = np.concatenate([_qkv_rows(t.pop(p)) for p in parts], axis=0)
    biases = [f"{src}/{p}/bias" for p in ("query", "key", "value")]
    if all(b in t for b in biases):
        out[f"{dst}.qkv.bias"] = np.concatenate([t.pop(b).reshape(-1) for b in biases])
    if f"{src}/out/kernel" in t:  # (heads, head_dim, D) -> (D, heads * head_dim)
        kernel = t.pop(f"{src}/out/kernel")
        out[f"{dst}.proj.weight"] = kernel.reshape(-1, kernel.shape[-1]).T
    if f"{src}/out/bias" in t:
        out[f"{dst}.proj.bias"] = t.pop(f"{src}/out/bias")


def _qkv_rows(kernel: np.ndarray) -> np.ndarray:
    return kernel.reshape(kernel.shape[0], -1).T  # (D, H, hd) -> (H*hd, D)


def to_canonical(tensors: dict) -> dict:
    """Google ViT tensors (any of the three layouts) -> the same tensors under timm names; keys it
    does not recognise keep their names."""
    t = _unscan(strip_prefix(dict(tensors), "params/"))
    out = {}
    if "embedding/kernel" in t:  # (P, P, 3, D) -> (D, 3, P, P); tubelets (t, P, P, 3, D) too
        kernel = t.pop("embedding/kernel")
        out["patch_embed.proj.weight"] = np.moveaxis(kernel, (-1, -2), (0, 1))
    if "embedding/bias" in t:
        out["patch_embed.proj.bias"] = t.pop("embedding/bias")
    if "cls" in t:
        out["cls_token"] = t.pop("cls")
    if "Transformer/posembed_input/pos_embedding" in t:
        out["pos_embed"] = t.pop("Transformer/posembed_input/pos_embedding")
    elif "pos_embedding" in t:  # big_vision: no CLS row; the CLS token carries its own position
        pos = t.pop("pos_embedding")
        pos = pos.reshape(-1, pos.shape[-1])
        out["pos_embed"] = np.concatenate([np.zeros_like(pos[:1]), pos])
    linen = any("MultiHeadDotProductAttention_0" in k for k in t)
    pattern = re.compile(r"Transformer/encoderblock_(\d+)/")
    blocks = sorted({int(m.group(1)) for k in t if (m := pattern.match(k))})
    for i in blocks:
        src, dst = f"Transformer/encoderblock_{i}", f"blocks.{i}"
        names = {role: pair[linen] for role, pair in _BLOCK_NAMES.items()}
        _norm(t, f"{src}/{names['norm1']}", f"{dst}.norm1", out)
        _attention(t, f"{src}/{names['attn']}", f"{dst}.attn", out)
        _norm(t, f"{src}/{names['norm2']}", f"{dst}.norm2", out)
        _linear(t, f"{src}/{names['mlp']}/Dense_0", f"{dst}.mlp.fc1", out)
        _linear(t, f"{src}/{names['mlp']}/Dense_1", f"{dst}.mlp.fc2", out)
    _norm(t, "Transformer/encoder_norm", "norm", out)
    _linear(t, "pre_logits", "pre_logits.fc", out)
    _linear(t, "head", "head", out)
    out.update(t)  # anything unrecognised keeps its name, to be reported as unexpected
    return out


FORMAT = Format("google_vit", detect, to_canonical)

"""XViT's official release: PySlowFast `.pth`, `model_state` with `base_model.`, `consensus.`."""

from __future__ import annotations

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import strip_prefix


def detect(keys) -> bool:
    """Whether the tensor names `keys` are XViT's release (timm names under `base_model.`)."""
    return "base_model.patch_embed.proj.weight" in keys


def to_canonical(tensors: dict) -> dict:
    """`tensors` without the `base_model.` prefix, `temp_embed` (1, T, 1, D) becoming `time_embed`
    (T, D); the rest (e.g. `consensus.`) keeps its names."""
    out = strip_prefix(tensors, "base_model.")
    if "temp_embed" in out:  # (1, 8, 1, D) -> (8, D)
        temp = out.pop("temp_embed")
        out["time_embed"] = temp.reshape(temp.shape[1], temp.shape[-1])
    return out


FORMAT = Format("xvit", detect, to_canonical)

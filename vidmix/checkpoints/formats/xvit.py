"""XViT's official release: PySlowFast `.pth`, `model_state` with `base_model.`, `consensus.`."""

from __future__ import annotations

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import strip_prefix


def detect(keys) -> bool:
    return "base_model.patch_embed.proj.weight" in keys


def to_canonical(tensors: dict) -> dict:
    out = strip_prefix(tensors, "base_model.")
    if "temp_embed" in out:  # (1, 8, 1, D) -> (8, D)
        temp = out.pop("temp_embed")
        out["time_embed"] = temp.reshape(temp.shape[1], temp.shape[-1])
    return out


FORMAT = Format("xvit", detect, to_canonical)

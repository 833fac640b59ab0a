"""TimeSformer: the official release (`.pyth`, keys under `model.`) and Hugging Face names."""

from __future__ import annotations

import types

from vidmix.checkpoints.formats.renaming import rename, strip_prefix


def _official_detect(keys) -> bool:
    return "model.patch_embed.proj.weight" in keys and "model.time_embed" in keys


def _official(tensors: dict) -> dict:
    return strip_prefix(tensors, "model.")


official = types.SimpleNamespace(detect=_official_detect, to_canonical=_official)

# Hugging Face -> official names (the spec's table, read backwards).
_HF_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.time_embeddings$", "time_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.",
     r"blocks.\1.temporal_attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.",
     r"blocks.\1.temporal_attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]


def _hf_detect(keys) -> bool:
    return any(k.endswith("attention.attention.qkv.weight") and "encoder.layer." in k for k in keys)


def _hf(tensors: dict) -> dict:
    return rename(strip_prefix(tensors, "timesformer."), _HF_RULES)


hugging_face = types.SimpleNamespace(detect=_hf_detect, to_canonical=_hf)


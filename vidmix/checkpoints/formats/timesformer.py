"""TimeSformer: the official release (`.pyth`, keys under `model.`) and Hugging Face names.

The release's three attention types share the layout: a timm ViT under `model.` (`model.cls_token`,
`model.pos_embed`, `model.patch_embed.proj.*`, `model.blocks.{i}.*`, `model.norm.*`,
`model.head.*`); `joint_space_time` adds `model.time_embed`, `divided_space_time` adds it and each
block's `temporal_norm1`, `temporal_attn` and `temporal_fc`; `space_only` has neither. A plain timm
ViT has the same names without the `model.` prefix, so it is never taken for one.
"""

from __future__ import annotations

import re

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import HF_VIT_RULES, rename, strip_prefix


def _official_detect(keys) -> bool:
    return "model.patch_embed.proj.weight" in keys and "model.blocks.0.attn.qkv.weight" in keys


def _official(tensors: dict) -> dict:
    return strip_prefix(tensors, "model.")


official = Format("timesformer", _official_detect, _official)

# Hugging Face -> official names (the spec's table, read backwards).
_HF_RULES = [
    (r"^embeddings\.time_embeddings$", "time_embed"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.",
     r"blocks.\1.temporal_attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.",
     r"blocks.\1.temporal_attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    *HF_VIT_RULES,
]


# HF TimeSformer fuses q, k, v (`attention.attention.qkv`), which HF ViT never does.
_HF_QKV = re.compile(r"(?:timesformer\.)?encoder\.layer\.\d+\.attention\.attention\.qkv\.weight")


def _hf_detect(keys) -> bool:
    return any(_HF_QKV.fullmatch(k) for k in keys)


def _hf(tensors: dict) -> dict:
    return rename(strip_prefix(tensors, "timesformer."), _HF_RULES)


hugging_face = Format("hf_timesformer", _hf_detect, _hf)


"""Image ViTs with PyTorch names: timm (`blocks.{i}.attn.qkv`) and Hugging Face `ViTModel`."""

from __future__ import annotations

import re

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import (
    HF_VIT_RULES,
    QKV_PART,
    fuse_qkv,
    rename,
    strip_prefix,
)


def _timm_detect(keys) -> bool:
    return "patch_embed.proj.weight" in keys and "blocks.0.attn.qkv.weight" in keys


timm = Format("timm_vit", _timm_detect)  # timm names are the canonical ViT names

_HF_RULES = HF_VIT_RULES + [
    (r"^pooler\.dense\.", "pre_logits.fc."),
    # transformers >= 5 in memory (`model.state_dict()`); its saved files keep the names above.
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
]
_QKV = re.compile(r"^(?:encoder\.layer|layers)\.(?P<layer>\d+)\.attention\.(?:attention\.)?"
                  + QKV_PART)


def _hf_detect(keys) -> bool:
    return any(_QKV.match(k.removeprefix("vit.")) for k in keys)


def _hf(tensors: dict) -> dict:
    qkv, rest = fuse_qkv(strip_prefix(tensors, "vit."), _QKV, "blocks.{layer}.attn.qkv.{kind}",
                         "encoder.layer.{layer}.attention.attention.{part}.{kind}")
    return {**rename(rest, _HF_RULES), **qkv}


hugging_face = Format("hf_vit", _hf_detect, _hf)

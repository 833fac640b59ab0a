"""Swin checkpoints: official (microsoft/Swin-Transformer `.pth`), timm, Hugging Face, and PST's
official video release (MMAction2, github MartinXM/TPS).

All are renamed into the official Swin names (also timm's before 0.9), the canonical names of
`vidmix.checkpoints.families.pst`:
`patch_embed.proj.*`, `patch_embed.norm.*`, `layers.{i}.blocks.{j}.{norm1, attn.qkv (rows q, k, v),
attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}.*`,
`layers.{i}.downsample.{reduction.weight, norm.*}` (at the end of stage i), `norm.*`, `head.*`,
and `absolute_pos_embed` (1, h w, C) in the files of models built with `ape=True`.
Recomputable buffers (`relative_position_index`, the release's `relative_position_index_old`,
`attn_mask`) are dropped here: they are never weights.
"""

from __future__ import annotations

import re

from vidmix.checkpoints.formats.registry import Format
from vidmix.checkpoints.formats.renaming import QKV_PART, fuse_qkv, rename, strip_prefix

_BUFFER = re.compile(r"(^|\.)(relative_position_index(_old)?|attn_mask)$")
_TABLE = "layers.0.blocks.0.attn.relative_position_bias_table"  # in every Swin file


def _drop_buffers(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if not _BUFFER.search(k)}


def _unwrap(tensors: dict, prefix: str) -> dict:
    """Keep only the tensors under `prefix` (stripped) when there are any."""
    inner = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return inner or tensors


# Official Swin `.pth` ({"model": state_dict}) and timm -----------------------------------------
def _official_detect(keys) -> bool:
    return _TABLE in keys or f"model.{_TABLE}" in keys


def _official(tensors: dict) -> dict:
    tensors = _drop_buffers(_unwrap(tensors, "model."))
    # timm >= 0.9 puts patch merging at the start of the next stage and the classifier in
    # `head.fc`; move both back to the official places.
    if "layers.0.downsample.reduction.weight" not in tensors:
        def earlier(m):
            return f"layers.{int(m.group(1)) - 1}.downsample."
        tensors = {re.sub(r"^layers\.(\d+)\.downsample\.", earlier, k): v
                   for k, v in tensors.items()}
    return rename(tensors, [(r"^head\.fc\.", "head.")])


official = Format("swin", _official_detect, _official)


# PST / Video Swin in MMAction2 (`state_dict` with `backbone.` and `cls_head.`) ------------------
def _mmaction_detect(keys) -> bool:
    return f"backbone.{_TABLE}" in keys


def _mmaction(tensors: dict) -> dict:
    tensors = _drop_buffers(tensors)
    return rename(strip_prefix(tensors, "backbone."), [(r"^cls_head\.fc_cls\.", "head.")])


mmaction = Format("pst_mmaction", _mmaction_detect, _mmaction)


# Hugging Face `SwinModel` / `SwinForImageClassification` ----------------------------------------
_B = r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_HF_RULES = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^embeddings\.norm\.", "patch_embed.norm."),
    (r"^embeddings\.position_embeddings$", "absolute_pos_embed"),  # use_absolute_embeddings
    (_B + r"layernorm_before\.", r"layers.\1.blocks.\2.norm1."),
    (_B + r"layernorm_after\.", r"layers.\1.blocks.\2.norm2."),
    (_B + r"attention\.(?:self\.|relative_position_bias\.)relative_position_bias_table$",
     r"layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (_B + r"attention\.(?:output\.dense|o_proj)\.", r"layers.\1.blocks.\2.attn.proj."),
    (_B + r"(?:intermediate\.dense|mlp\.fc1)\.", r"layers.\1.blocks.\2.mlp.fc1."),
    (_B + r"(?:output\.dense|mlp\.fc2)\.", r"layers.\1.blocks.\2.mlp.fc2."),
    (r"^encoder\.layers\.(\d+)\.downsample\.", r"layers.\1.downsample."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]
_QKV = re.compile(r"^encoder\.layers\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.attention\."
                  r"(?:self\.)?" + QKV_PART)


def _hf_detect(keys) -> bool:
    return any(re.fullmatch(r"(swin\.)?encoder\.layers\.0\.blocks\.0\.attention\.(self\."
                            r"relative_position_bias_table|relative_position_bias\."
                            r"relative_position_bias_table)", k) for k in keys)


def _hf(tensors: dict) -> dict:
    qkv, rest = fuse_qkv(_drop_buffers(strip_prefix(tensors, "swin.")), _QKV,
                         "layers.{stage}.blocks.{block}.attn.qkv.{kind}",
                         "encoder.layers.{stage}.blocks.{block}.attention.self.{part}.{kind}")
    return {**rename(rest, _HF_RULES), **qkv}


hugging_face = Format("hf_swin", _hf_detect, _hf)

"""Small helpers for renaming tensors by ordered (pattern, replacement) rules."""

from __future__ import annotations

import re

import numpy as np


def rename(tensors: dict, rules: list[tuple[str, str]]) -> dict:
    """Apply the first matching regex rule to each key; keys no rule matches stay as they are."""
    out = {}
    for key, value in tensors.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def strip_prefix(tensors: dict, prefix: str) -> dict:
    """`tensors` with `prefix` removed from the keys that start with it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}


# Hugging Face attention: separate projections, saved as query/key/value (transformers >= 5 in
# memory: q_proj/k_proj/v_proj)
QKV_PART = r"(?P<part>query|key|value|q_proj|k_proj|v_proj)\.(?P<kind>weight|bias)$"
_PART = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}


def fuse_qkv(tensors: dict, pattern: re.Pattern, fused: str, unfused: str) -> tuple[dict, dict]:
    """Concatenate the separate query, key and value tensors of each layer (rows q, k, v: timm's
    fused qkv). `pattern` matches them, with groups `part`, `kind` and whatever names the layer;
    `fused` and `unfused` are format strings over those groups. An incomplete triple keeps its
    parts under `unfused` names, to be reported by name. Returns (fused tensors, the rest)."""
    groups: dict[tuple, dict[str, np.ndarray]] = {}
    rest = {}
    for key, value in tensors.items():
        m = pattern.match(key)
        if m is None:
            rest[key] = value
            continue
        names = {k: v for k, v in m.groupdict().items() if k != "part"}
        groups.setdefault(tuple(sorted(names.items())), {})[_PART.get(m["part"], m["part"])] = value
    out = {}
    for names, parts in groups.items():
        names = dict(names)
        if set(parts) == {"query", "key", "value"}:
            out[fused.format(**names)] = np.concatenate(
                [parts["query"], parts["key"], parts["value"]], axis=0)
        else:
            out.update({unfused.format(part=p, **names): v for p, v in parts.items()})
    return out, rest


# Hugging Face hub names shared by ViT and TimeSformer -> canonical (timm) names.
HF_VIT_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]

"""Image ViTs with PyTorch names: timm (`blocks.{i}.attn.qkv`) and Hugging Face `ViTModel`."""

from __future__ import annotations

import re
import types

import numpy as np

from vidmix.checkpoints.formats.renaming import HF_VIT_RULES, rename, strip_prefix


def _timm_detect(keys) -> bool:
    return "patch_embed.proj.weight" in keys and "blocks.0.attn.qkv.weight" in keys


timm = types.SimpleNamespace(detect=_timm_detect, to_canonical=dict)

_HF_RULES = HF_VIT_RULES + [
    (r"^pooler\.dense\.", "pre_logits.fc."),
    # transformers >= 5 in memory (`model.state_dict()`); its saved files keep the names above.
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
]
_QKV = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.)?"
                  r"(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$")
_PART = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}


def _hf_detect(keys) -> bool:
    return any(_QKV.match(k.removeprefix("vit.")) for k in keys)


def _hf(tensors: dict) -> dict:
    tensors = strip_prefix(tensors, "vit.")
    qkv: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    rest = {}
    for key, value in tensors.items():
        m = _QKV.match(key)
        if m:
            part = _PART.get(m.group(2), m.group(2))
            qkv.setdefault((m.group(1), m.group(3)), {})[part] = value
        else:
            rest[key] = value
    out = rename(rest, _HF_RULES)
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:  # leave the parts to be reported by name
            out.update({f"encoder.layer.{i}.attention.attention.{p}.{kind}": v
                        for p, v in parts.items()})
            continue
        out[f"blocks.{i}.attn.qkv.{kind}"] = np.concatenate(
            [parts["query"], parts["key"], parts["value"]], axis=0)
    return out


hugging_face = types.SimpleNamespace(detect=_hf_detect, to_canonical=_hf)

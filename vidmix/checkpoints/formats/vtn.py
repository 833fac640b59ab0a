"""VTN's official release (PySlowFast `.pyth`/`.pth`, the weights under `model_state`).

The release's names are already the canonical VTN names of `vidmix.checkpoints.families.vtn`:
- `backbone.*`: the timm ViT-B/16 built with `num_classes=0` (timm names, no classifier);
- `cls_token` (1, 1, D): the learned [CLS] of the temporal encoder;
- `temporal_encoder.*`: a Hugging Face `LongformerModel` without pooler, its word embeddings
  removed (`embeddings.{position_embeddings, token_type_embeddings, LayerNorm}`,
  `encoder.layer.{i}.attention.self.{query, key, value, query_global, key_global, value_global}`,
  `attention.output.{dense, LayerNorm}`, `intermediate.dense`, `output.{dense, LayerNorm}`), and
  possibly its `embeddings.position_ids` buffer;
- `mlp_head.{0, 1, 4}`: LayerNorm, Linear, Linear of the head (2 and 3 are GELU and Dropout).
"""

from __future__ import annotations

from vidmix.checkpoints.formats.registry import Format


def detect(keys) -> bool:
    """Whether the tensor names `keys` are VTN's release (`backbone.` and `temporal_encoder.`)."""
    return ("backbone.patch_embed.proj.weight" in keys
            and any(k.startswith("temporal_encoder.") for k in keys))


def to_canonical(tensors: dict) -> dict:
    """A copy of `tensors`: the release's names are already the canonical ones."""
    return dict(tensors)


FORMAT = Format("vtn", detect, to_canonical)

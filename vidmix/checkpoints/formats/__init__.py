"""Checkpoint layouts. Each module offers `detect(keys) -> bool` and `to_canonical(tensors)`,
renaming a file's tensors into the canonical names of `vidmix.checkpoints.canonical`."""

import types

from vidmix.checkpoints.formats import google_vit, swin, timesformer, torch_vit, vtn, xvit

# vidmix's own model folders (`vidmix.save_pretrained`): recognised by the marker in their
# config.json / safetensors header rather than by key names, and read name for name into the model
# (`vidmix.checkpoints.pretrained.load_folder`), not through canonical names.
vidmix = types.SimpleNamespace(detect=lambda keys: False, to_canonical=dict)

# Order matters: the first layout that recognises a file's keys reads it.
FORMATS = {
    "vidmix": vidmix,
    "vtn": vtn,  # `backbone.` timm ViT + `temporal_encoder.`: before the ViT layouts
    "xvit": xvit,
    "timesformer": timesformer.official,
    "hf_timesformer": timesformer.hugging_face,
    "hf_vit": torch_vit.hugging_face,
    "timm_vit": torch_vit.timm,
    "google_vit": google_vit,
    # Swin files all hold `...layers.0.blocks.0...relative_position_bias_table`, which no ViT file
    # has, and each prefix (`backbone.`, `swin.`/`encoder.`, none or `model.`) is its own layout.
    "pst_mmaction": swin.mmaction,
    "hf_swin": swin.hugging_face,
    "swin": swin.official,
}

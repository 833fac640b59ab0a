"""Checkpoint layouts (`Format`): how to recognise a file by its tensor names and rename its
tensors into the canonical names of `vidmix.checkpoints.families`.

Every built-in layout is registered here; others are added with `register_format` (see
docs/extending.md). A file must match exactly one format (`detect_format`).
"""

from vidmix.checkpoints.formats import google_vit, swin, timesformer, torch_vit, vtn, xvit
from vidmix.checkpoints.formats.registry import (
    FORMATS,
    Format,
    detect_format,
    register_format,
    unregister_format,
)

# vidmix's own model folders (`vidmix.save_pretrained`): recognised by the marker in their
# config.json / safetensors header rather than by key names (so its detector accepts nothing), and
# read name for name into the model (`vidmix.checkpoints.pretrained.load_folder`), not through
# canonical names.
VIDMIX = Format("vidmix", detect=lambda keys: False)

for _fmt in (
    VIDMIX,
    vtn.FORMAT,  # VTN's release: `backbone.` timm ViT + `temporal_encoder.`
    xvit.FORMAT,
    timesformer.official,
    timesformer.hugging_face,
    torch_vit.hugging_face,
    torch_vit.timm,
    google_vit.FORMAT,
    swin.mmaction,  # Swin layouts by prefix: `backbone.`, `swin.`/`encoder.`, none or `model.`
    swin.hugging_face,
    swin.official,
):
    register_format(_fmt)

__all__ = ["FORMATS", "Format", "detect_format", "register_format", "unregister_format"]

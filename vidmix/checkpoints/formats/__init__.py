"""Checkpoint layouts. Each module offers `detect(keys) -> bool` and `to_canonical(tensors)`,
renaming a file's tensors into the canonical names of `vidmix.checkpoints.canonical`."""

from vidmix.checkpoints.formats import google_vit, timesformer, torch_vit, xvit

# Order matters: the first layout that recognises a file's keys reads it.
FORMATS = {
    "xvit": xvit,
    "timesformer": timesformer.official,
    "hf_timesformer": timesformer.hugging_face,
    "hf_vit": torch_vit.hugging_face,
    "timm_vit": torch_vit.timm,
    "google_vit": google_vit,
}

"""Family conversions: canonical tensors (the names every `formats` layout renames into) -> the
parameters of one model family.

Each module offers `convert(cfg, tensors, params, *, inflate) -> (mapping, dropped)`: `mapping`
names, for every model parameter, its `Source` among the canonical tensors; `dropped` the source
tensors deliberately left unused, with the reason. Families are registered with their conversion
in `vidmix.models.registry` (`Family(convert="vidmix.checkpoints.families.vit:convert")`).

- `vit`: the video ViT (XViT, TimeSformer, per-frame ViT), from timm / official ViT names;
- `vtn`: VTN, from the release's names or an image ViT for its backbone;
- `pst`: PST, from official Swin names.
"""

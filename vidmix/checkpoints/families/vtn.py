"""From canonical tensor names to a VTN: a whole VTN checkpoint, or an image ViT for the backbone.

Canonical VTN names (the release's, see `formats/vtn.py`): `backbone.` + the canonical ViT names
of `vidmix.checkpoints.families.vit`, `cls_token`, `temporal_encoder.` + Hugging Face Longformer
names, `mlp_head.{0,1,4}`. An image ViT file (any layout `load_weights` reads) has the ViT names
without the prefix: it fills the backbone, and the [CLS], temporal encoder and head keep their
fresh initialisation, as the release starts from an ImageNet ViT. The backbone's mapping is the
ViT family's own (`vit.convert` of `VTNConfig.backbone_config()`), read under the prefix.
"""

from __future__ import annotations

from vidmix.checkpoints.families import vit
from vidmix.checkpoints.mapping import Mapping, Source, keep, take, torch_linear, torch_norm

BACKBONE = "backbone."
TEMPORAL = "temporal_encoder."
# Source tensors VTN deliberately leaves unused, by name prefix, with the reason.
UNUSED = {
    f"{TEMPORAL}embeddings.position_ids": "a buffer of position indices (VTN passes its own)",
    f"{TEMPORAL}embeddings.word_embeddings.": "word embeddings: VTN feeds frame features",
    f"{TEMPORAL}pooler.": "the Longformer pooler: VTN classifies the [CLS] output with its head",
}


def is_vtn(keys) -> bool:
    """A whole VTN checkpoint (not an image ViT)?"""
    return any(k.startswith((BACKBONE, TEMPORAL)) for k in keys)


def backbone_mapping(cfg, tensors: dict, params, *, prefix: str, inflate: str):
    """The ViT mapping of the backbone, from tensors named `prefix` + canonical ViT names.

    Returns (mapping, dropped); the ViT's classifier (an image file's head) is dropped: VTN
    classifies with its own head.
    """
    vit_tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    vit_params = {n: s for n, s in params.items() if n.startswith("backbone/")}
    backbone, vit_dropped = vit.convert(cfg.backbone_config(), vit_tensors, vit_params,
                                        inflate=inflate)
    m = {n: Source(tuple(prefix + k for k in s.keys), s.fn, s.note) for n, s in backbone.items()}
    dropped = {prefix + k: "the image classifier: VTN has a head of its own" for k in vit_dropped}
    return m, dropped


def temporal_mapping(cfg) -> Mapping:
    """The Longformer encoder, from Hugging Face `LongformerModel` names (`temporal_encoder.*`)."""
    e, dst = f"{TEMPORAL}embeddings", "temporal/embeddings"
    m = {f"{dst}/position/embedding": take(f"{e}.position_embeddings.weight"),
         f"{dst}/token_type/embedding": take(f"{e}.token_type_embeddings.weight"),
         **torch_norm(f"{dst}/norm", f"{e}.LayerNorm")}
    for i in range(cfg.temporal_layers):
        src, dst = f"{TEMPORAL}encoder.layer.{i}", f"temporal/layers/{i}"
        for name in ("query", "key", "value", "query_global", "key_global", "value_global"):
            m.update(torch_linear(f"{dst}/attention/{name}", f"{src}.attention.self.{name}"))
        m.update({**torch_linear(f"{dst}/attention_output", f"{src}.attention.output.dense"),
                  **torch_norm(f"{dst}/attention_norm", f"{src}.attention.output.LayerNorm"),
                  **torch_linear(f"{dst}/intermediate", f"{src}.intermediate.dense"),
                  **torch_linear(f"{dst}/output", f"{src}.output.dense"),
                  **torch_norm(f"{dst}/output_norm", f"{src}.output.LayerNorm")})
    return m


def head_mapping(cfg, tensors: dict) -> tuple[Mapping, dict[str, str]]:
    """The MLP head (`mlp_head.0` LayerNorm, `.1` Linear, `.4` classifier); a classifier of
    another class count is replaced by a fresh one."""
    m = {**torch_norm("head/norm", "mlp_head.0"), **torch_linear("head/pre_logits", "mlp_head.1"),
         **torch_linear("head/classifier", "mlp_head.4")}
    weight = tensors.get("mlp_head.4.weight")
    if weight is None or weight.shape[0] == cfg.num_classes:
        return m, {}
    why = (f"the checkpoint's classifier has {weight.shape[0]} classes, the model "
           f"{cfg.num_classes}: new classifier")
    m.update({n: keep(why) for n in m if n.startswith("head/classifier/")})
    return m, {k: why for k in ("mlp_head.4.weight", "mlp_head.4.bias")}


def convert(cfg, tensors: dict, params, *, inflate: str = "average"):
    """(mapping, dropped): how to fill a VTN of config `cfg` (parameter names `params`) from
    canonical `tensors`, a whole VTN checkpoint or an image ViT."""
    if not is_vtn(tensors):
        m, dropped = backbone_mapping(cfg, tensors, params, prefix="", inflate=inflate)
        fresh = keep("not in an image ViT checkpoint: fresh initialisation")
        m.update({n: fresh for n in params if not n.startswith("backbone/")})
        return m, dropped
    m, dropped = backbone_mapping(cfg, tensors, params, prefix=BACKBONE, inflate=inflate)
    m["cls_token"] = take("cls_token", lambda x: x.reshape(-1))
    m.update(temporal_mapping(cfg))
    head, head_dropped = head_mapping(cfg, tensors)
    m.update(head)
    dropped.update(head_dropped)
    dropped.update({k: why for k in tensors for prefix, why in UNUSED.items()
                    if k.startswith(prefix)})
    return {n: s for n, s in m.items() if n in params}, dropped


__all__ = ["backbone_mapping", "head_mapping", "is_vtn", "convert", "temporal_mapping"]

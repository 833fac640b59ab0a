"""Hugging Face `transformers` TimeSformer names (TimesformerModel / ...ForVideoClassification)."""

from __future__ import annotations

from vidmix.checkpoints.mapping import (
    Mapping,
    conv_kernel,
    identity,
    linear_kernel,
    squeeze_leading,
)
from vidmix.models.config import VideoViTConfig

PREFIX = "timesformer."


def detect(keys) -> bool:
    return any(k.endswith("attention.attention.qkv.weight") and ".encoder.layer." in f".{k}"
               for k in keys)


def normalise(tensors: dict) -> dict:
    """Accept both the classification model (keys under `timesformer.`) and the bare model."""
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in tensors.items()}


def _linear(dst: str, src: str) -> Mapping:
    return {f"{dst}/kernel": (f"{src}.weight", linear_kernel),
            f"{dst}/bias": (f"{src}.bias", identity)}


def _norm(dst: str, src: str) -> Mapping:
    return {f"{dst}/scale": (f"{src}.weight", identity), f"{dst}/bias": (f"{src}.bias", identity)}


def _attention(dst: str, src: str) -> Mapping:
    return {**_linear(f"{dst}/qkv", f"{src}.attention.qkv"),
            **_linear(f"{dst}/proj", f"{src}.output.dense")}


def mapping(cfg: VideoViTConfig) -> Mapping:
    """{vidmix parameter: (HF key, transform)} for a model of config `cfg`."""
    e = "embeddings"
    m: Mapping = {
        "backbone/patch_embed/kernel": (f"{e}.patch_embeddings.projection.weight", conv_kernel),
        "backbone/patch_embed/bias": (f"{e}.patch_embeddings.projection.bias", identity),
        "backbone/cls_token": (f"{e}.cls_token", squeeze_leading),
        "backbone/pos_embed": (f"{e}.position_embeddings", squeeze_leading),
        "backbone/temporal_embed": (f"{e}.time_embeddings", squeeze_leading),
        **_norm("backbone/norm", "layernorm"),
        **_linear("head/classifier", "classifier"),
    }
    for i in range(cfg.depth):
        b, s = f"backbone/blocks/{i}", f"encoder.layer.{i}"
        m.update(_norm(f"{b}/norm1", f"{s}.layernorm_before"))
        m.update(_attention(f"{b}/attn", f"{s}.attention"))
        m.update(_norm(f"{b}/norm2", f"{s}.layernorm_after"))
        m.update(_linear(f"{b}/mlp/fc1", f"{s}.intermediate.dense"))
        m.update(_linear(f"{b}/mlp/fc2", f"{s}.output.dense"))
        m.update(_norm(f"{b}/temporal_norm", f"{s}.temporal_layernorm"))
        m.update(_attention(f"{b}/temporal_attn", f"{s}.temporal_attention"))
        m.update(_linear(f"{b}/temporal_fc", f"{s}.temporal_dense"))
    return m

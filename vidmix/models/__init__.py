"""Video transformers: one video ViT backbone with pluggable attention schemes and heads (XViT,
TimeSformer, per-frame ViT), VTN (that ViT per frame + a Longformer over time) and PST (a Swin with
temporal patch shift and channel shift)."""

from vidmix.models.attention_maps import AttentionMaps, attention_maps, attention_rollout
from vidmix.models.backbone import Block, VideoViT
from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import VIT_SIZES, VideoViTConfig
from vidmix.models.pst import PST, PSTConfig
from vidmix.models.registry import (
    FAMILIES,
    PRESETS,
    Family,
    build_model,
    create_model,
    list_models,
    model_config,
    register,
    unregister,
)
from vidmix.models.vtn import VTN, VTNConfig

__all__ = ["FAMILIES", "PRESETS", "AttentionMaps", "Block", "Family", "PST", "PSTConfig",
           "VIT_SIZES", "VTN", "VTNConfig", "VideoClassifier", "VideoViT", "VideoViTConfig",
           "attention_maps", "attention_rollout", "build_model", "create_model", "list_models",
           "model_config", "register", "unregister"]

"""Video transformers: one video ViT backbone with pluggable attention schemes, and heads."""

from vidmix.models.backbone import Block, VideoViT
from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import VIT_SIZES, VideoViTConfig
from vidmix.models.registry import (
    MODELS,
    PRESETS,
    build_model,
    create_model,
    list_models,
    model_config,
    register,
)

__all__ = ["Block", "MODELS", "PRESETS", "VIT_SIZES", "VideoClassifier", "VideoViT",
           "VideoViTConfig", "build_model", "create_model", "list_models", "model_config",
           "register"]

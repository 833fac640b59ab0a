"""Video transformers: one video ViT backbone with pluggable attention schemes, and heads."""

from vidmix.models.backbone import Block, VideoViT
from vidmix.models.classifier import VideoClassifier
from vidmix.models.config import VIT_SIZES, VideoViTConfig
from vidmix.models.registry import PRESETS, create_model, list_models, model_config

__all__ = ["Block", "PRESETS", "VIT_SIZES", "VideoClassifier", "VideoViT", "VideoViTConfig",
           "create_model", "list_models", "model_config"]

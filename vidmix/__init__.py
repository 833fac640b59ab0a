"""vidmix: efficient video transformers in JAX / Flax NNX."""

from vidmix.checkpoints import CheckpointMismatchError, load_weights
from vidmix.models import VideoViTConfig, create_model, list_models

__all__ = ["CheckpointMismatchError", "VideoViTConfig", "create_model", "list_models",
           "load_weights"]
__version__ = "0.1.0"

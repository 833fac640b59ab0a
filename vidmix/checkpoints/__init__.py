"""Checkpoint conversion: weight files of other code bases into vidmix models."""

from vidmix.checkpoints.errors import CheckpointError, CheckpointMismatchError
from vidmix.checkpoints.formats import (
    FORMATS,
    Format,
    detect_format,
    register_format,
    unregister_format,
)
from vidmix.checkpoints.loading import load_weights

__all__ = ["CheckpointError", "CheckpointMismatchError", "FORMATS", "Format", "detect_format",
           "load_weights", "register_format", "unregister_format"]

"""Checkpoint conversion: weight files of other code bases into vidmix models."""

from vidmix.checkpoints.errors import CheckpointError, CheckpointMismatchError
from vidmix.checkpoints.formats import FORMATS
from vidmix.checkpoints.loading import detect_format, load_weights

__all__ = ["CheckpointError", "CheckpointMismatchError", "FORMATS", "detect_format",
           "load_weights"]

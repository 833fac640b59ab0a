"""Checkpoint conversion: weight files of other code bases into vidmix models."""

from vidmix.checkpoints.errors import CheckpointError, CheckpointMismatchError
from vidmix.checkpoints.loading import FORMATS, load_weights

__all__ = ["CheckpointError", "CheckpointMismatchError", "FORMATS", "load_weights"]

"""vidmix: efficient video transformers in JAX / Flax NNX.

`import vidmix` loads the models and checkpoint code only (jax, flax, numpy, safetensors): an
accelerator image without tensorflow-datasets, grain or PyAV can build, load and benchmark every
model. The data and training stacks are submodules loaded on first use: `vidmix.data.build_dataset`
works after a plain `import vidmix`.
"""

import importlib

from vidmix.checkpoints import CheckpointMismatchError, load_weights
from vidmix.models import VideoViTConfig, create_model, list_models

# submodules imported on first attribute access (they pull in the data / training stacks)
_SUBMODULES = ("checkpoints", "convert", "data", "export", "models", "training", "zoo")
# public names defined in submodules, imported on first access: name -> module
_LAZY = {"save_pretrained": "vidmix.checkpoints.pretrained",
         "from_pretrained": "vidmix.checkpoints.pretrained",
         "attention_maps": "vidmix.models.attention_maps",
         "attention_rollout": "vidmix.models.attention_maps"}

__all__ = ["CheckpointMismatchError", "VideoViTConfig", "create_model", "list_models",
           "load_weights", *_LAZY, *_SUBMODULES]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

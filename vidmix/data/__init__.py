"""Video data: TFDS datasets built from users' videos, and a grain pipeline of decoded clips.

The public names load on first use, so that the modules without the data stack
(`vidmix.data.synthetic`, `vidmix.data.pixel_stats`) import on an accelerator image that has no
tensorflow-datasets, grain or PyAV (bench/learning.py runs there).
"""

import importlib

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("ClipOptions", "LoaderOptions", "TrainLoaderOptions", "VideoLoader",
                     "make_eval_loader", "make_loader", "make_train_loader", "open_dataset"),
                    "vidmix.data.pipeline"),
    **dict.fromkeys(("BuildReport", "build_dataset", "load_report"), "vidmix.data.tfds_builder"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The built-in default of `python main.py`.

Until the training program lands, the main job describes the model zoo: parameters and GFLOPs per
view (multiply-adds, XLA-counted) for every preset at the clip size below.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.mode = "zoo"
    config.zoo = ml_collections.ConfigDict()
    config.zoo.models = ""  # comma-separated preset names; empty: every preset
    config.zoo.num_frames = 8
    config.zoo.image_size = 224
    if arg:  # e.g. --config=configs/default.py:16 for 16-frame clips
        config.zoo.num_frames = int(arg)
    return config

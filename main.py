"""vidmix's entry point.

    python main.py                                   # the built-in default (configs/default.py)
    python main.py --config=configs/default.py:16    # config files take an argument after ':'
    python main.py --config.zoo.models=xvit_b16,vit_b16 --mode=zoo

Modes: zoo (print the presets with parameters and GFLOPs per view).
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
config_flags.DEFINE_config_file("config", os.path.join(_HERE, "configs", "default.py"),
                                "Config file, optionally with an argument: path.py:arg.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where logs and checkpoints go.")
flags.DEFINE_string("mode", None, "What to run; default: the config's `mode`.")
FLAGS = flags.FLAGS


def run_zoo(config, workdir):
    from vidmix.zoo import zoo_table

    names = [n for n in config.zoo.models.split(",") if n]
    print(zoo_table(names, num_frames=config.zoo.num_frames, image_size=config.zoo.image_size))


MODES = {"zoo": run_zoo}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = FLAGS.config
    mode = FLAGS.mode or config.mode
    if mode not in MODES:
        raise app.UsageError(f"unknown --mode={mode!r}; modes: {', '.join(MODES)}")
    MODES[mode](config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)

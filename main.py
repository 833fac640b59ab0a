"""vidmix's entry point.

    python main.py                      # the demo: synthetic data, a small XViT, a few CPU minutes
    python main.py --config=configs/xvit_k400.py:16 --workdir=/runs/xvit16 --mode=train
    python main.py --config=configs/default.py --workdir=runs/default --mode=eval
    python main.py --workdir=runs/default --mode=predict --video=clip.mp4
    python main.py --mode=predict --model=/models/arrow_of_time --video=clip.mp4   # a model folder
    python main.py --mode=zoo --config.zoo.models=xvit_b16,vit_b16

Modes: train (resumes from the workdir), eval (multi-view, newest intact checkpoint), predict
(top-k labels of one video), zoo (presets with parameters and GFLOPs per view). `--model=FOLDER` (a
model folder: `vidmix.save_pretrained`, `python -m vidmix.convert`, `python -m vidmix.export`)
makes eval and predict use it instead of the workdir's checkpoint. With several processes
(e.g. a TPU pod slice) `jax.distributed.initialize()` is called first.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from vidmix.checkpoints.errors import CheckpointError
from vidmix.errors import UserError
from vidmix.training.config_checks import problems as config_problems

# Errors a user causes and fixes; anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, CheckpointError, FileNotFoundError, FileExistsError)

_HERE = os.path.dirname(os.path.abspath(__file__))
config_flags.DEFINE_config_file("config", os.path.join(_HERE, "configs", "default.py"),
                                "Config file, optionally with an argument: path.py:arg.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where logs and checkpoints go (default: runs/<config>).")
flags.DEFINE_string("video", None, "--mode=predict: the video file.")
flags.DEFINE_bool("distributed", False, "Several processes (hosts): call "
                  "jax.distributed.initialize() first (TPU pods and SLURM/GPU clusters configure "
                  "it from the environment).")
flags.DEFINE_string("mode", None, "What to run; default: the config's `mode`.")
flags.DEFINE_string("model", None, "--mode=eval / predict: a model folder (vidmix.save_pretrained, "
                    "python -m vidmix.convert / vidmix.export) to use instead of the workdir's "
                    "checkpoint; predict then needs neither a workdir nor a dataset.")
flags.DEFINE_bool("traceback", False, "Show the full traceback of errors a user causes (a bad "
                  "config value, a missing file, a damaged checkpoint, a video that cannot be "
                  "decoded) instead of one line.")
FLAGS = flags.FLAGS


def _no_model_folder(mode: str, hint: str = ""):
    if FLAGS.model:
        raise app.UsageError(f"--model is for --mode=eval and --mode=predict, not {mode}{hint}")


def run_zoo(config, workdir):
    from vidmix.zoo import zoo_table

    _no_model_folder("zoo")
    names = [n for n in config.zoo.models.split(",") if n]
    print(zoo_table(names, num_frames=config.zoo.num_frames, image_size=config.zoo.image_size))


def run_train(config, workdir):
    from vidmix.training.trainer import train

    _no_model_folder("train", "; to start training from a model folder, set "
                     "--config.init.path=FOLDER")
    metrics = train(config, workdir)
    if metrics is not None:
        _print_metrics(metrics, config)
    print(f"logs, checkpoints and curves.png are in {os.path.abspath(workdir)}")


def run_eval(config, workdir):
    from vidmix.training.trainer import evaluate

    # with --model, confusion.png goes to --workdir only if one is given
    workdir = FLAGS.workdir if FLAGS.model else workdir
    _print_metrics(evaluate(config, workdir, model_dir=FLAGS.model), config)


def run_predict(config, workdir):
    from vidmix.training.predict import predict

    for name, prob in predict(config, workdir, FLAGS.video or config.predict.video,
                              model_dir=FLAGS.model):
        print(f"{prob:7.2%}  {name}")


def _print_metrics(m, config):
    views = f"{config.eval.num_clips}x{config.eval.num_crops} views"
    print(f"eval ({m['num_videos']} videos, {views}): top-1 {m['top1']:.2%}, "
          f"top-5 {m['top5']:.2%}, mean class accuracy {m['mean_class_accuracy']:.2%}")


MODES = {"train": run_train, "eval": run_eval, "predict": run_predict, "zoo": run_zoo}


def default_workdir() -> str:
    """runs/<config file name>[_<config argument>]."""
    flag = FLAGS["config"]
    name = os.path.splitext(os.path.basename(config_flags.get_config_filename(flag)))[0]
    raw = flag.serialize().split("=", 1)[-1]
    arg = raw.split(":", 1)[1] if ":" in raw else ""
    return os.path.join("runs", name + (f"_{arg}" if arg else ""))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = FLAGS.config
    mode = FLAGS.mode or config.mode
    if mode not in MODES:
        raise app.UsageError(f"unknown --mode={mode!r}; modes: {', '.join(MODES)}")
    problems = config_problems(config)
    if problems:  # a config mistake costs a second, not a training budget
        raise app.UsageError("invalid config:\n  " + "\n  ".join(problems))
    if FLAGS.distributed:
        import jax

        jax.distributed.initialize()  # coordinator, process count and id from the environment
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax / tfds chatter
    # vidmix's own messages at INFO through one handler; not propagated, or absl's root handler
    # would print each of them a second time
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    vidmix_log = logging.getLogger("vidmix")
    vidmix_log.handlers[:] = [handler]
    vidmix_log.setLevel(logging.INFO)
    vidmix_log.propagate = False
    try:
        MODES[mode](config, FLAGS.workdir or default_workdir())
    except USER_ERRORS as e:  # a config mistake found once the data is known, a missing file,
        if FLAGS.traceback:  # a damaged checkpoint, a bad video: one clear line
            raise
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)

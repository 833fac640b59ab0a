"""Export a training run's checkpoint as a model folder.

    python -m vidmix.export runs/default /models/arrow_of_time     # the newest intact checkpoint
    python -m vidmix.export runs/default /models/arrow_of_time --step 200

Reads only the run's workdir: `config.json` (the run config), `class_names.json` and the
parameters of one orbax checkpoint in `checkpoints/` (not the optimiser state), verified against
its checksums; without --step, the newest intact one. The dataset is not
needed; when it is there, its stored short side is recorded for prediction (otherwise the
builder's default for the dataset kind, or `--short_side`). The folder gets the run's model config
(its normalisation included), class names and inference preprocessing (frames, sampling and the
eval views), so
`python main.py --mode=predict --model=OUT --video=clip.mp4` predicts as the run's own
`--mode=predict` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import jax
import ml_collections
import numpy as np

from vidmix.checkpoints.mapping import unstack
from vidmix.checkpoints.pretrained import load_folder_tensors, save_pretrained
from vidmix.errors import UserError
from vidmix.models import build_model, model_config
from vidmix.training.checkpointing import Checkpoints, key_names

log = logging.getLogger(__name__)


def read_run(workdir: str) -> tuple[ml_collections.ConfigDict, list[str]]:
    """The run config and class names a training run wrote into its workdir."""
    files = {name: os.path.join(workdir, name) for name in ("config.json", "class_names.json")}
    for name, path in files.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{workdir} has no {name}: not the workdir of a training run "
                                    "(python main.py --mode=train --workdir=...)")
    with open(files["config.json"]) as f:
        config = ml_collections.ConfigDict(json.load(f))
    with open(files["class_names.json"]) as f:
        names = json.load(f)
    return config, [str(n) for n in names]


def run_model_config(config, num_classes: int):
    """The model config a run trains: its preset, overrides, clip size and class count."""
    from vidmix.training.trainer import _model_overrides

    return model_config(config.model.name, **_model_overrides(config, num_classes))


def dataset_short_side(config) -> int | None:
    """The short side the run's dataset stores frames at (predict resizes videos to it)."""
    from vidmix.data import open_dataset

    path = os.path.abspath(os.path.expanduser(config.data.dir))
    try:
        builder, _ = open_dataset(path)
        return builder.info.metadata.get("short_side") or None
    except Exception:  # no dataset here: the builder's default for the kind
        default = None if config.data.kind == "synthetic" else 256
        log.warning("the run's dataset %s is not here: recording short_side=%s (the default for "
                    "%r datasets); pass --short_side if it was built otherwise", path, default,
                    config.data.kind)
        return default


def restore_params(directory: str, step: int | None = None) -> tuple[int, dict[str, np.ndarray]]:
    """(step, {vidmix name: array}): the parameters of one checkpoint of a run (default: the
    newest intact one), verified, as numpy arrays, without its optimiser or data-iterator state."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {directory}; train first")
    checkpoints = Checkpoints(directory, read_only=True)
    try:
        found = checkpoints.restore_params(step=step)
    finally:
        checkpoints.close()
    if found is None:
        raise FileNotFoundError(f"no checkpoints in {directory}; train first")
    step, params = found
    flat = {}
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = key_names(path)
        if keys[-1] == "value":  # an nnx Variable saved as {"value": array}
            keys = keys[:-1]
        flat["/".join(keys)] = np.asarray(value)
    return step, flat


def export(workdir: str, out: str, *, step: int | None = None,
           short_side: int | None | str = "dataset") -> tuple[str, int]:
    """Write the model of run `workdir` (checkpoint `step`, default the newest intact one) to
    folder `out`; returns (the folder's path, the step). short_side: recorded for prediction;
    "dataset": the run's dataset's (or its kind's default when the dataset is not here)."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config, names = read_run(workdir)
    cfg = run_model_config(config, len(names))
    if os.path.exists(os.path.join(out, "model.safetensors")):
        raise FileExistsError(f"{out} already holds a model; choose a new folder")
    step, tensors = restore_params(os.path.join(workdir, "checkpoints"), step)
    model = build_model(cfg)
    # the train state keeps scanned layers stacked; the folder names them per layer
    load_folder_tensors(model, unstack(model, tensors), source=f"{workdir}/checkpoints/{step}")
    from vidmix.data.from_config import eval_preprocessing

    side = dataset_short_side(config) if short_side == "dataset" else short_side
    return save_pretrained(model, out, names, preset=config.model.name,
                           preprocessing=eval_preprocessing(config, side)), step


def main(argv=None) -> str:
    """The command line (`argv`, default sys.argv): exports the run, returns the folder's path."""
    parser = argparse.ArgumentParser(prog="python -m vidmix.export",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("workdir", help="the training run's workdir")
    parser.add_argument("out", help="output model folder (must not hold a model yet)")
    parser.add_argument("--step", type=int, default=None,
                        help="checkpoint step (default: the newest intact one)")
    parser.add_argument("--short_side", type=int, default=None,
                        help="short side videos are resized to before cropping (0: none; "
                             "default: the run's dataset's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    side = "dataset" if args.short_side is None else (args.short_side or None)
    path, step = export(args.workdir, args.out, step=args.step, short_side=side)
    print(f"wrote step {step} of {os.path.abspath(args.workdir)} to {path}")
    return path


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a damaged checkpoint: one line, as main.py prints it
        sys.exit(f"error: {e}")

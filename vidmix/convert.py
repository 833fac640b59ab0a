"""Convert a weight file into a vidmix model and write it as a model folder.

    python -m vidmix.convert xvit_b16 ViT-B_16.npz /models/xvit_b16_in21k --set num_classes=400
    python -m vidmix.convert timesformer_b16 TimeSformer_divST_8x32_224_K400.pyth /models/tsf \\
        --pre short_side=256 --pre num_crops=3

The folder (`model.safetensors` + `config.json`, see `vidmix.checkpoints.pretrained`) holds the
model's whole config, so `vidmix.from_pretrained(folder)` rebuilds it without the preset name.
Any model option can be set with `--set key=value` (values are Python literals), the input
normalisation included (`--set pixel_mean=0.45,0.45,0.45`; each preset has its release's);
`--ignore` takes glob patterns as in `vidmix.load_weights`; `--class-names` a JSON list or a text
file with one label per line; `--pre key=value` the inference preprocessing to record
(short_side, num_clips, ...), so that `python main.py --mode=predict --model=FOLDER` runs from the
folder alone.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os

from flax import nnx

from vidmix.checkpoints import load_weights
from vidmix.checkpoints.families.vit import INFLATIONS
from vidmix.checkpoints.pretrained import (
    PREPROCESSING_KEYS,
    WEIGHTS_FILE,
    check_preprocessing,
    save_pretrained,
)
from vidmix.models import create_model


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string, e.g. attention=divided


def read_class_names(path: str) -> list[str]:
    """Labels from a JSON list or a text file with one label per line."""
    with open(path) as f:
        text = f.read()
    try:
        names = json.loads(text)
    except ValueError:
        return [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list):
        raise ValueError(f"{path}: expected a JSON list of class names")
    return [str(n) for n in names]


def main(argv=None) -> str:
    """The command line (`argv`, default sys.argv): converts and returns the folder's path."""
    parser = argparse.ArgumentParser(prog="python -m vidmix.convert",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("model", help="preset name, see vidmix.list_models()")
    parser.add_argument("weights", help="weight file (.npz, .safetensors, .pth, .bin, .pyth) or "
                                        "model folder")
    parser.add_argument("out", help="output model folder (must not hold a model yet)")
    parser.add_argument("--set", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="a model option, e.g. num_classes=400")
    parser.add_argument("--ignore", action="append", default=[], metavar="GLOB")
    parser.add_argument("--inflate", choices=INFLATIONS, default="average")
    parser.add_argument("--class-names", metavar="FILE",
                        help="labels: a JSON list or one per line, as many as num_classes")
    parser.add_argument("--pre", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help=f"inference preprocessing to record: {', '.join(PREPROCESSING_KEYS)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    model = create_model(args.model, rngs=nnx.Rngs(0), **dict(args.set))
    names = read_class_names(args.class_names) if args.class_names else None
    if names is not None and len(names) != model.config.num_classes:
        parser.error(f"--class-names has {len(names)} labels, the model {model.config.num_classes} "
                     "classes (--set num_classes=N)")
    preprocessing = dict(args.pre) or None
    if preprocessing is not None:  # checked before the (slow) conversion
        try:
            check_preprocessing(preprocessing, model.config,
                                whole_video=getattr(model, "whole_video", False))
        except ValueError as e:
            parser.error(f"--pre: {e}")
    if os.path.exists(os.path.join(args.out, WEIGHTS_FILE)):
        parser.error(f"{args.out} already holds a model; choose a new output folder")
    load_weights(model, args.weights, ignore=args.ignore, inflate=args.inflate)
    path = save_pretrained(model, args.out, names, preset=args.model, preprocessing=preprocessing)
    print(f"wrote {args.model} ({model.config.num_classes} classes) from {args.weights} to {path}")
    return path


if __name__ == "__main__":
    main()

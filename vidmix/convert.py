"""Convert a weight file into a vidmix model and write it as an orbax checkpoint.

    python -m vidmix.convert xvit_b16 ViT-B_16.npz /ckpt/xvit_b16_k400 --set num_classes=400
    python -m vidmix.convert timesformer_b16 TimeSformer_divST_8x32_224_K400.pyth /ckpt/tsf

Any model option can be set with `--set key=value` (values are Python literals); `--ignore`
takes glob patterns as in `vidmix.load_weights`.
"""

from __future__ import annotations

import argparse
import ast
import logging

from flax import nnx

from vidmix.checkpoints import load_weights
from vidmix.checkpoints.canonical import INFLATIONS
from vidmix.checkpoints.orbax_io import save_params
from vidmix.models import create_model


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string, e.g. attention=divided


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m vidmix.convert",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("model", help="preset name, see vidmix.list_models()")
    parser.add_argument("weights", help="weight file (.npz, .safetensors, .pth, .bin, .pyth)")
    parser.add_argument("out", help="output folder for the orbax checkpoint (must not exist)")
    parser.add_argument("--set", type=_option, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ignore", action="append", default=[], metavar="GLOB")
    parser.add_argument("--inflate", choices=INFLATIONS, default="average")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    model = create_model(args.model, rngs=nnx.Rngs(0), **dict(args.set))
    load_weights(model, args.weights, ignore=args.ignore, inflate=args.inflate)
    path = save_params(model, args.out)
    print(f"wrote {args.model} ({model.config.num_classes} classes) from {args.weights} to {path}")
    return path


if __name__ == "__main__":
    main()

"""Build a dataset from the command line (TFDS shows a progress bar per split).

    python -m vidmix.data.build video_folder /videos/ucf101 /data/ucf101 --short_side 256 \
        -o split_files=/videos/ucfTrainTestlist -o split_id=1
    python -m vidmix.data.build kinetics_csv /videos/k400 /data/k400 \
        --annotations train=/videos/k400/train.csv --annotations val=/videos/k400/validate.csv
    python -m vidmix.data.build ssv2_json /videos/ssv2 /data/ssv2 -o labels=/ann/labels.json \
        --annotations train=/ann/train.json --annotations val=/ann/validation.json
    python -m vidmix.data.build synthetic - /data/synthetic -o task=rotation -o num_train=2048
    python -m vidmix.data.build video_folder /videos/ucf101 /data/ucf101 \
        --beam="--direct_num_workers=8 --direct_running_mode=multi_processing"

Prints the report (every skipped file with its reason); exits 1 if nothing could be built.
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys

from vidmix.data.annotations import KINDS
from vidmix.data.tfds_builder import build_dataset
from vidmix.errors import UserError


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _pairs(items, what):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} needs key=value, got {item!r}")
        out[key] = value
    return out


def main(argv=None) -> int:
    """The command line (`argv`, default sys.argv): builds the dataset and prints its report;
    returns the exit status (1 if no video could be built)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("source", help="the videos' root folder ('-' for synthetic)")
    p.add_argument("data_dir", help="TFDS data directory to write")
    p.add_argument("--short_side", type=int, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--beam", default=None, metavar="FLAGS",
                   help="build with Apache Beam; FLAGS are its pipeline options in one string, "
                        "after an = sign, e.g. --beam='--direct_num_workers=16 "
                        "--direct_running_mode=multi_processing'; clusters: docs/datasets.md")
    p.add_argument("--annotations", action="append", default=[],
                   help="SPLIT=FILE (repeatable), or one FILE with a split column")
    p.add_argument("-o", "--option", action="append", default=[],
                   help="KEY=VALUE keyword for the dataset kind (repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = {k: _value(v) for k, v in _pairs(args.option, "-o").items()}
    if args.annotations:
        single = len(args.annotations) == 1 and "=" not in args.annotations[0]
        options["annotations"] = (args.annotations[0] if single
                                  else _pairs(args.annotations, "--annotations"))
    try:
        report = build_dataset(args.kind, None if args.source == "-" else args.source,
                               args.data_dir, short_side=args.short_side, fps=args.fps,
                               quality=args.quality, num_workers=args.workers,
                               overwrite=args.overwrite, beam_options=args.beam, **options)
    except UserError as e:  # e.g. a split none of whose videos could be read
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0 if report.num_examples else 1


if __name__ == "__main__":
    sys.exit(main())

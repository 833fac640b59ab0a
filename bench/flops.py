"""GFLOPs per view of the presets, as XLA counts them, beside the papers' figures.

    python bench/flops.py [--frames 8 16 32] [--markdown]

GFLOPs here are multiply-adds (the papers' convention): XLA's FLOP count of the lowered forward
pass of one clip, divided by 2. The peer column is the cost of the per-frame image ViT (`vit_b16`)
on the same clip, so "x ViT" shows what each attention scheme adds over T independent frames.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from vidmix.models import model_config  # noqa: E402
from vidmix.models.cost import count_params, gmacs_per_view  # noqa: E402

# Published GFLOPs per view (totals over the views divided by the number of views).
# XViT: Bulat et al. 2021, Table 7 (1x3 views). TimeSformer: Bertasius et al. 2021, Table 1/3
# (TFLOPs over 1x3 views: 0.59 at 8x224, 5.11 for HR 16x448, 7.14 for L 96x224).
PUBLISHED = {
    ("xvit_b16", 8, 224): 425 / 3,
    ("xvit_b16", 16, 224): 850 / 3,
    ("xvit_b16", 32, 224): 1270 / 3,
    ("timesformer_b16", 8, 224): 590 / 3,
    ("timesformer_b16", 16, 448): 5110 / 3,
    ("timesformer_b16", 96, 224): 7140 / 3,
}
MODELS = ["xvit_s16", "xvit_b16", "xvit_l16", "xvit_b16_summary", "timesformer_b16",
          "timesformer_b16_joint", "timesformer_b16_space", "vit_b16"]


def rows(frames):
    runs = [(m, t, 224) for m in MODELS for t in frames]
    runs += [k for k in PUBLISHED if k not in runs]
    peer = {}
    for name, t, size in runs:
        cfg = model_config(name, num_frames=t, image_size=size)
        gf = gmacs_per_view(cfg)
        key = (t, size)
        if key not in peer:
            peer[key] = gmacs_per_view(model_config("vit_b16", num_frames=t, image_size=size))
        pub = PUBLISHED.get((name, t, size))
        yield dict(model=name, frames=t, size=size, params=count_params(cfg) / 1e6, gflops=gf,
                   vs_vit=gf / peer[key], published=pub,
                   diff=None if pub is None else 100 * (gf - pub) / pub)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    head = ("| model | frames | size | params (M) | GFLOPs/view | x ViT-B/16 per frame | "
            "published | diff |")
    print(head)
    print("|" + "---|" * 8)
    for r in rows(args.frames):
        pub = f"{r['published']:.1f}" if r["published"] else "-"
        diff = f"{r['diff']:+.1f}%" if r["diff"] is not None else "-"
        print(f"| {r['model']} | {r['frames']} | {r['size']} | {r['params']:.1f} | "
              f"{r['gflops']:.1f} | {r['vs_vit']:.2f} | {pub} | {diff} |", flush=True)


if __name__ == "__main__":
    main()

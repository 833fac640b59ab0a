"""GFLOPs per view of the presets, as XLA counts them, beside the papers' figures.

    python bench/flops.py [--frames 8 16 32]

GFLOPs here are multiply-adds (the papers' convention): XLA's FLOP count of the lowered forward
pass of one clip, divided by 2. Each row is compared with a peer counted in the same run:
- ViT-family models and VTN: the per-frame image ViT-B/16 (`vit_b16`) on the same clip, so
  "x peer" shows what each attention scheme (or VTN's temporal encoder) adds over T frames;
- PST: the same Swin with both shifts off (a 2-D Swin on every time step), so "x peer" = 1.00 is
  the paper's claim that patch shift and channel shift are free.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from vidmix.models import model_config  # noqa: E402
from vidmix.models.cost import count_params, gmacs_per_view  # noqa: E402

# Published GFLOPs per view (totals over the views divided by the number of views), with source.
# XViT: Bulat et al. 2021, Table 7 (1x3 views). TimeSformer: Bertasius et al. 2021, Table 1/3
# (TFLOPs over 1x3 views: 0.59 at 8x224, 5.11 for HR 16x448, 7.14 for L 96x224). PST: its claim is
# "the 2-D Swin's cost": Swin-T 4.5 and Swin-B 15.4 GFLOPs per 224^2 image (Liu et al. 2021) times
# 16 time steps; Video Swin (3-D windows) needs 88 (T) and 282 (B) on the same 32-frame view.
PUBLISHED = {
    ("xvit_b16", 8, 224): (425 / 3, "XViT T7"),
    ("xvit_b16", 16, 224): (850 / 3, "XViT T7"),
    ("xvit_b16", 32, 224): (1270 / 3, "XViT T7"),
    ("timesformer_b16", 8, 224): (590 / 3, "TimeSformer T1"),
    ("timesformer_b16", 16, 448): (5110 / 3, "TimeSformer-HR T3"),
    ("timesformer_b16", 96, 224): (7140 / 3, "TimeSformer-L T3"),
    ("pst_tiny", 32, 224): (16 * 4.5, "16 x 2-D Swin-T (Video Swin-T: 88)"),
    ("pst_base", 32, 224): (16 * 15.4, "16 x 2-D Swin-B (Video Swin-B: 282)"),
}
MODELS = ["xvit_s16", "xvit_b16", "xvit_l16", "xvit_b16_summary", "timesformer_b16",
          "timesformer_b16_joint", "timesformer_b16_space", "vit_b16", "vtn_vit_b16",
          "pst_tiny", "pst_base"]
NO_SHIFTS = dict(patch_shift=False, channel_shift=False)


def peer(name: str, cfg):
    """(peer label, its config) for the model `name` of config `cfg`."""
    if name.startswith("pst_"):
        return "2-D Swin", cfg.replace(**NO_SHIFTS)
    return "ViT-B/16 per frame", model_config("vit_b16", num_frames=cfg.num_frames,
                                              image_size=cfg.image_size)


def rows(frames):
    runs = [(m, t, 224) for m in MODELS for t in frames]
    runs += [("vtn_vit_b16", 250, 224)]  # VTN's whole-video view (the release's 250 frames)
    runs += [k for k in PUBLISHED if k not in runs]
    cache = {}

    def cost(cfg):
        if cfg not in cache:
            cache[cfg] = gmacs_per_view(cfg)
        return cache[cfg]

    for name, t, size in runs:
        cfg = model_config(name, num_frames=t, image_size=size)
        gf = cost(cfg)
        peer_name, peer_cfg = peer(name, cfg)
        pub, source = PUBLISHED.get((name, t, size), (None, ""))
        yield dict(model=name, frames=t, size=size, params=count_params(cfg) / 1e6, gflops=gf,
                   peer=peer_name, vs_peer=gf / cost(peer_cfg), published=pub, source=source,
                   diff=None if pub is None else 100 * (gf - pub) / pub)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    print("| model | frames | size | params (M) | GFLOPs/view | peer | x peer | published | "
          "diff |")
    print("|" + "---|" * 9)
    for r in rows(args.frames):
        pub = f"{r['published']:.1f} ({r['source']})" if r["published"] else "-"
        diff = f"{r['diff']:+.1f}%" if r["diff"] is not None else "-"
        print(f"| {r['model']} | {r['frames']} | {r['size']} | {r['params']:.1f} | "
              f"{r['gflops']:.1f} | {r['peer']} | {r['vs_peer']:.2f} | {pub} | {diff} |",
              flush=True)


if __name__ == "__main__":
    main()

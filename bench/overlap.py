"""Is training input-bound? The train step fed by the real loader, with and without prefetching,
against the same step on one constant batch already on the mesh, in one run.

    python bench/overlap.py [--steps 12] [--rounds 3] [--image 112] [--width 384] [--depth 12]
        [--workers 0 2]

The data: the built-in synthetic task generated at 160 px (16-frame videos), read by the train
loader (random resized crop to `--image`, flip; 8-frame clips at stride 2, batch 8, uint8). The
model: XViT at ViT-S width (`--width`, `--depth`, 6 heads, 16x16 patches), float32, the trainer's
jitted step (forward, backward, AdamW). Rows, interleaved in every round:
  constant  one batch, put on the mesh once, every step (no input work at all);
  loader    next batch read, then put on the mesh, then the step (no overlap but JAX's async
            dispatch: the read of batch n+1 starts once step n is dispatched);
  prefetch  the trainer's loop: `vidmix.training.prefetch.Prefetch` reads and puts the next batch
            in a thread while the step runs.
"input-bound" is the share of a step's time that the constant batch does not spend:
1 - t(constant) / t(row), medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from configs.default import get_config  # noqa: E402
from vidmix.data.from_config import train_loader  # noqa: E402
from vidmix.training import mesh as mesh_lib  # noqa: E402
from vidmix.training.prefetch import Prefetch  # noqa: E402
from vidmix.training.steps import make_train_step  # noqa: E402
from vidmix.training.trainer import setup  # noqa: E402


def experiment(args, root: str, workers: int):
    c = get_config()
    c.data.dir = os.path.join(root, "data")
    c.data.build.update(num_train=64, num_val=8, num_frames=16, size=160)
    c.data.update(num_frames=8, image_size=args.image, stride=2, worker_count=workers,
                  pixel_stats="model")  # the demo's crop: random resized, area 0.6-1
    c.model.name = "xvit_s16"
    c.model.overrides = dict(width=args.width, depth=args.depth, num_heads=6, patch_size=16,
                             drop_path_rate=0.0, head_dropout_rate=0.0)
    c.train.batch_size = 8
    return c, setup(c, os.path.join(root, "run"))


def timed(step, state, rest, next_batch, steps: int) -> tuple[float, dict]:
    """Seconds per step over `steps` steps, synchronised at the end."""
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, next_batch(), rest)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / steps, state


def measure(args, root: str, workers: int) -> list[tuple]:
    """(workers, feed, ms/step, clips/s, input-bound) rows for one worker count."""
    config, exp = experiment(args, root, workers)
    step = jax.jit(make_train_step(exp.graphdef, exp.tx, num_classes=2, seed=0,
                                   stochastic=False), donate_argnums=0)

    def put(batch):
        return mesh_lib.global_batch(batch, exp.mesh)

    it = iter(train_loader(config, exp.data_dir, 8))
    constant = put(next(it))  # before the thread owns the iterator
    batches = Prefetch(it, put)
    raw = iter(train_loader(config, exp.data_dir, 8))  # read, then put, in line
    next(raw)  # its workers started before the clock
    feeds = {"constant": lambda: constant, "loader": lambda: put(next(raw)),
             "prefetch": lambda: next(batches)}
    _, state = timed(step, exp.state, exp.rest, feeds["constant"], 2)  # compile, warm up
    times = {name: [] for name in feeds}
    for _ in range(args.rounds):
        for name, feed in feeds.items():
            seconds, state = timed(step, state, exp.rest, feed, args.steps)
            times[name].append(seconds)
    batches.close()
    it.close()
    raw.close()
    base = statistics.median(times["constant"])
    rows = []
    for name, ts in times.items():
        t = statistics.median(ts)
        rows.append((workers, name, t * 1e3, 8 / t, 1 - base / t))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", type=int, default=112)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {os.cpu_count()} cores; XViT width {args.width}, depth "
          f"{args.depth}, 8x{args.image}^2 clips, batch 8, float32; {args.rounds} rounds of "
          f"{args.steps} steps", flush=True)
    with tempfile.TemporaryDirectory() as root:
        rows = [row for workers in args.workers for row in measure(args, root, workers)]
    print("\n| grain workers | feed | ms/step | clips/s | input-bound |\n|---|---|---|---|---|")
    for workers, name, ms, clips, bound in rows:
        print(f"| {workers} | {name} | {ms:,.0f} | {clips:.2f} | {bound:.0%} |")


if __name__ == "__main__":
    main()

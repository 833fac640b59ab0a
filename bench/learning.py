"""Does a model learn time from scratch? Train it on a synthetic temporal task and watch the loss.

    python bench/learning.py --model xvit_s16 --set head=temporal_attention [--task direction]
        [--steps 1500] [--lr 1e-3] [--warmup 100] [--init default] [--json out.json]

A plain optax loop through the public API (`vidmix.create_model`, `vidmix.training.steps`):
AdamW (weight decay 0.05, not on biases, norms and embeddings... as `decay_mask="all"` says:
every parameter), a linear warm-up then cosine decay, batch 32, on clips of the built-in
synthetic tasks (`vidmix.data.synthetic`), made in memory: 8 frames of 32x32 taken at stride 2
from 16-frame videos (random start 0 or 1). Models are shrunk to width 64, depth 4, 4x4 patches
unless --set says otherwise. Prints the loss every 50 steps, the plateau length (steps until the
smoothed loss first falls below 0.9 ln 2) and the final eval accuracy on 256 held-out videos.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from vidmix.data.synthetic import TASKS, make_video  # noqa: E402
from vidmix.models import create_model  # noqa: E402
from vidmix.training.steps import make_eval_step, make_train_step, split_model  # noqa: E402

SMALL = dict(width=64, depth=4, num_heads=4, patch_size=4)


def make_videos(task: str, n: int, seed: int, frames: int = 16, size: int = 32):
    labels = np.arange(n) % 2
    videos = np.stack([make_video(task, int(y), seed * 100_003 + i, num_frames=frames, size=size)
                       for i, y in enumerate(labels)])
    return videos, labels


def clips(videos, rng, num_frames=8, stride=2, train=True):
    """(N, 16, H, W, 3) uint8 -> normalised clips (N, 8, H, W, 3): frames start, start+2, ..."""
    starts = rng.integers(0, 2, len(videos)) if train else np.zeros(len(videos), int)
    idx = starts[:, None] + stride * np.arange(num_frames)[None]
    x = np.take_along_axis(videos, idx[:, :, None, None, None], axis=1)
    return (x.astype(np.float32) / 127.5 - 1.0)


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def experiment_model(args, overrides):
    """The model, with the experiment's init variants patched in (measurement only)."""
    from flax import nnx

    from vidmix.models import heads, layers
    trunc = nnx.initializers.truncated_normal(stddev=0.02)
    saved = (layers.dense_init, heads.dense_init, heads.zeros)
    if args.kernel_init == "trunc02":
        layers.dense_init = heads.dense_init = trunc
    if args.classifier_init == "trunc02":
        heads.zeros = trunc
    elif args.classifier_init == "torch":
        heads.zeros = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    try:
        model = create_model(args.model, rngs=nnx.Rngs(args.seed), **overrides)
    finally:
        layers.dense_init, heads.dense_init, heads.zeros = saved
    if args.head_positions:  # learned temporal positions added to the TA head's frame features
        head = model.head
        head.positions = nnx.Param(trunc(jax.random.key(args.seed + 11),
                                         (overrides["num_frames"], overrides["width"])))
        plain = type(head).__call__

        def with_positions(self, feats, *, train=False):
            return plain(self, feats + self.positions[...].astype(feats.dtype), train=train)

        type(head).__call__ = with_positions
    if args.temporal_embed_init == "trunc02" and model.backbone.temporal_embed is not None:
        t = model.backbone.temporal_embed
        t[...] = trunc(jax.random.key(args.seed + 7), t[...].shape)
    return model


def run(args) -> dict:
    overrides = dict(SMALL, num_classes=2, num_frames=8, image_size=32)
    overrides.update({k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    model = experiment_model(args, overrides)
    graphdef, params, rest = split_model(model)
    sched = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(sched, weight_decay=args.weight_decay))
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    step = jax.jit(make_train_step(graphdef, tx, num_classes=2, seed=args.seed,
                                   stochastic=True), donate_argnums=0)
    evaluate = jax.jit(make_eval_step(graphdef))

    train_v, train_y = make_videos(args.task, args.num_train, seed=1)
    val_v, val_y = make_videos(args.task, 256, seed=2)
    rng = np.random.default_rng(args.seed)
    losses, start = [], time.perf_counter()
    for i in range(args.steps):
        pick = rng.integers(0, len(train_v), args.batch)
        batch = {"video": clips(train_v[pick], rng), "label": train_y[pick],
                 "mask": np.ones(args.batch, np.float32)}
        state, metrics = step(state, batch, rest)
        losses.append(float(metrics["loss"]))
        if (i + 1) % 50 == 0 and not args.quiet:
            print(f"step {i + 1:5d} loss {np.mean(losses[-50:]):.4f}", flush=True)
    seconds = time.perf_counter() - start
    logits = evaluate(state["params"], {"video": clips(val_v, rng, train=False)}, rest)
    accuracy = float((np.asarray(logits).argmax(-1) == val_y).mean())
    smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
    below = np.nonzero(smooth < 0.9 * math.log(2))[0]
    plateau = int(below[0]) + 20 if len(below) else None
    return dict(model=args.model, overrides=overrides, kernel_init=args.kernel_init,
                classifier_init=args.classifier_init,
                temporal_embed_init=args.temporal_embed_init,
                head_positions=args.head_positions,
                task=args.task, steps=args.steps, lr=args.lr, warmup=args.warmup,
                plateau_steps=plateau, eval_accuracy=accuracy, seconds=round(seconds, 1),
                losses=[round(v, 4) for v in losses])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="xvit_s16")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    parser.add_argument("--task", default="direction", choices=sorted(TASKS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernel-init", default="default", choices=["default", "trunc02"])
    parser.add_argument("--classifier-init", default="default",
                        choices=["default", "trunc02", "torch"])
    parser.add_argument("--temporal-embed-init", default="default", choices=["default", "trunc02"])
    parser.add_argument("--head-positions", action="store_true")
    parser.add_argument("--json", help="write the result (with the loss curve) here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()

"""Train-step throughput, model FLOP utilisation and peak memory of the attention schemes.

    python bench/train.py [--size S] [--image 112] [--batch 4] [--frames 8 16] [--dtype float32]

One process, one device (whatever JAX picks: CPU here, a GPU when there is one). For each model
the jitted train step (forward, backward, SGD update) runs on random clips; clips/s is measured
after compilation. MFU = XLA's FLOP count of the step / step time / the device's matmul rate,
measured in the same run with a large matmul of the same dtype. Memory: XLA's peak temporary
buffer size of the compiled step, without remat and with "full" remat on the scanned blocks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from vidmix.models import create_model  # noqa: E402
from vidmix.models.config import VIT_SIZES  # noqa: E402
from vidmix.models.layers import unchunked  # noqa: E402
from vidmix.models.stack import unrolled  # noqa: E402
from vidmix.training.steps import make_train_step, split_model  # noqa: E402

MODELS = {"xvit (mixing)": "xvit_b16", "timesformer divided": "timesformer_b16",
          "timesformer joint": "timesformer_b16_joint"}


def matmul_rate(dtype, n=2048, repeats=5):
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def compiled_step(preset, frames, args, remat="none"):
    model = create_model(preset, num_classes=400, num_frames=frames, image_size=args.image,
                         dtype=args.dtype, remat=remat, head_dropout_rate=0.0,
                         **VIT_SIZES[args.size])
    graphdef, params, rest = split_model(model)
    tx = optax.sgd(0.01, momentum=0.9)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    batch = {"video": jax.random.normal(jax.random.key(0), (args.batch, frames, args.image,
                                                             args.image, 3), jnp.float32),
             "label": jnp.zeros((args.batch,), jnp.int32), "mask": jnp.ones((args.batch,))}
    step = jax.jit(make_train_step(graphdef, tx, num_classes=400), donate_argnums=0)
    compiled = step.lower(state, batch, rest).compile()
    with unrolled(), unchunked():  # XLA counts a loop body once: count every layer
        flops = step.lower(state, batch, rest).cost_analysis()["flops"]
    return compiled, state, batch, rest, flops


def measure(preset, frames, args):
    compiled, state, batch, rest, flops = compiled_step(preset, frames, args)
    state, _ = compiled(state, batch, rest)  # warm-up
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, batch, rest)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / args.steps
    memory = {}
    for remat in ("none", "full"):
        c = compiled_step(preset, frames, args, remat)[0]
        memory[remat] = c.memory_analysis().temp_size_in_bytes / 2**20
    return args.batch / seconds, flops / seconds, memory


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="S", choices=sorted(VIT_SIZES))
    p.add_argument("--image", type=int, default=112)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    peak = matmul_rate(jnp.dtype(args.dtype))
    device = jax.devices()[0]
    print(f"{device.platform} ({device.device_kind}), ViT-{args.size}/16 at {args.image}px, "
          f"batch {args.batch}, {args.dtype}; measured matmul rate {peak / 1e9:.1f} GFLOP/s")
    print("| model | frames | clips/s | x XViT | TFLOP/s | MFU | peak temp MiB | with remat |")
    print("|---|---|---|---|---|---|---|---|")
    for frames in args.frames:
        base = None
        for name, preset in MODELS.items():
            clips, rate, memory = measure(preset, frames, args)
            base = base or clips
            print(f"| {name} | {frames} | {clips:.2f} | {clips / base:.2f} | {rate / 1e12:.3f} | "
                  f"{rate / peak:.0%} | {memory['none']:.0f} | {memory['full']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

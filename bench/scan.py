"""Scanned layers: train-step memory per remat policy, and compile time against depth.

    python bench/scan.py [--frames 16] [--image 224] [--batch 2] [--sizes B L]

Memory: XLA's temporary buffer size of the compiled XViT-B/16 train step (forward, backward, SGD)
for each remat policy, against "none" in the same run, and whether the gradients equal those of
"none" (a small model, executed). Compile time: the XViT train step at each ViT size (lower +
compile, no execution), against the first. Nothing runs at full size: only XLA's analysis of the
compiled program, so it works on a CPU.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vidmix.models import create_model
from vidmix.models.config import VIT_SIZES
from vidmix.models.stack import REMAT_POLICIES
from vidmix.training.steps import make_train_step, split_model


def train_step(preset, *, frames, image, batch, **overrides):
    """(lowered-and-compiled train step, seconds to compile, its inputs)."""
    model = create_model(preset, num_classes=400, num_frames=frames, image_size=image,
                         head_dropout_rate=0.0, **overrides)
    graphdef, params, rest = split_model(model)
    tx = optax.sgd(0.01, momentum=0.9)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    data = {"video": jnp.zeros((batch, frames, image, image, 3), jnp.float32),
            "label": jnp.zeros((batch,), jnp.int32), "mask": jnp.ones((batch,))}
    step = jax.jit(make_train_step(graphdef, tx, num_classes=400))
    start = time.perf_counter()
    compiled = step.lower(state, data, rest).compile()
    return compiled, time.perf_counter() - start, (state, data, rest)


def temp_mib(compiled) -> float:
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def gradients(remat: str, frames=4, image=32):
    model = create_model("xvit_b16", num_classes=10, num_frames=frames, image_size=image,
                         patch_size=8, width=64, depth=4, num_heads=4, remat=remat,
                         head_dropout_rate=0.0)
    graphdef, params, rest = split_model(model)
    video = jax.random.normal(jax.random.key(0), (2, frames, image, image, 3))

    def loss(p, r):  # the random state passed in, not closed over (NNX trace levels)
        return (nnx.merge(graphdef, p, r)(video) ** 2).sum()

    return jax.tree.leaves(jax.jit(jax.grad(loss))(params, rest))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["B", "L"], help="ViT sizes to compile")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")

    reference = gradients("none")
    print(f"\nXViT-B/16 train step, {args.frames}x{args.image}^2, batch {args.batch}")
    print("| remat | temp MiB | vs none | compile s | grads == none |")
    print("|---|---|---|---|---|")
    base = None
    for policy in REMAT_POLICIES:
        compiled, seconds, _ = train_step("xvit_b16", frames=args.frames, image=args.image,
                                          batch=args.batch, remat=policy)
        mib = temp_mib(compiled)
        base = base or mib
        same = all(np.array_equal(a, b) for a, b in zip(gradients(policy), reference, strict=True))
        print(f"| {policy} | {mib:,.0f} | {mib / base:.2f} | {seconds:.1f} | {same} |")

    print(f"\nXViT train step, 8x{args.image}^2, batch {args.batch}: compile time by size")
    print("| size | depth | compile s | vs first |")
    print("|---|---|---|---|")
    first = None
    for name in args.sizes:
        size = VIT_SIZES[name]
        _, seconds, _ = train_step("xvit_b16", frames=8, image=args.image, batch=args.batch,
                                   **size)
        first = first or seconds
        print(f"| ViT-{name} | {size['depth']} | {seconds:.1f} | {seconds / first:.2f} |")


if __name__ == "__main__":
    main()

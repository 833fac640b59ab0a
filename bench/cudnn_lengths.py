"""cuDNN's fused attention at odd sequence lengths, against XLA's, forward and backward (GPU).

    python bench/cudnn_lengths.py [--batch 512] [--heads 12] [--head-dim 64]

cuDNN's backward takes only even sequence lengths, so a ViT's 197 tokens cannot reach it as they
are; vidmix pads them to 198 and masks the pad out through the sequence lengths
(`vidmix.models.layers.even_padded`). One row per length and implementation: ms per
forward+backward of bf16 attention (batch x length x heads x head dim; 512 = a batch of 64
clips of 8 frames), "padded" rows passing the true lengths, median of 20 after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vidmix.models.layers import even_padded  # noqa: E402


def ms_per_step(fn, args, repeats: int = 20) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def row(length: int, impl: str, padded: bool, shape) -> list:
    n, h, d = shape
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (n, length, h, d), jnp.bfloat16) for key in keys)
    if padded:
        attend = lambda q, k, v: even_padded(q, k, v, implementation=impl)
    else:
        attend = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation=impl)
    loss = lambda q, k, v: attend(q, k, v).astype(jnp.float32).sum()
    fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    lengths = "padded to even" if padded and length % 2 else "as is"
    try:
        return [length, impl, lengths, f"{ms_per_step(fn, (q, k, v)):.2f}"]
    except NotImplementedError as error:  # what cuDNN's backward raises for odd lengths
        return [length, impl, lengths, f"fails: {error}"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    args = p.parse_args()
    shape = (args.batch, args.heads, args.head_dim)
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; bf16 q, k, v of "
          f"{args.batch} x L x {args.heads} x {args.head_dim}; forward + backward")
    print("\n| length | implementation | lengths | ms |\n|---|---|---|---|")
    for length, impl, padded in ((197, "xla", False), (197, "cudnn", False),
                                 (197, "cudnn", True), (198, "xla", False),
                                 (198, "cudnn", False), (256, "xla", False),
                                 (256, "cudnn", False)):
        print("| " + " | ".join(map(str, row(length, impl, padded, shape))) + " |", flush=True)


if __name__ == "__main__":
    main()

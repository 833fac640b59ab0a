"""Scanned layers: train-step memory per remat policy, and compile time against depth.

    python bench/scan.py [--frames 16] [--image 224] [--batch 2] [--sizes B L]
                         [--families vit pst vtn] [--pst-frames 8] [--vtn-frames 16]

Memory: XLA's temporary buffer size of the compiled train step (forward, backward, SGD) for each
remat policy, against "none" in the same run, and how the gradients of a small model of the same
family compare with those of "none" (executed): XViT-B/16 (`--frames`), PST-T (`--pst-frames`)
and VTN-B (ViT-B/16 per frame + 3 Longformer layers, `--vtn-frames`). Compile time: the XViT
train step at each ViT size, and the PST train step with Swin-T's depths (2, 2, 6, 2) and Swin-B's
(2, 2, 18, 2) (lower + compile, no execution), against the first. Nothing runs at full size: only
XLA's analysis of the compiled program, so it works on a CPU. The stacks run as a loop over the
layers (`scan_unroll=1`, what makes remat save memory on a CPU and compile time flat in depth);
`--scan-unroll auto` measures the default instead.
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

# family -> (preset, name in the tables, small overrides for the executed gradient check)
FAMILIES = {
    "vit": ("xvit_b16", "XViT-B/16", dict(patch_size=8, width=64, depth=4, num_heads=4)),
    "pst": ("pst_tiny", "PST-T", dict(embed_dim=16, depths=(2, 3), num_heads=(2, 2),
                                      window_size=4)),
    "vtn": ("vtn_vit_b16", "VTN-B", dict(patch_size=8, width=64, depth=2, num_heads=4,
                                         temporal_layers=3, temporal_heads=4,
                                         temporal_mlp_dim=128, attention_window=4)),
}
SCAN_UNROLL = {"scan_unroll": 1}  # main() sets it from --scan-unroll
SWIN_DEPTHS = {"Swin-T depths": (2, 2, 6, 2), "Swin-B depths": (2, 2, 18, 2)}


def train_step(preset, *, frames, image, batch, **overrides):
    """(lowered-and-compiled train step, seconds to compile, its inputs)."""
    model = create_model(preset, num_classes=400, num_frames=frames, image_size=image,
                         head_dropout_rate=0.0, **{**SCAN_UNROLL, **overrides})
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


def gradients(preset, remat: str, frames=4, image=32, **small):
    model = create_model(preset, num_classes=10, num_frames=frames, image_size=image,
                         remat=remat, head_dropout_rate=0.0, **small)
    graphdef, params, rest = split_model(model)
    video = jax.random.normal(jax.random.key(0), (2, frames, image, image, 3))

    def loss(p, r):  # the random state passed in, not closed over (NNX trace levels)
        return (nnx.merge(graphdef, p, r)(video) ** 2).sum()

    return jax.tree.leaves(jax.jit(jax.grad(loss))(params, rest))


def compare(grads, reference) -> str:
    """"equal" (bitwise), or the largest difference relative to the largest gradient."""
    pairs = list(zip(grads, reference, strict=True))
    if all(np.array_equal(a, b) for a, b in pairs):
        return "equal"
    scale = max(float(np.abs(b).max()) for _, b in pairs)
    return f"{max(float(np.abs(a - b).max()) for a, b in pairs) / scale:.0e}"


def remat_table(family: str, *, frames: int, image: int, batch: int) -> None:
    preset, name, small = FAMILIES[family]
    reference = gradients(preset, "none", **small)
    print(f"\n{name} train step, {frames}x{image}^2, batch {batch}")
    print("| remat | temp MiB | vs none | compile s | grads vs none |")
    print("|---|---|---|---|---|")
    base = None
    for policy in REMAT_POLICIES:
        compiled, seconds, _ = train_step(preset, frames=frames, image=image, batch=batch,
                                          remat=policy)
        mib = temp_mib(compiled)
        base = base or mib
        same = compare(gradients(preset, policy, **small), reference)
        print(f"| {policy} | {mib:,.0f} | {mib / base:.2f} | {seconds:.1f} | {same} |")


def encoder_mib(policy: str, length: int, batch: int) -> float:
    """Temp memory of the compiled gradient of VTN-B's Longformer encoder alone."""
    model = nnx.eval_shape(lambda: create_model("vtn_vit_b16", remat=policy, rngs=nnx.Rngs(0),
                                                **SCAN_UNROLL))
    graphdef, params, rest = split_model(model.temporal)
    x = jax.ShapeDtypeStruct((batch, length, model.config.width), jnp.float32)
    ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)

    def loss(p, r, x, ids):
        return (nnx.merge(graphdef, p, r)(x, position_ids=ids) ** 2).sum()

    return temp_mib(jax.jit(jax.grad(loss)).lower(params, rest, x, ids).compile())


def encoder_table(length: int, batch: int = 1) -> None:
    """In VTN the per-frame ViT's memory hides the encoder's: here it is alone."""
    print(f"\nVTN-B's Longformer encoder alone (3 layers, window 18), {length:,} tokens, batch "
          f"{batch}: gradient")
    print("| remat | temp MiB | vs none |")
    print("|---|---|---|")
    base = None
    for policy in REMAT_POLICIES:
        mib = encoder_mib(policy, length, batch)
        base = base or mib
        print(f"| {policy} | {mib:,.0f} | {mib / base:.2f} |")


def compile_table(title: str, preset: str, rows: dict[str, dict], *, frames: int, image: int,
                  batch: int) -> None:
    print(f"\n{title}, {frames}x{image}^2, batch {batch}: compile time by depth")
    print("| model | depth | compile s | vs first |")
    print("|---|---|---|---|")
    first = None
    for name, overrides in rows.items():
        _, seconds, _ = train_step(preset, frames=frames, image=image, batch=batch, **overrides)
        first = first or seconds
        depth = overrides.get("depth") or sum(overrides["depths"])
        print(f"| {name} | {depth} | {seconds:.1f} | {seconds / first:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="XViT clip length")
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["B", "L"], help="ViT sizes to compile")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--pst-frames", type=int, default=8)
    parser.add_argument("--vtn-frames", type=int, default=16)
    parser.add_argument("--encoder-length", type=int, default=4096,
                        help="tokens for VTN's Longformer encoder alone")
    parser.add_argument("--scan-unroll", default="1",
                        help="the models' scan_unroll: 1 (a loop, default), auto, true or N")
    args = parser.parse_args()
    value = args.scan_unroll.lower()
    SCAN_UNROLL["scan_unroll"] = (value if value == "auto" else True if value == "true"
                                  else int(value))
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, "
          f"scan_unroll={SCAN_UNROLL['scan_unroll']!r}")
    frames = {"vit": args.frames, "pst": args.pst_frames, "vtn": args.vtn_frames}
    shape = dict(image=args.image, batch=args.batch)
    for family in args.families:
        remat_table(family, frames=frames[family], **shape)
    if "vtn" in args.families:
        encoder_table(args.encoder_length)
    if "vit" in args.families:
        compile_table("XViT train step", "xvit_b16",
                      {f"ViT-{s}": VIT_SIZES[s] for s in args.sizes}, frames=8, **shape)
    if "pst" in args.families:
        compile_table("PST train step (Swin-T width)", "pst_tiny",
                      {name: dict(depths=d) for name, d in SWIN_DEPTHS.items()},
                      frames=args.pst_frames, **shape)


if __name__ == "__main__":
    main()

"""What verifying checkpoints costs: checksums against orbax's save and restore times.

    python bench/checkpoint.py [--preset vit_b16] [--repeats 3] [--dir /tmp]

The state of a ViT-B/16 run: its parameters and AdamW's two moments (3 x 86M float32 arrays,
filled with random numbers so that they compress as trained weights do, not as zeros), on the
default device. Timed, median of `repeats`: the checksums alone (`checkpointing.checksums`, after
a first call that compiles them), blake2b over the same bytes on one thread (for reference), a
save by orbax alone and one by `Checkpoints.maybe_save` (which adds the checksums): until the call
returns (training waits this long) and until the step is on disk; a restore by orbax alone and
one by `Checkpoints.restore` (which reads the record and verifies). Restores read files just
written, so mostly from the page cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import grain  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from flax import nnx  # noqa: E402

from vidmix.models import create_model  # noqa: E402
from vidmix.training.checkpointing import Checkpoints, checksums  # noqa: E402
from vidmix.training.steps import split_model  # noqa: E402


def run_state(preset: str) -> dict:
    """Parameters and AdamW moments of `preset`'s shapes, random float32, plus the step."""
    _, abstract, _ = split_model(nnx.eval_shape(lambda: create_model(preset, num_classes=400)))
    rng = np.random.default_rng(0)
    fill = lambda a: jnp.asarray(rng.standard_normal(a.shape, np.float32) * 0.02)
    return {"params": jax.tree.map(fill, abstract),
            "opt_state": {"mu": jax.tree.map(fill, abstract), "nu": jax.tree.map(fill, abstract)},
            "step": jnp.zeros((), jnp.int32)}


class Clock:
    """Wall and CPU seconds (CPU: every thread of this process) since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `repeats` calls of `fn`."""
    samples = []
    for _ in range(repeats):
        clock = Clock()
        fn()
        samples.append(clock.read())
    return median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="vit_b16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the checkpoints are written")
    args = parser.parse_args()
    state = run_state(args.preset)
    leaves = jax.tree.leaves(state)
    nbytes = sum(x.nbytes for x in leaves)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
    work = tempfile.mkdtemp(dir=args.dir)
    ckpt = Checkpoints(os.path.join(work, "checkpoints"))
    steps = iter(range(1, 10**6))
    rows = [("checksums, first call (compiles)", timed(lambda: checksums(state), 1)),
            ("checksums", timed(lambda: checksums(state), args.repeats)),
            ("blake2b of the same bytes, one thread (reference)", timed(
                lambda: [hashlib.blake2b(np.asarray(x).data).digest() for x in leaves],
                args.repeats))]
    orbax_alone = lambda: ckpt.manager.save(next(steps), force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
    with_checksums = lambda: ckpt.maybe_save(next(steps), state, iterator, force=True)
    for name, save in (("orbax alone", orbax_alone), ("with checksums", with_checksums)):
        returned, on_disk = [], []
        for _ in range(args.repeats):
            clock = Clock()
            save()
            returned.append(clock.read())
            ckpt.wait()
            on_disk.append(clock.read())
        rows += [(f"save, {name}: until the call returns", median(returned)),
                 (f"save, {name}: until on disk", median(on_disk))]
    last = ckpt.latest_step()  # saved with checksums
    target = ocp.args.StandardRestore(jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings))
    rows.append(("restore, orbax alone", timed(lambda: jax.block_until_ready(ckpt.manager.restore(
        last, args=ocp.args.Composite(state=target))["state"]), args.repeats)))
    rows.append(("restore with verification (Checkpoints.restore)", timed(
        lambda: jax.block_until_ready(ckpt.restore(state, shardings, iterator)), args.repeats)))
    ckpt.close()
    shutil.rmtree(work)

    print(f"{args.preset}: {sum(x.size for x in jax.tree.leaves(state['params'])) / 1e6:.1f}M "
          f"parameters, {len(leaves)} arrays, {nbytes / 2**30:.2f} GiB (params + AdamW mu, nu); "
          f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPU(s); median of {args.repeats}")
    print("\n| operation | wall s | CPU s |\n|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

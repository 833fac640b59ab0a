"""Where an XViT-B/16 train step spends its time on a GPU, and what changes it (bf16).

    XLA_PYTHON_CLIENT_MEM_FRACTION=.95 python bench/gpu_profile.py --out DIR \
        [--sections profile variants] [--batch 32] [--rounds 5] [--steps 3]

`profile`: a trace of a few steps of each variant in `--profile` (`jax.profiler`), read back
with `jax.profiler.ProfileData`: the GPU's kernel time by class (matrix products, fused
attention, the other fusions: elementwise work, reductions, copies), the busiest kernels, and
kernel time against wall time (tracing slows the host: read the shares, not the wall time).
`variants`: the step changed one way at a time (`VARIANTS`: the loop over the layers unrolled
or not, with and without remat, the GELU not rematerialised, no XViT shift, bf16 parameters, a
larger batch), timed interleaved with the default step (ratios within a round, median over
rounds), with XLA's temporary memory and the compile time. XLA flags are process-wide: run the
script once more with `XLA_FLAGS=...` and compare its rows with the first run's (across
processes: a coarser comparison).

`--tiny` runs the same code at toy sizes (a dry run on a CPU: the profile then finds no GPU
plane and says so).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import gc
import glob
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vidmix.models import layers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402
from scan import temp_mib  # noqa: E402
from train import TINY, Report, Runner, spread, vit  # noqa: E402

# kernel name -> class; the first pattern that matches wins (cuDNN also runs the patch
# embedding's convolution: "implicit_gemm" kernels are matrix products)
KERNEL_CLASSES = (
    ("attention (cuDNN)", re.compile(r"sdpa|fmha|flash|attention|cudnn::fusion", re.I)),
    ("matrix products", re.compile(r"gemm|gemv|nvjet|xmma|cutlass|cublas|matmul|wgmma|"
                                   r"triton_(gemm|dot)|convolution", re.I)),
    ("copies and memsets", re.compile(r"memcpy|memset|copy", re.I)),
    ("reductions", re.compile(r"reduce|reduction", re.I)),
    ("transposes", re.compile(r"transpose", re.I)),
)


def kernel_class(name: str) -> str:
    return next((label for label, pattern in KERNEL_CLASSES if pattern.search(name)),
                "other fusions (elementwise)")


def trace_kernels(run, steps: int) -> tuple[dict[str, list[float]], float, list[str]]:
    """(kernel name -> [total ns, count] on the GPU, wall ns, the GPU plane's line names) of
    `steps` calls of `run`, traced. Kernels are the events of the device plane's stream lines
    (the other lines, 'XLA Modules', 'XLA Ops', 'Steps', repeat the same time by other names)."""
    from jax.profiler import ProfileData

    run()
    with tempfile.TemporaryDirectory() as logdir:
        start = time.perf_counter_ns()
        with jax.profiler.trace(logdir):
            for _ in range(steps):
                run()
        wall = time.perf_counter_ns() - start
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        profile = ProfileData.from_file(files[-1])
    lines = [(f"{plane.name} / {line.name}", line) for plane in profile.planes
             if plane.name.startswith("/device:") for line in plane.lines]
    streams = [line for name, line in lines if "stream" in name.lower()]
    if not streams:  # another naming: every line but those that repeat the kernels' time
        streams = [line for name, line in lines if not re.search(
            r"module|xla ops|step|launch|source|framework", name, re.I)]
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for line in streams:
        for event in line.events:
            totals[event.name][0] += event.duration_ns
            totals[event.name][1] += 1
    return dict(totals), wall, [name for name, _ in lines]


def profile(report: Report, setup, args) -> None:
    """Kernel time by class and the busiest kernels of each variant in `args.profile`."""
    for name in args.profile:
        run, *_ = build(name, setup, args)
        profile_one(report, name, run, setup, args)
        del run
        gc.collect()


def profile_one(report: Report, name: str, run, setup, args) -> None:
    totals, wall, lines = trace_kernels(run, args.profile_steps)
    report.data["device lines"] = lines
    if not totals:
        report.table(f"GPU kernel time by class: {name}", ["class", "ms/step", "share"],
                     [["no GPU stream lines in the trace", "", ""]],
                     note=f"device lines: {lines or 'none'}")
        return
    report.data.setdefault("kernels", {})[name] = sorted(
        ([kernel, ns, n] for kernel, (ns, n) in totals.items()), key=lambda row: -row[1])[:400]
    busy = sum(t for t, _ in totals.values())
    steps = args.profile_steps
    by_class: dict[str, float] = collections.defaultdict(float)
    for kernel, (ns, _) in totals.items():
        by_class[kernel_class(kernel)] += ns
    flops = train.step_flops(VARIANTS[name].preset, setup)
    rows = [[label, ns / steps / 1e6, f"{ns / busy:.1%}"]
            for label, ns in sorted(by_class.items(), key=lambda kv: -kv[1])]
    rows.append(["all kernels", busy / steps / 1e6, "100%"])
    rows.append(["wall (traced)", wall / steps / 1e6, f"GPU busy {busy / wall:.1%}"])
    matmul = by_class.get("matrix products", 0.0) + by_class.get("attention (cuDNN)", 0.0)
    report.table(
        f"GPU kernel time by class: {name}", ["class", "ms/step", "share"], rows,
        note=f"{setup.describe()}; attention {args.impl}; {steps} traced steps; the step's "
             f"{flops / 1e12:.1f} TFLOP over the matrix-product and attention kernels' time "
             f"alone: {flops / (matmul / steps / 1e9) / 1e12:.0f} TFLOP/s" if matmul else "")
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[:args.top]
    report.table(
        f"busiest kernels: {name}", ["kernel", "class", "ms/step", "calls/step", "share"],
        [[kernel[:90], kernel_class(kernel), ns / steps / 1e6, count / steps, f"{ns / busy:.1%}"]
         for kernel, (ns, count) in top], note="kernel names cut at 90 characters")


@contextlib.contextmanager
def gelu_plain():
    """The MLP's GELU without its `jax.checkpoint` (JAX keeps the derivative's terms)."""
    saved = layers.gelu
    layers.gelu = lambda x: jax.nn.gelu(x, approximate=False)
    try:
        yield
    finally:
        layers.gelu = saved


def as_bf16(state):
    """The train state with every float32 array (parameters, momentum) cast to bfloat16."""
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16) if a.dtype == jnp.float32 else a, state)


@dataclasses.dataclass(frozen=True)
class Variant:
    """The XViT-B step changed one way: another preset, model options, batch, a context while
    tracing, a change of the train state."""

    preset: str = "xvit_b16"
    overrides: dict = dataclasses.field(default_factory=dict)
    batch_factor: int = 1
    context: Callable = contextlib.nullcontext
    cast: Callable | None = None


VARIANTS = {
    "default": Variant(),
    "loop over layers (scan_unroll=1)": Variant(overrides={"scan_unroll": 1}),
    "scan_unroll=2": Variant(overrides={"scan_unroll": 2}),
    "scan_unroll=4": Variant(overrides={"scan_unroll": 4}),
    "remat full, loop": Variant(overrides={"remat": "full", "scan_unroll": 1}),
    "remat full, unrolled": Variant(overrides={"remat": "full", "scan_unroll": True}),
    "remat dots, loop": Variant(overrides={"remat": "dots", "scan_unroll": 1}),
    "remat dots, unrolled": Variant(overrides={"remat": "dots", "scan_unroll": True}),
    "GELU not rematerialised": Variant(context=gelu_plain),
    "no shift (space only)": Variant(preset="timesformer_b16_space"),
    "bf16 parameters": Variant(cast=as_bf16),
    "batch x2": Variant(batch_factor=2),
}
DEFAULT_VARIANTS = list(VARIANTS)[:8]


def build(name: str, setup, args):
    """(Runner, clips per step, temporaries in MiB, compile seconds) of variant `name`."""
    variant = VARIANTS[name]
    clip = setup.replace(batch=variant.batch_factor * setup.batch)
    model = clip.model(variant.preset, attention_impl=args.impl, **variant.overrides)
    step, state, batch, rest = train.inputs(model, clip)
    state = variant.cast(state) if variant.cast else state
    start = time.perf_counter()
    with variant.context():
        compiled = step.lower(state, batch, rest).compile()
    seconds = time.perf_counter() - start
    return Runner(compiled, state, batch, rest), clip.batch, temp_mib(compiled), seconds


def variants(report: Report, setup, args) -> None:
    """Each variant's step time against the default's, interleaved; clips/s per variant."""
    runs, info = {}, {}
    for name in args.variants:
        try:
            run, clips, mib, seconds = build(name, setup, args)
            runs[name], info[name] = run, (clips, mib, seconds)
            print(f"  {name}: compiled in {seconds:.0f} s, {mib:,.0f} MiB", flush=True)
        except Exception as error:  # noqa: BLE001 (out of memory is a result)
            if not train.is_oom(error):
                raise
            print(f"  {name}: out of memory", flush=True)
            gc.collect()
    seconds, _ = train.interleaved(runs, args.rounds, args.steps)
    base = "default" if "default" in runs else next(iter(runs))
    rows = []
    for name in args.variants:
        if name not in runs:
            rows.append([name, "out of memory", "", "", "", ""])
            continue
        clips, mib, compile_s = info[name]
        per_clip = [(s / clips) / (b / info[base][0])
                    for s, b in zip(seconds[name], seconds[base], strict=True)]
        step = statistics.median(seconds[name])
        rows.append([name, clips / step, 1e3 * step, spread([1 / r for r in per_clip]),
                     mib / 1024, compile_s])
    report.table(
        "variants of the XViT-B/16 train step",
        ["variant", "clips/s", "ms/step", f"clips/s vs {base}: median (min-max)",
         "temporaries GiB", "compile s"], rows,
        note=f"{setup.describe()}; attention {args.impl}; {args.rounds} rounds of "
             f"{args.steps} steps, interleaved; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", nargs="+", default=["profile", "variants"],
                   choices=["profile", "variants"])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--profile", nargs="+", default=["loop over layers (scan_unroll=1)",
                                                   "default"], choices=list(VARIANTS),
                   help="the variants profiled")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--impl", default="cudnn", help="attention_impl of every model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25, help="kernels listed in the profile")
    p.add_argument("--tiny", action="store_true", help="toy sizes (dry run on a CPU)")
    p.add_argument("--out", help="directory for the JSON results")
    args = p.parse_args(argv)
    setup = TINY if args.tiny else vit("B", frames=8, image=224, batch=args.batch)
    setup = setup.replace(dtype="bfloat16")
    if args.tiny:
        args.impl = "auto"
    report = Report(train.environment(), args.out, "gpu_profile.json")
    if "profile" in args.sections:
        profile(report, setup, args)
    if "variants" in args.sections:
        variants(report, setup, args)


if __name__ == "__main__":
    main()

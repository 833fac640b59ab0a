"""Train-step benchmark: vidmix against transformers' TimeSformer, remat, compile time, bf16; GPU.

CPU (default), all sections, ViT-S/16 width at 8x112^2, batch 4, float32:

    python bench/train.py [--sections peers remat compile bf16] [--rounds 5] [--steps 2]

GPU (an accelerator image with jax, flax and optax; no data stack, no torch needed), bf16; let
JAX take more than its default 75% of the GPU's memory for the longest-clip search:

    XLA_PYTHON_CLIENT_MEM_FRACTION=.95 python bench/train.py --gpu --out DIR \
        [--sections throughput longest agreement]

and, against transformers' TimeSformer on the same GPU (torch allocates beside JAX, so JAX must
not take the memory up front):

    XLA_PYTHON_CLIENT_PREALLOCATE=false python bench/train.py --gpu --sections peers --out DIR

`--tiny` runs the same code at toy sizes (the smoke test, or a dry run on a CPU). `--out DIR`
writes every table to DIR/train_{cpu,gpu}.json as well. (bench/scan.py has the memory per remat
policy and compile time of the other families, from compilation alone.)

A train step is forward, backward and an SGD (momentum 0.9) update, jitted, dropout and stochastic
depth off on both sides; the PyTorch peer is `TimesformerForVideoClassification` built from a
`TimesformerConfig` of the same size. Timings interleave the frameworks: each round times a few
steps of every model in turn, and ratios are taken within a round (median over rounds, min-max),
so a machine that slows down for a while slows both sides of a ratio alike. FLOPs are those of
the step's matrix products and convolutions, read off its jaxpr (attention dense; within 2% of
XLA's count of everything); MFU = FLOPs / step time / peak, the peak measured with a large matmul
in the same run (and the device's nominal one where known).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.extend  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from vidmix.models import create_model  # noqa: E402
from vidmix.models.config import VIT_SIZES  # noqa: E402
from vidmix.models.layers import unchunked  # noqa: E402
from vidmix.models.stack import REMAT_POLICIES  # noqa: E402
from vidmix.training.steps import make_train_step, split_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scan import FAMILIES, compare, gradients, temp_mib  # noqa: E402

# vidmix scheme -> (preset, the transformers attention_type it is timed against)
SCHEMES = {
    "xvit (mixing)": ("xvit_b16", "space_only"),  # same FLOPs as per-frame attention
    "timesformer divided": ("timesformer_b16", "divided_space_time"),
    "timesformer joint": ("timesformer_b16_joint", "joint_space_time"),
    "space only": ("timesformer_b16_space", "space_only"),
}
NOMINAL_BF16_PEAK = {"H100": 989e12, "H200": 989e12}  # dense bf16 FLOP/s (SXM data sheets)
OFF = dict(drop_path_rate=0.0, dropout_rate=0.0, head_dropout_rate=0.0)


@dataclasses.dataclass(frozen=True)
class Setup:
    """One benchmark size: model width and depth, the clip, the batch and the dtype."""

    width: int
    depth: int
    num_heads: int
    frames: int = 8
    image: int = 112
    patch: int = 16
    batch: int = 4
    classes: int = 400
    dtype: str = "float32"
    mlp_ratio: float = 4.0

    def replace(self, **changes) -> Setup:
        return dataclasses.replace(self, **changes)

    def model(self, preset: str, **overrides) -> nnx.Module:
        return create_model(preset, num_classes=self.classes, num_frames=self.frames,
                            image_size=self.image, patch_size=self.patch, width=self.width,
                            depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                            dtype=self.dtype, **{**OFF, **overrides})

    def describe(self) -> str:
        return (f"width {self.width}, depth {self.depth}, {self.num_heads} heads, "
                f"{self.frames}x{self.image}^2 clips, patch {self.patch}, batch {self.batch}, "
                f"{self.classes} classes, {self.dtype}")


def vit(size: str, **clip) -> Setup:
    return Setup(**VIT_SIZES[size], **clip)


TINY = Setup(width=64, depth=2, num_heads=4, frames=4, image=32, batch=2, classes=10)


# -- reporting -----------------------------------------------------------------------------------

class Report:
    """Prints markdown tables as they are measured and keeps them, with `meta`, in a JSON file
    (`out`/`filename`, rewritten after every table, so a run cut short keeps what it measured)."""

    def __init__(self, meta: dict, out: str | None, filename: str):
        self.data = {"meta": meta, "tables": {}}
        self.path = os.path.join(out, filename) if out else None
        print("\n".join(f"{k}: {v}" for k, v in meta.items()), flush=True)

    def table(self, name: str, headers: list[str], rows: list[list], note: str = "") -> None:
        self.data["tables"][name] = {"headers": headers, "rows": rows, "note": note}
        lines = [f"\n### {name}", *([note] if note else []), "",
                 "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        print("\n".join(lines), flush=True)
        self.save()

    def save(self) -> None:
        if self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "w") as f:
                json.dump(self.data, f, indent=1)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:#.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def spread(values: list[float]) -> str:
    """'median (min-max)' of per-round values."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def environment() -> dict:
    device = jax.devices()[0]
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "jax": jax.__version__,
            "device": f"{device.platform} ({device.device_kind})",
            "cpu cores": os.cpu_count(), "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", ""),
            "XLA_PYTHON_CLIENT_MEM_FRACTION": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION",
                                                             "(default)"),
            "load average": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# -- one train step ------------------------------------------------------------------------------

def inputs(model, setup: Setup):
    """(step function, state, batch, rest) of a jitted train step (forward, backward, SGD)."""
    graphdef, params, rest = split_model(model)
    tx = optax.sgd(0.01, momentum=0.9)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    shape = (setup.batch, setup.frames, setup.image, setup.image, 3)
    batch = {"video": jax.random.normal(jax.random.key(0), shape, jnp.float32),
             "label": jnp.zeros((setup.batch,), jnp.int32), "mask": jnp.ones((setup.batch,))}
    step = jax.jit(make_train_step(graphdef, tx, num_classes=setup.classes), donate_argnums=0)
    return step, state, batch, rest


def compile_step(preset: str, setup: Setup, **overrides):
    """(compiled train step, seconds to lower and compile, (state, batch, rest))."""
    step, state, batch, rest = inputs(setup.model(preset, **overrides), setup)
    start = time.perf_counter()
    compiled = step.lower(state, batch, rest).compile()
    return compiled, time.perf_counter() - start, (state, batch, rest)


def step_flops(preset: str, setup: Setup) -> float:
    """FLOPs of the train step's matrix products and convolutions (`matmul_flops`), attention in
    its dense XLA form (a fused kernel's FLOPs are those of the dense products it replaces)."""
    step, state, batch, rest = inputs(setup.model(preset, attention_impl="xla"), setup)
    with unchunked():
        return matmul_flops(step, state, batch, rest)


def matmul_flops(fn: Callable, *args) -> float:
    """2 x the multiply-adds of every matrix product and convolution in `fn(*args)`'s jaxpr, a
    loop's body times its length: the FLOPs MFU counts (elementwise work left out). Read off the
    jaxpr, it is the same on every backend and jax version (jax 0.11 no longer gives a cost
    analysis of a lowered module, and a compiled module's count depends on what XLA fused)."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        out = math.prod(eqn.outvars[0].aval.shape) if eqn.outvars else 0
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * out * math.prod(lhs[i] for i in contract)
        elif eqn.primitive.name == "conv_general_dilated":  # per output: kernel size x inputs
            rhs = eqn.invars[1].aval.shape
            total += 2 * out * math.prod(rhs) / rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        inner = [_jaxpr_flops(getattr(sub, "jaxpr", sub)) for value in eqn.params.values()
                 for sub in (value if isinstance(value, tuple | list) else (value,))
                 if isinstance(sub, jax.extend.core.Jaxpr | jax.extend.core.ClosedJaxpr)]
        if inner:  # cond: the dearest branch; scan: the body times its length
            count = max(inner) if eqn.primitive.name == "cond" else sum(inner)
            total += count * eqn.params.get("length", 1)
    return total


class Runner:
    """Runs a compiled train step on its own (donated) state; `()` is one step, finished."""

    def __init__(self, compiled, state, batch, rest):
        self.compiled, self.state, self.batch, self.rest = compiled, state, batch, rest

    def __call__(self) -> None:
        self.state, metrics = self.compiled(self.state, self.batch, self.rest)
        jax.block_until_ready(metrics)


def vidmix_runner(preset: str, setup: Setup, **overrides) -> Runner:
    compiled, _, (state, batch, rest) = compile_step(preset, setup, **overrides)
    return Runner(compiled, state, batch, rest)


def torch_runner(attention_type: str, setup: Setup, device: str = "cpu") -> Callable[[], None]:
    """A train step of transformers' TimeSformer of the same size (bf16: autocast, fp32 weights),
    on the torch `device` ("cpu" or "cuda"; a CUDA step is waited for like a JAX one)."""
    import torch
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(0)
    config = TimesformerConfig(
        image_size=setup.image, patch_size=setup.patch, num_frames=setup.frames,
        hidden_size=setup.width, num_hidden_layers=setup.depth,
        num_attention_heads=setup.num_heads, intermediate_size=int(setup.width * setup.mlp_ratio),
        num_labels=setup.classes, attention_type=attention_type, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, drop_path_rate=0)
    model = TimesformerForVideoClassification(config).train().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    video = torch.randn(setup.batch, setup.frames, 3, setup.image, setup.image, device=device)
    bf16 = setup.dtype == "bfloat16"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(pixel_values=video).logits  # space_only: one row per frame
        labels = torch.zeros(len(logits), dtype=torch.long, device=device)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def interleaved(runs: dict[str, Callable[[], None]], rounds: int, steps: int):
    """Per name, the seconds per step of each round and the minor page faults per step (median);
    every round runs `steps` steps of each model in turn, after one warm-up step each."""
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    faults = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            for _ in range(steps):
                run()
            seconds[name].append((time.perf_counter() - start) / steps)
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
                                / steps)
    return seconds, {name: statistics.median(f) for name, f in faults.items()}


def matmul_rate(dtype: str, n: int, repeats: int = 20) -> float:
    """FLOP/s of an n x n @ n x n matmul in `dtype` (float32 accumulation for bf16)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32).astype(dtype))
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


# -- CPU sections --------------------------------------------------------------------------------

def peers(report: Report, setup: Setup, args, *, device: str = "cpu", **overrides) -> None:
    """vidmix's schemes and transformers' TimeSformer, timed in turn in the same rounds (torch on
    `device`; `overrides` go to every vidmix model, e.g. its attention implementation)."""
    runs, pairs = {}, {}
    for name, (preset, attention_type) in SCHEMES.items():
        runs[name] = vidmix_runner(preset, setup, **overrides)
        peer = f"transformers {attention_type}"
        if peer not in runs:
            runs[peer] = torch_runner(attention_type, setup, device)
        pairs[name] = peer
    seconds, faults = interleaved(runs, args.rounds, args.steps)
    ms = {k: 1e3 * statistics.median(v) for k, v in seconds.items()}
    rows = []
    for name, peer in pairs.items():
        speed = [p / v for v, p in zip(seconds[name], seconds[peer], strict=True)]
        rows.append([name, peer.removeprefix("transformers "), ms[name], ms[peer],
                     setup.batch / ms[name] * 1e3, setup.batch / ms[peer] * 1e3, spread(speed),
                     f"{faults[name]:,.0f} / {faults[peer]:,.0f}"])
    report.table(
        f"vidmix vs transformers TimeSformer, train step ({setup.dtype})",
        ["vidmix", "transformers peer", "vidmix ms/step", "PyTorch ms/step", "vidmix clips/s",
         "PyTorch clips/s", "vidmix speed / PyTorch: median (min-max)",
         "page faults/step vidmix / PyTorch"],
        rows, note=f"{setup.describe()}; {args.rounds} rounds of {args.steps} steps; "
                   f"vidmix {overrides or 'defaults'}; torch on {device}"
                   + (f", {_torch_threads()} threads" if device == "cpu" else ""))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def remat(report: Report, setup: Setup, args) -> None:
    """XLA temporary memory and step time of the XViT train step per remat policy."""
    runs, memory = {}, {}
    for policy in REMAT_POLICIES:
        compiled, _, (state, batch, rest) = compile_step("xvit_b16", setup, remat=policy)
        memory[policy] = temp_mib(compiled)
        runs[policy] = Runner(compiled, state, batch, rest)
    seconds, _ = interleaved(runs, args.rounds, args.steps)
    preset, _, small = FAMILIES["vit"]
    reference = gradients(preset, "none", **small)
    rows = []
    for policy in REMAT_POLICIES:
        slower = [a / b for a, b in zip(seconds[policy], seconds["none"], strict=True)]
        rows.append([policy, memory[policy], memory[policy] / memory["none"],
                     1e3 * statistics.median(seconds[policy]), spread(slower),
                     compare(gradients(preset, policy, **small), reference)])
    report.table("remat policies: XViT train step",
                 ["remat", "temp MiB", "vs none", "ms/step", "time vs none: median (min-max)",
                  "grads vs none"],
                 rows, note=f"{setup.describe()}; grads: a small XViT (bench/scan.py), "
                            "'equal' is bitwise")


def compile_time(report: Report, setups: dict[str, Setup], args) -> None:
    """Lower + compile time of the XViT train step by depth (flat with `scan_unroll=1`, a loop
    over the layers; the default unrolls them, whose compile time grows with depth)."""
    seconds = {name: [] for name in setups}
    for _ in range(args.compile_repeats):  # interleaved; the minimum is the least disturbed
        for name, setup in setups.items():
            seconds[name].append(compile_step("xvit_b16", setup)[1])
    first = min(next(iter(seconds.values())))
    rows = [[name, setup.depth, min(seconds[name]), min(seconds[name]) / first]
            for name, setup in setups.items()]
    report.table("compile time by depth: XViT train step",
                 ["size", "depth", "compile s (min)", "vs first"],
                 rows, note=f"{next(iter(setups.values())).describe()} (widths per row); "
                            f"best of {args.compile_repeats}")


def cpu_main(args) -> None:
    setup = TINY if args.tiny else vit("S")
    report = Report(environment() | {"torch threads": _torch_threads()}, args.out,
                    "train_cpu.json")
    if "peers" in args.sections:
        peers(report, setup, args)
    if "remat" in args.sections:
        remat(report, setup, args)
    if "compile" in args.sections:
        sizes = ({"tiny-2": TINY, "tiny-4": TINY.replace(depth=4)} if args.tiny else
                 {f"ViT-{s}": vit(s, frames=8, image=224, batch=2) for s in ("B", "L")})
        compile_time(report, sizes, args)
    if "bf16" in args.sections:
        peers(report, setup.replace(dtype="bfloat16"), args)
    report.data["meta"]["load average after"] = environment()["load average"]
    print(f"\nload average after: {report.data['meta']['load average after']}")
    report.save()


# -- GPU sections --------------------------------------------------------------------------------

def is_oom(error: Exception) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def throughput(report: Report, setup: Setup, args) -> None:
    """bf16 train-step clips/s and MFU, cuDNN and XLA attention, XViT-B and TimeSformer-B."""
    n = 256 if args.tiny else 8192
    measured = matmul_rate(setup.dtype, n)
    kind = jax.devices()[0].device_kind
    nominal = next((v for k, v in NOMINAL_BF16_PEAK.items() if k in kind), None)
    rows = []
    for name, frames in (("xvit (mixing)", 8), ("xvit (mixing)", 16),
                         ("timesformer divided", 8), ("timesformer joint", 8)):
        preset, clip = SCHEMES[name][0], setup.replace(frames=frames * setup.frames // 8)
        flops = step_flops(preset, clip)
        for impl in ("cudnn", "xla"):
            rows.append([name, clip.frames, impl, *gpu_row(preset, clip, impl, flops, args,
                                                             peaks=(measured, nominal))])
            print(f"  {rows[-1]}", flush=True)
    report.table(
        f"train step, {setup.dtype}: clips/s and MFU", ["model", "frames", "attention",
                                                         "clips/s", "ms/step", "TFLOP/s",
                                                         "MFU (measured peak)",
                                                         "MFU (nominal peak)"],
        rows, note=f"{setup.describe()} (frames per row); measured {n}^2 {setup.dtype} matmul "
                   f"peak {measured / 1e12:.1f} TFLOP/s; nominal dense bf16 peak "
                   f"{nominal / 1e12 if nominal else 'unknown'} TFLOP/s ({kind})")


def gpu_row(preset: str, clip: Setup, impl: str, flops: float, args, *, peaks) -> list:
    """clips/s, ms/step, TFLOP/s and MFU against each peak (measured, nominal) of one model with
    one attention implementation; the reason instead where it cannot run."""
    try:
        run = vidmix_runner(preset, clip, attention_impl=impl)
        seconds, _ = interleaved({impl: run}, args.rounds, args.steps)
    except ValueError as error:  # attention_impl="cudnn" where cuDNN cannot run
        return [f"n/a: {error}", "", "", "", ""]
    except Exception as error:  # noqa: BLE001 (out of memory is a result; anything else is not)
        if not is_oom(error):
            raise
        return ["out of memory", "", "", "", ""]
    finally:
        gc.collect()
    step_s = statistics.median(seconds[impl])
    rate = flops / step_s
    return [clip.batch / step_s, 1e3 * step_s, rate / 1e12,
            *(f"{rate / peak:.1%}" if peak else "n/a" for peak in peaks)]


def agreement(report: Report, setup: Setup, args) -> None:
    """cuDNN against XLA attention on the same weights and batch: the loss and the gradients of a
    bf16 train batch, next to what bf16 itself moves them from float32 (the scale to read it by).
    The loss is a fixed random projection of the backbone's features (a fresh classifier is zero,
    so a cross-entropy would give the backbone no gradient at all)."""
    def loss_and_grads(preset: str, dtype: str, impl: str):
        model = setup.replace(dtype=dtype).model(preset, attention_impl=impl)  # seed 0: same
        shape = (setup.batch, setup.frames, setup.image, setup.image, 3)
        video = jax.random.normal(jax.random.key(1), shape, jnp.float32)

        def loss(m):
            features = m.features(video, train=True).astype(jnp.float32)
            return jnp.mean(features * jax.random.normal(jax.random.key(2), features.shape))

        value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
        return float(value), jax.tree.leaves(nnx.state(grads, nnx.Param))

    def rel(a, b) -> float:  # relative difference of the whole gradient, one norm over leaves
        num = sum(float(jnp.sum((x.astype(jnp.float32) - y.astype(jnp.float32)) ** 2))
                  for x, y in zip(a, b, strict=True))
        return (num / sum(float(jnp.sum(y.astype(jnp.float32) ** 2)) for y in b)) ** 0.5

    rows = []
    for name in ("xvit (mixing)", "timesformer divided", "timesformer joint"):
        preset = SCHEMES[name][0]
        loss_c, grads_c = loss_and_grads(preset, "bfloat16", "auto" if args.tiny else "cudnn")
        loss_x, grads_x = loss_and_grads(preset, "bfloat16", "xla")
        loss_f, grads_f = loss_and_grads(preset, "float32", "xla")
        rows.append([name, loss_c, loss_x, loss_f, rel(grads_c, grads_x), rel(grads_x, grads_f)])
        print(f"  {rows[-1]}", flush=True)
    report.table("cuDNN vs XLA attention: loss and gradients of one batch",
                 ["model", "loss cuDNN bf16", "loss XLA bf16", "loss XLA fp32",
                  "grads cuDNN vs XLA (bf16)", "grads XLA bf16 vs fp32"],
                 rows, note=f"{setup.describe()}; same weights and batch; relative difference "
                            "of all gradients together, ||a - b|| / ||b||")


def search_longest(fits: Callable[[int], bool], start: int, cap: int, *, resolution: int = 8,
                   deadline: float = float("inf")) -> tuple[int, int | None]:
    """(largest n found with fits(n), smallest n found failing or None) for a monotone `fits`:
    doubling from `start` until a failure or past `cap`, then bisection until the bracket is
    within 1/resolution of the answer (or the `time.monotonic()` deadline passes)."""
    good, bad, n = 0, None, start
    while n <= cap:
        if not fits(n):
            bad = n
            break
        good, n = n, 2 * n
    while bad is not None and bad - good > max(1, good // resolution):
        if time.monotonic() > deadline:
            break
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good, bad


def longest(report: Report, setup: Setup, args) -> None:
    """The longest clip (frames at this image size, batch 1, "full" remat) XViT trains at."""
    trials = []

    def fits(frames: int) -> bool:
        clip = setup.replace(frames=frames, batch=1)
        start = time.perf_counter()
        try:
            vidmix_runner("xvit_b16", clip, remat="full")()
            ok, why = True, "trained"
        except Exception as error:  # noqa: BLE001 (only out-of-memory is an answer)
            if not is_oom(error):
                raise
            ok, why = False, "out of memory"
        gc.collect()
        jax.clear_caches()
        trials.append([frames, why, time.perf_counter() - start])
        print(f"  {frames} frames: {why}", flush=True)
        return ok

    good, bad = search_longest(fits, args.start_frames, args.max_frames,
                               deadline=time.monotonic() + args.search_seconds)
    report.data["longest_frames"] = {"trained": good, "failed": bad}
    report.table("longest clip XViT trains at (batch 1, remat full)",
                 ["frames", "result", "seconds"], trials,
                 note=f"{setup.describe()} (frames, batch 1); longest that trained: {good}; "
                      f"first failing: {bad if bad else f'none up to {args.max_frames}'}")


def gpu_main(args) -> None:
    setup = (TINY if args.tiny else vit("B", frames=8, image=224, batch=args.gpu_batch))
    setup = setup.replace(dtype="bfloat16")
    report = Report(environment(), args.out, "train_gpu.json")
    if "throughput" in args.sections:
        throughput(report, setup, args)
    if "longest" in args.sections:
        longest(report, setup, args)
    if "agreement" in args.sections:
        agreement(report, setup, args)
    if "peers" in args.sections:  # torch allocates beside JAX: run with JAX's preallocation off
        peers(report, setup, args, device="cpu" if args.tiny else "cuda",
              **({} if args.tiny else {"attention_impl": "cudnn"}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="the accelerator benchmark (bf16)")
    p.add_argument("--tiny", action="store_true", help="toy sizes: smoke test / dry run")
    p.add_argument("--sections", nargs="+",
                   help="CPU: peers remat compile bf16 (default all); GPU: throughput longest "
                        "(default), agreement peers")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (interleaved)")
    p.add_argument("--steps", type=int, default=2, help="steps per model per round")
    p.add_argument("--compile-repeats", type=int, default=2)
    p.add_argument("--gpu-batch", type=int, default=8)
    p.add_argument("--start-frames", type=int, help="longest-clip search start (256; tiny: 2)")
    p.add_argument("--max-frames", type=int, help="longest-clip search cap (16384; tiny: 8)")
    p.add_argument("--search-seconds", type=float, default=180,
                   help="time after which the longest-clip bisection stops")
    p.add_argument("--out", help="directory for the JSON results")
    args = p.parse_args(argv)
    sections = (("throughput", "longest", "agreement", "peers") if args.gpu else
                ("peers", "remat", "compile", "bf16"))
    args.sections = args.sections or list(sections[:2] if args.gpu else sections)
    args.start_frames = args.start_frames or (2 if args.tiny else 256)
    args.max_frames = args.max_frames or (8 if args.tiny else 16384)
    unknown = set(args.sections) - set(sections)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(sections)}")
    (gpu_main if args.gpu else cpu_main)(args)


if __name__ == "__main__":
    main()

"""bench/train.py end to end at toy sizes (a smoke test, nothing timed is checked): the CPU
comparison with transformers, and the GPU mode's code path on the CPU with the data stack, torch
and transformers unavailable, as on an accelerator image that has only jax, flax and optax."""

import json
import os
import subprocess
import sys

import pytest
from test_main import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
from train import TINY, matmul_flops, search_longest  # noqa: E402

# what an accelerator image may lack: the GPU mode must not import any of them
ABSENT = ("tensorflow_datasets", "grain", "av", "ml_collections", "torch", "transformers")
RUNNER = """import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None  # 'import name' now raises ImportError
sys.argv = {argv!r}
runpy.run_path("bench/train.py", run_name="__main__")
"""


def bench(tmp_path, *args, absent=()) -> dict:
    """Runs bench/train.py with `args` in a fresh interpreter; returns its JSON results."""
    argv = ["bench/train.py", "--tiny", "--rounds", "1", "--steps", "1", "--out", str(tmp_path),
            *args]
    out = subprocess.run([sys.executable, "-c", RUNNER.format(absent=absent, argv=argv)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    name = "train_gpu.json" if "--gpu" in args else "train_cpu.json"
    with open(tmp_path / name) as f:
        return json.load(f)


@pytest.mark.slow
def test_gpu_mode_runs_without_the_data_stack_or_torch(tmp_path):
    data = bench(tmp_path, "--gpu", "--sections", "throughput", "longest", "agreement",
                 absent=ABSENT)
    (name, throughput), (_, longest), (_, agreement) = data["tables"].items()
    assert "MFU" in name
    rows = throughput["rows"]
    assert [r[2] for r in rows] == ["cudnn", "xla"] * 4  # XViT 8 and 16 frames, divided, joint
    for row in rows:
        if row[2] == "cudnn":  # no NVIDIA GPU here: the reason, from the model option's check
            assert row[3].startswith("n/a: attention_impl='cudnn' cannot run here")
        else:
            assert row[3] > 0 and row[5] > 0  # clips/s, TFLOP/s
    # the longest-clip search ran the real steps up to the tiny cap (nothing runs out of memory)
    assert [r[:2] for r in longest["rows"]] == [[2, "trained"], [4, "trained"], [8, "trained"]]
    assert data["longest_frames"] == {"trained": 8, "failed": None}
    # on the CPU "auto" is XLA: the same loss and gradients; bf16 moves them off float32
    for row in agreement["rows"]:
        assert row[1] == row[2] and row[4] == 0 and 0 < row[5] < 0.1


@pytest.mark.slow
def test_cpu_peers_against_transformers(tmp_path):
    data = bench(tmp_path, "--sections", "peers")
    (name, table), = data["tables"].items()
    assert "transformers" in name
    assert [r[:2] for r in table["rows"]] == [
        ["xvit (mixing)", "space_only"], ["timesformer divided", "divided_space_time"],
        ["timesformer joint", "joint_space_time"], ["space only", "space_only"]]
    for row in table["rows"]:
        assert min(row[2:6]) > 0


def test_longest_clip_search_doubles_then_bisects():
    calls = []

    def fits(n):
        calls.append(n)
        return n <= 1000

    good, bad = search_longest(fits, 64, 16384)
    assert calls[:5] == [64, 128, 256, 512, 1024]  # doubling until the first failure
    assert good <= 1000 < bad and bad - good <= good // 8
    assert search_longest(lambda n: True, 64, 300) == (256, None)  # capped, nothing failed
    assert search_longest(lambda n: n <= 5, 64, 300, resolution=64) == (5, 6)  # fails at start


def test_matmul_flops_agree_with_xla_and_count_scanned_layers():
    """The GPU mode's FLOPs, read off the jaxpr (jax 0.11 gives no cost analysis of a lowered
    module), against XLA's count of everything on this jax: within 2% (elementwise work is the
    difference), and the same with the layers scanned, where XLA would count one layer."""
    import jax.numpy as jnp
    from flax import nnx

    from vidmix.models.cost import xla_flops
    from vidmix.models.layers import unchunked
    from vidmix.models.stack import unrolled

    # ViT-B's width (at toy widths elementwise work is a larger share)
    setup = TINY.replace(depth=2, width=768, num_heads=12, image=224, patch=16)
    model = setup.model("xvit_b16", attention_impl="xla")
    graphdef, state = nnx.split(model)
    video = jnp.zeros((1, setup.frames, setup.image, setup.image, 3))
    forward = lambda s, v: nnx.merge(graphdef, s)(v)
    with unchunked():
        scanned = matmul_flops(forward, state, video)
        with unrolled():
            flat = matmul_flops(forward, state, video)
    reference = xla_flops(model.config)
    assert scanned == flat
    assert 0.98 * reference < scanned <= reference

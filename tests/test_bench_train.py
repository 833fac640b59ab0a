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
runpy.run_path({script!r}, run_name="__main__")
"""


def bench(tmp_path, *args, absent=(), script="bench/train.py") -> dict:
    """Runs `script` with `args` in a fresh interpreter; returns its JSON results."""
    argv = [script, "--tiny", "--rounds", "1", "--steps", "1", "--out", str(tmp_path), *args]
    out = subprocess.run(
        [sys.executable, "-c", RUNNER.format(absent=absent, argv=argv, script=script)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    name = ("gpu_profile.json" if "gpu_profile" in script else
            "train_gpu.json" if "--gpu" in args else "train_cpu.json")
    with open(tmp_path / name) as f:
        return json.load(f)


def test_gpu_profile_classes_kernels_by_name():
    from gpu_profile import kernel_class

    # kernel names from an H100 profile of the XViT-B/16 step (jax 0.11.2, cuDNN 9.19)
    assert kernel_class("nvjet_sm90_tst_128x160_64x5_2x1_v_bz_NNT") == "matrix products"
    assert kernel_class("sm80_xmma_fprop_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc"
                        ) == "matrix products"  # the patch embedding's convolution
    assert kernel_class("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26"
                        ) == "attention (cuDNN)"
    assert kernel_class("void cudnn::fusion::convert_dq_to_16bits<true>(void const*, void*)"
                        ) == "attention (cuDNN)"
    assert kernel_class("memcpy128") == "copies and memsets"
    assert kernel_class("input_add_reduce_fusion_1") == "reductions"
    assert kernel_class("loop_convert_transpose_fusion") == "transposes"
    assert kernel_class("loop_add_multiply_fusion") == "other fusions (elementwise)"


@pytest.mark.slow
def test_gpu_profile_runs_without_the_data_stack_or_torch(tmp_path):
    """The GPU profile's dry run on a CPU: no GPU plane to read (it says so), and the variants
    table times each variant against the default, with its memory and compile time."""
    data = bench(tmp_path, "--variants", "default", "loop over layers (scan_unroll=1)",
                 "remat full, unrolled", absent=ABSENT, script="bench/gpu_profile.py")
    tables = data["tables"]
    profiled = [t for name, t in tables.items() if name.startswith("GPU kernel time")]
    assert len(profiled) == 2 and all("no GPU stream lines" in t["rows"][0][0] for t in profiled)
    rows = tables["variants of the XViT-B/16 train step"]["rows"]
    assert [r[0] for r in rows] == ["default", "loop over layers (scan_unroll=1)",
                                    "remat full, unrolled"]
    assert rows[0][3].startswith("1.00") and all(r[1] > 0 and r[4] > 0 for r in rows)


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

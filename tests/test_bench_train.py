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
from train import search_longest  # noqa: E402

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
    data = bench(tmp_path, "--gpu", absent=ABSENT)
    (name, throughput), (_, longest) = data["tables"].items()
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

"""Learning time from scratch (docs/learning.md). On the synthetic tasks each class is the other
played backwards, so only a model that puts frames in order can beat chance. The models that do
(XViT with either head, TimeSformer, PST and VTN, each with its from-scratch positions: the ViTs'
position embeddings at the patch embeddings' scale, PST's absolute positions in space and time,
VTN's sinusoids on frame indices as `main.py` gives them; XViT's paper head with learned frame
positions) learn `direction` and `first` (which of two digits moves first), all but VTN also
`speed`, XViT (either head) and PST the sense of a spin (`rotation`, large digits), and PST the
sense of a revolution (`orbit`), in one small fixed budget. The per-frame baseline (space attention, per-frame scores averaged) stays at
chance, and is exactly blind to the order of frames on every task.

Runs bench/learning.py's loop: the public API, uint8 clips normalised with the training videos'
pixel statistics, and new videos in every batch (`--fresh`: with a fixed set of videos a model
can memorise them instead of learning time, and the baseline's training loss then falls too).

Not covered, because they are not met yet (docs/learning.md, "Still open"): TimeSformer and VTN
on `rotation` (and XViT's paper head with seed 1), and every family on `rotation` with the
default, smaller digits; every family but PST on `orbit`; VTN on `speed` (some seeds only). The fast
tests below check bench/learning.py's measurement-only variants (mimetic attention init, conv
stems)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_main import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import learning  # noqa: E402

# the same budget for every family: 300 AdamW steps of batch 32 (fresh videos), 20 of them
# warm-up, at depth 2 (PST: its two stages of two blocks, `learning.FAMILIES`)
BUDGET = ["--steps", "300", "--warmup", "20", "--fresh", "--quiet"]


# `rotation` as the test runs it: digits of 60-80% of the frame (the default 35-50% leave a
# 32-pixel digit's spin to a few 4x4 patches) and clips of stride 1, so that the digit turns by
# 8-20 degrees between clip frames (16-40 with stride 2); docs/learning.md, "The learning rate"
TASK_ARGS = {"rotation": ["--glyph-size", "0.6", "0.8", "--stride", "1"]}


def learn(family: str, task: str) -> dict:
    depth = [] if family == "pst" else ["--set", "depth=2"]
    return learning.run(learning.parse(["--family", family, "--task", task,
                                        *TASK_ARGS.get(task, []), *BUDGET, *depth]))


# (family, task) pairs learned in this budget with seed 0 (the test's); other seeds and budgets
# in docs/learning.md ("Three hundred steps", "The learning rate"). Every family on `direction`
# and on `first`, every family but VTN on `speed`, XViT's summary head and PST on `rotation`
# (as `TASK_ARGS` sets it), and PST on `orbit`.
FAMILIES = ["xvit", "xvit_summary", "timesformer", "pst", "vtn"]
LEARNED = ([(f, t) for t in ("direction", "first") for f in FAMILIES]
           + [(f, "speed") for f in FAMILIES if f != "vtn"]
           + [("xvit", "rotation"), ("xvit_summary", "rotation"), ("pst", "rotation"),
              ("pst", "orbit")])


@pytest.mark.slow
@pytest.mark.parametrize("family,task", LEARNED)
def test_models_that_order_frames_learn_the_arrow_of_time(family, task):
    result = learn(family, task)
    assert result["eval_accuracy"] >= 0.95, result["eval_accuracy"]
    assert result["plateau_steps"] is not None and result["plateau_steps"] <= 270


@pytest.mark.slow
@pytest.mark.parametrize("task", ["direction", "first"])
def test_the_per_frame_baseline_stays_at_chance(task):
    result = learn("per_frame", task)
    assert 0.4 <= result["eval_accuracy"] <= 0.6, result["eval_accuracy"]


@pytest.mark.parametrize("task", sorted(learning.TASKS))
def test_the_baseline_is_blind_to_the_order_of_frames(task):
    """A fresh per-frame baseline scores a clip and its reversal exactly alike (whatever its
    weights: it averages per-frame scores), so no training can move it off chance on any of
    these tasks, whose classes are each other's reversals."""
    signal = learning.order_signal(blindness_args("per_frame", task), num_videos=16)
    assert signal < 1e-5, signal


def test_xvit_tells_a_clip_from_its_reversal_from_the_first_step():
    signal = learning.order_signal(blindness_args("xvit", "first"), num_videos=16)
    assert signal > 1e-2, signal


def blindness_args(family, task):
    return learning.parse(["--family", family, "--task", task, "--classifier-init", "trunc02",
                           "--set", "depth=1"])


def test_mimetic_factors_are_the_best_low_rank_approximation():
    left, right = learning.mimetic_factors(16, 0.7, -0.4, np.random.default_rng(3))
    target = 0.7 * np.random.default_rng(3).normal(size=(16, 16)) / 4 - 0.4 * np.eye(16)
    np.testing.assert_allclose(left @ right.T, target, atol=1e-10)
    low_l, low_r = learning.mimetic_factors(16, 0.7, -0.4, np.random.default_rng(3), rank=4)
    s = np.linalg.svd(target, compute_uv=False)
    err = np.linalg.norm(low_l @ low_r.T - target)
    np.testing.assert_allclose(err, np.sqrt(np.sum(s[4:] ** 2)), rtol=1e-8)  # Eckart-Young


def tiny_model_args(*extra):
    return learning.parse(["--family", "xvit_summary", "--set", "depth=1", "width=16",
                           "num_heads=2", *extra])


def test_mimetic_attention_makes_each_head_match_like_tokens():
    model = learning.experiment(tiny_model_args("--attention-init", "mimetic"), None)[1]
    qkv = np.asarray(model.backbone.blocks.stacked.attn.qkv.kernel[...])[0]  # (16, 48)
    proj = np.asarray(model.backbone.blocks.stacked.attn.proj.kernel[...])[0]
    for h in range(2):
        qk = qkv[:, h * 8:(h + 1) * 8] @ qkv[:, 16 + h * 8:16 + (h + 1) * 8].T
        assert np.trace(qk) > 3 * np.abs(qk - np.diag(np.diag(qk))).sum() / 16
    assert np.trace(qkv[:, 32:] @ proj) < 0  # W_v W_proj ~ a2 Z - b2 I


@pytest.mark.parametrize("stem,sees_neighbours",
                         [("conv", False), ("conv_shift", True), ("conv3d", True)])
def test_conv_stems_keep_the_tokens_and_only_the_mixing_ones_see_other_frames(
        stem, sees_neighbours):
    model = learning.experiment(tiny_model_args("--stem", stem), None)[1]
    frames = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype(np.float32)  # 2 clips
    tokens = np.asarray(model.backbone.patch_embed(frames))
    assert tokens.shape == (16, 8, 8, 16)
    changed = frames.copy()
    changed[4] += 1.0  # the first clip's frame 4 only
    moved = np.abs(np.asarray(model.backbone.patch_embed(changed)) - tokens).max(axis=(1, 2, 3))
    # two 3x3x3 convolutions, or two shifts by one frame: a token sees its frame and two on
    # each side, and never another clip
    assert moved[4] > 0 and moved[[0, 1, 7]].max() == 0 and moved[8:].max() == 0
    assert (moved[[2, 3, 5, 6]].min() > 0) == sees_neighbours
    assert (moved[[2, 3, 5, 6]].max() > 0) == sees_neighbours


def test_the_benchmark_runs_without_the_data_stack(tmp_path):
    """bench/learning.py on an accelerator image that has jax, flax, optax and Pillow but no
    tensorflow-datasets, grain, PyAV, OpenCV or ml_collections (how its GPU sweeps ran)."""
    absent = ("tensorflow_datasets", "grain", "av", "cv2", "ml_collections", "array_record")
    out = tmp_path / "result.json"
    argv = ["bench/learning.py", "--family", "xvit", "--task", "first", "--steps", "22",
            "--warmup", "2", "--num-train", "64", "--set", "depth=1", "width=16", "num_heads=2",
            "--quiet", "--json", str(out)]
    code = (f"import runpy, sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n"
            f"sys.argv = {argv!r}\nrunpy.run_path('bench/learning.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert len(record["losses"]) == 22 and 0.0 <= record["eval_accuracy"] <= 1.0

"""Learning time from scratch (docs/learning.md). On the synthetic tasks each class is the other
played backwards, so only a model that puts frames in order can beat chance. The models that do
(XViT with either head, TimeSformer with its temporal embedding started at the patch embeddings'
scale, PST, VTN with its from-scratch settings and frame indices as positions, as `main.py` gives
them) learn `direction`, and XViT's summary head and
TimeSformer also `speed`, in one small fixed budget; the per-frame baseline (space attention,
per-frame scores averaged) stays at chance on every task.

Runs bench/learning.py's loop: the public API, uint8 clips normalised with the training videos'
pixel statistics, and new videos in every batch (`--fresh`: with a fixed set of videos a model
can memorise them instead of learning time, and the baseline's training loss then falls too).

Not covered, because they are not met yet (docs/learning.md, "Still open"): VTN on `speed`,
XViT's paper head and PST need more steps on `speed`, only PST learns `rotation` (with large
digits), and neither XViT's paper head nor PST learns `orbit` in this budget."""

import os
import sys

import pytest
from test_main import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import learning  # noqa: E402

# the same budget for every family: 200 AdamW steps of batch 32 (fresh videos), 20 of them
# warm-up, at depth 2 (PST: its two stages of two blocks, `learning.FAMILIES`)
BUDGET = ["--steps", "200", "--warmup", "20", "--fresh", "--quiet"]


def learn(family: str, task: str) -> dict:
    depth = [] if family == "pst" else ["--set", "depth=2"]
    return learning.run(learning.parse(["--family", family, "--task", task, *BUDGET, *depth]))


# (family, task) pairs learned in this budget. Measured and left out (docs/learning.md): XViT
# with the paper's head on `speed` (93.4%, its loss leaves ln 2 at step 58 but 200 steps are not
# enough to reach 95%), PST on `speed` (plateau 205 of 400 steps), VTN on `speed` (68.4%, given
# positions 0..7 rather than frame indices), every ViT family on `rotation`, XViT and PST on
# `orbit`. VTN on `direction`: 99.6% and 98.8% (plateaus 118 and 142) with seeds 0 and 1.
LEARNED = [("xvit", "direction"), ("xvit_summary", "direction"), ("timesformer", "direction"),
           ("pst", "direction"), ("vtn", "direction"), ("xvit_summary", "speed"),
           ("timesformer", "speed")]


@pytest.mark.slow
@pytest.mark.parametrize("family,task", LEARNED)
def test_models_that_order_frames_learn_the_arrow_of_time(family, task):
    result = learn(family, task)
    assert result["eval_accuracy"] >= 0.95, result["eval_accuracy"]
    assert result["plateau_steps"] is not None and result["plateau_steps"] <= 180


@pytest.mark.slow
@pytest.mark.parametrize("task", ["direction", "speed", "rotation"])
def test_the_per_frame_baseline_stays_at_chance(task):
    result = learn("per_frame", task)
    assert 0.4 <= result["eval_accuracy"] <= 0.6, result["eval_accuracy"]

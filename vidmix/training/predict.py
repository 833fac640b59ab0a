"""Predict the top-k labels of one video file with a trained run's latest checkpoint.

The video goes through exactly the evaluation path: decoded with PyAV, resized to the dataset's
short side, stored-frame JPEG round trip (what training saw), the config's K clips x S crops,
scores combined per the config, then a softmax. With `config.eval.num_frames=-1` a whole-video
model (VTN) sees every frame of the video in one pass.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from vidmix.data import decode, open_dataset
from vidmix.data.pipeline import ClipOptions, test_view
from vidmix.training import evaluate as ev
from vidmix.training import mesh as mesh_lib
from vidmix.training.checkpointing import Checkpoints, abstract_like
from vidmix.training.trainer import _eval_step_fn, eval_clip, loader_options, setup

log = logging.getLogger(__name__)


def video_record(path, short_side: int | None) -> dict:
    decoded = decode.read_video(path, short_side=short_side)
    frames = [decode.encode_jpeg(f) for f in decoded.frames]
    return {"frames": frames, "num_frames": len(frames), "height": decoded.frames[0].height,
            "width": decoded.frames[0].width}


def predict(config, workdir: str, video: str) -> list[tuple[str, float]]:
    if not video or not os.path.isfile(video):
        raise FileNotFoundError(f"--video={video!r} is not a file")
    workdir = os.path.abspath(workdir)
    exp = setup(config, workdir, for_training=False)
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), 1, 1)
    state = checkpoints.restore_state(abstract_like(exp.state, exp.state_shardings))
    checkpoints.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints; train first")
    names = exp.class_names
    names_file = os.path.join(workdir, "class_names.json")
    if os.path.exists(names_file):  # the labels the run was trained with
        with open(names_file) as f:
            names = json.load(f)
    builder, _ = open_dataset(exp.data_dir)
    short_side = builder.info.metadata.get("short_side") or None
    record = video_record(video, short_side)
    opts = ClipOptions(image_size=config.data.image_size, num_clips=config.eval.num_clips,
                       num_crops=config.eval.num_crops,
                       **{**loader_options(config), **eval_clip(config)})
    views, index = zip(*(test_view(record, v, opts)
                         for v in range(opts.num_clips * opts.num_crops)), strict=True)
    log.info("predict: %d view(s) of %d frames (the video has %d)", len(views),
                 len(index[0]), record["num_frames"])
    pad = -len(views) % exp.mesh.size
    padded = lambda x: np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    batch = {"video": padded(np.stack(views)), "frame_index": padded(np.stack(index))}
    logits = np.asarray(_eval_step_fn(exp)(state["params"],
                                           mesh_lib.global_batch(batch, exp.mesh)))
    mask = np.r_[np.ones(len(views)), np.zeros(pad)]
    scores, _, _ = ev.combine_views(logits, np.zeros(len(mask), int), np.zeros(len(mask), int),
                                    mask, config.eval.combine)
    probs = ev.softmax(scores[0]) if config.eval.combine == "sum_logits" else scores[0]
    top = np.argsort(-probs)[: config.predict.top_k]
    return [(names[i], float(probs[i])) for i in top]

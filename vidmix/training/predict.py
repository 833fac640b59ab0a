"""Predict the top-k labels of one video file with a trained run's newest intact checkpoint, or
with a model folder (`vidmix.save_pretrained`, `python -m vidmix.export`) alone.

The video goes through exactly the evaluation path: decoded with PyAV, resized to the dataset's
short side, stored-frame JPEG round trip (what training saw), the config's K clips x S crops as
uint8 views (the model normalises them), scores combined per the config, then a softmax. With
`config.eval.num_frames=-1` a whole-video model (VTN) sees every frame of the video in one pass.
From a folder, the short side, frames, sampling and views are the folder's `preprocessing` (what
it lacks comes from the config, with a warning), the normalisation its model's config, and the
labels its class names: no workdir and no dataset are read.
"""

from __future__ import annotations

import json
import logging
import os

import av
import numpy as np

from vidmix.data import decode, open_dataset
from vidmix.data.from_config import eval_clip, eval_preprocessing, loader_options
from vidmix.data.pipeline import ClipOptions, eval_view
from vidmix.errors import MissingFileError, UnreadableVideoError
from vidmix.training import evaluate as ev
from vidmix.training import mesh as mesh_lib
from vidmix.training.trainer import _eval_step_fn, checkpoint_params, setup

log = logging.getLogger(__name__)


def video_record(path, short_side: int | None) -> dict:
    """Every frame of the video file `path` as JPEG bytes; UnreadableVideoError if it cannot be
    decoded (not a video, truncated before its first frame, no video stream)."""
    try:
        decoded = decode.read_video(path, short_side=short_side)
    except (av.error.FFmpegError, ValueError) as e:
        raise UnreadableVideoError(f"--video={str(path)!r} cannot be decoded: {e}") from e
    frames = [decode.encode_jpeg(f) for f in decoded.frames]
    return {"frames": frames, "num_frames": len(frames), "height": decoded.frames[0].height,
            "width": decoded.frames[0].width}


def _views(record, opts: ClipOptions, pad_to: int = 1) -> tuple[dict, np.ndarray]:
    """All test views of one video as a batch padded to a multiple of `pad_to`, and its mask."""
    views, index = zip(*(eval_view(record, v, opts)
                         for v in range(opts.num_clips * opts.num_crops)), strict=True)
    log.info("predict: %d view(s) of %d frames (the video has %d)", len(views),
             len(index[0]), record["num_frames"])
    pad = -len(views) % pad_to
    padded = lambda x: np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    batch = {"video": padded(np.stack(views)), "frame_index": padded(np.stack(index))}
    return batch, np.r_[np.ones(len(views)), np.zeros(pad)]


def _top_k(logits, mask, combine: str, names, k: int) -> list[tuple[str, float]]:
    scores, _, _ = ev.combine_views(np.asarray(logits), np.zeros(len(mask), int),
                                    np.zeros(len(mask), int), mask, combine)
    probs = ev.softmax(scores[0]) if combine == "sum_logits" else scores[0]
    top = np.argsort(-probs)[:k]
    return [(names[i], float(probs[i])) for i in top]


def folder_preprocessing(config, info: dict) -> dict:
    """The folder's preprocessing; what it lacks comes from `config` (logged)."""
    fallback = eval_preprocessing(config, short_side=None)
    fallback["image_size"] = info["config"].get("image_size", config.data.image_size)
    pre = dict(info.get("preprocessing") or {})
    absent = [k for k in fallback if k not in pre]
    if absent:
        log.warning("the model folder records no %s: taken from the config (%s)",
                    ", ".join(absent), ", ".join(f"{k}={fallback[k]!r}" for k in absent))
    return {**fallback, **pre}


def predict_from_folder(config, model_dir: str, video: str) -> list[tuple[str, float]]:
    """Top-k labels of `video` by the model in folder `model_dir`, from the folder alone."""
    import jax

    from vidmix.checkpoints.pretrained import from_pretrained, read_config
    from vidmix.training.steps import make_eval_step, split_model

    info = read_config(model_dir)
    model = from_pretrained(model_dir)
    pre = folder_preprocessing(config, info)
    names = info.get("class_names")
    if not names:
        log.warning("the model folder records no class names: labels are class indices")
        names = [str(i) for i in range(model.config.num_classes)]
    opts = ClipOptions(image_size=pre["image_size"], num_clips=pre["num_clips"],
                       num_crops=pre["num_crops"], num_frames=pre["num_frames"],
                       sampling=pre["sampling"], stride=pre["stride"])
    batch, mask = _views(video_record(video, pre["short_side"]), opts)
    graphdef, params, rest = split_model(model)
    logits = jax.jit(make_eval_step(graphdef))(params, batch, rest)
    return _top_k(logits, mask, pre["combine"], names, config.predict.top_k)


def predict(config, workdir: str, video: str, *, model_dir: str | None = None
            ) -> list[tuple[str, float]]:
    """Top-k labels of `video` by the workdir's newest intact checkpoint, or by the model folder
    `model_dir` when given (then the workdir is not read)."""
    if not video or not os.path.isfile(video):
        raise MissingFileError(f"--video={video!r} is not a file")
    if model_dir:
        return predict_from_folder(config, model_dir, video)
    workdir = os.path.abspath(workdir)
    exp = setup(config, workdir, for_training=False)
    params = checkpoint_params(exp, workdir)
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
    batch, mask = _views(record, opts, pad_to=exp.mesh.size)
    logits = _eval_step_fn(exp)(params, mesh_lib.global_batch(batch, exp.mesh))
    return _top_k(logits, mask, config.eval.combine, names, config.predict.top_k)

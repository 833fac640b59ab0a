"""Datasets and loaders as a run's config (`config.data`, `config.eval`) asks for them: where the
dataset is (generating the synthetic one on first use), the train and eval loaders, what eval does
to a video (for model folders and predict), and clip lengths checked against the videos.
"""

from __future__ import annotations

import logging
import os

from vidmix.data.pipeline import (
    ClipOptions,
    LoaderOptions,
    TrainLoaderOptions,
    make_eval_loader,
    make_train_loader,
    open_dataset,
)
from vidmix.data.sampling import clip_span
from vidmix.data.tfds_builder import build_dataset, load_report
from vidmix.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)


def dataset_dir(config) -> str:
    """The absolute path of `config.data.dir` (`~` expanded)."""
    return os.path.abspath(os.path.expanduser(config.data.dir))


def ensure_dataset(config) -> str:
    """The dataset directory; the synthetic dataset is generated if it is not there yet (or
    regenerated if an older vidmix made it without the pixel statistics the run needs)."""
    path = dataset_dir(config)
    synthetic = config.data.kind == "synthetic"
    try:
        open_dataset(path)
        found = True
    except FileNotFoundError:
        found = False
    stale = (found and synthetic and config.data.get("pixel_stats") == "dataset"
             and not getattr(build_report(path), "pixel_stats", None))
    if found and not stale:
        return path
    if not synthetic:
        raise MissingFileError(
            f"config.data.dir={config.data.dir!r} holds no built dataset. Build it first, e.g. "
            f"python -m vidmix.data.build {config.data.kind} /path/to/videos {path}")
    log.info("%s the synthetic dataset in %s", "regenerating" if stale else "generating", path)
    build_dataset("synthetic", None, path, overwrite=stale, **config.data.build.to_dict())
    return path


def build_report(data_dir):
    """The dataset's build report (`vidmix.data.load_report`); None where there is none."""
    try:
        return load_report(open_dataset(data_dir)[1])
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def loader_options(config) -> dict:
    """How clips are sampled (`config.data`), the same in training and evaluation."""
    return dict(sampling=config.data.sampling, stride=config.data.stride)


def train_loader(config, data_dir, per_process_batch):
    """The train loader of `config.data` for this process."""
    d = config.data
    crop_kwargs = tuple((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                        for k, v in d.crop_kwargs.to_dict().items())
    clip = ClipOptions(num_frames=d.num_frames, image_size=d.image_size, crop=d.crop,
                       crop_kwargs=crop_kwargs, flip=d.flip,
                       rand_augment_ops=d.rand_augment_ops, random_erasing=d.random_erasing,
                       **loader_options(config))
    return make_train_loader(data_dir, d.train_split, per_process_batch, clip,
                             TrainLoaderOptions(seed=config.seed, worker_count=d.worker_count,
                                                read_threads=d.get("read_threads"),
                                                mixup=d.mixup, cutmix=d.cutmix))


def eval_clip(config, settings=None) -> dict:
    """Frames and sampling of the eval views: the training clip's unless the evaluation's
    settings (`config.eval` unless given) say."""
    e, d = settings or config.eval, config.data
    return dict(num_frames=e.num_frames or d.num_frames, sampling=e.sampling or d.sampling)


def eval_preprocessing(config, short_side: int | None) -> dict:
    """What the config's evaluation does to a video, as a model folder's `preprocessing`
    (`vidmix.save_pretrained`): clip, views and how they are combined (the normalisation is the
    model's own, `pixel_mean` / `pixel_std`)."""
    d, e = config.data, config.eval
    return {**loader_options(config), **eval_clip(config), "image_size": d.image_size,
            "short_side": short_side, "num_clips": e.num_clips, "num_crops": e.num_crops,
            "combine": e.combine}


def eval_loader(config, data_dir, per_process_batch, settings=None):
    """The loader of every eval view of `config.data.eval_split` for this process, as the
    evaluation's settings (the keys of `config.eval`; `config.eval` unless given) ask."""
    d, e = config.data, settings or config.eval
    clip = ClipOptions(image_size=d.image_size, num_clips=e.num_clips, num_crops=e.num_crops,
                       **{**loader_options(config), **eval_clip(config, e)})
    return make_eval_loader(data_dir, d.eval_split, per_process_batch, clip,
                            LoaderOptions(worker_count=d.worker_count,
                                          read_threads=d.get("read_threads")))


def check_clip_length(config, data_dir, *, for_training: bool = True) -> None:
    """Clips against the videos' frame counts (from the build report): a clip that needs more
    frames than every video of its split holds is an error (it would be mostly copies of the last
    frame), more than some hold a warning with the count. Datasets whose report predates frame
    counts are not checked."""
    counts = getattr(build_report(data_dir), "frame_counts", {})
    d, e = config.data, config.eval
    clips = [(d.eval_split, "config.eval.num_frames" if e.num_frames else "config.data.num_frames",
              eval_clip(config))]
    if for_training:
        clips.insert(0, (d.train_split, "config.data.num_frames",
                         dict(num_frames=d.num_frames, sampling=d.sampling)))
    for split, key, clip in clips:
        if split not in counts or clip["num_frames"] < 1:
            continue
        span = clip_span(clip["sampling"], clip["num_frames"], d.stride)
        longest = max(counts[split])
        short = sum(n for frames, n in counts[split].items() if frames < span)
        how = (f"{key}={clip['num_frames']} with {clip['sampling']} sampling"
               + (f" at config.data.stride={d.stride}" if clip["sampling"] == "dense" else "")
               + f" needs {span} frames per clip")
        if span > longest:
            raise ConfigError(f"{how}, but no video of split {split!r} has more than {longest} "
                             f"frames; use shorter clips (or a smaller stride)")
        if short:
            log.warning("%s; %d of the %d videos of split %r have fewer (their last frame is "
                        "repeated)", how, short, sum(counts[split].values()), split)

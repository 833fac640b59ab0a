"""The input pipeline: grain over a TFDS ArrayRecord data source, decoding only the sampled frames.

    loader = make_loader("/data/ucf101", split="train", num_frames=8, image_size=224,
                         batch_size=32, train=True, seed=0)
    for batch in loader: ...  # video (B, T, H, W, 3) uint8, frame_index, label, video_id, mask

Clips stay uint8 pixels: the model normalises them on the device with its own `pixel_mean` /
`pixel_std` (`ModelConfig.normalise`), a quarter of the bytes of float32 and no host time.

Train: shuffle (a new order every epoch, endless), sample a clip, decode its T JPEG frames, one
random crop / flip / RandAugment chain per clip, batch. Random erasing and mixup / cutmix act on
normalised (float) clips, so the host only draws them and the jitted train step applies them
(`vidmix.training.inputs`): with `random_erasing` each clip carries `erase_box` (4,) (y0, y1, x0,
x1; empty: not erased) and `erase_seed` (its noise); with `mixup` / `cutmix` each batch carries
`mix_lam` (B,) and `mix_box` (B, 4) (`mix.draw_mix`). Randomness comes from grain's per-record
(and per-batch) seeds, so a clip depends only on (seed, its place in the shuffled order), never on
the number of worker processes; with workers, each worker batches its own records, so which clips
share a batch does depend on `worker_count` (keep it fixed within a run; it is part of the saved
iterator state).

Eval: every video expands into num_clips x num_crops views, each labelled with its `video_id`
(the video's index in the split) so an evaluator can combine them. The view list is padded to a
whole number of batches on every process; padding has `mask` 0, so every view is seen exactly once.

Each process reads its own contiguous shard (`jax.process_index()` of `jax.process_count()` by
default). A loader is a grain dataset (`grain.MapDataset` of records -> `IterDataset` of batches);
`iter(loader)` gives its iterator: `get_state()` / `set_state()` (a JSON-able dict) resume exactly
and `close()` stops its worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import flags

from vidmix.data import augment, decode, mix, sampling
from vidmix.data.record_file import SplitRecords, StoredVideo


def find_dataset(path) -> Path:
    """The dataset directory (the one holding dataset_info.json) at or below `path`."""
    path = Path(path)
    if (path / "dataset_info.json").exists():
        return path
    found = sorted(p.parent for p in path.glob("**/dataset_info.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) at or below {path}")
    raise ValueError(f"{path} holds several datasets; pass one of: "
                     + ", ".join(str(p) for p in found))


def open_dataset(path):
    """(tfds builder, dataset directory) for a built dataset."""
    directory = find_dataset(path)
    return tfds.builder_from_directory(str(directory)), directory


@dataclasses.dataclass(frozen=True)
class ClipOptions:
    """How clips are cut from a stored video: frames, sampling and size, the training augmentation,
    and the eval views (num_clips x num_crops)."""

    num_frames: int = 8
    image_size: int = 224
    sampling: str = "dense"  # see sampling.SAMPLERS
    stride: int = 2  # dense sampling: frames between sampled frames (at the stored fps)
    crop: str = "jitter"  # train crop, see augment.TRAIN_CROPS
    crop_kwargs: tuple = ()  # e.g. (("scale", (256, 320)),)
    flip: bool | None = True  # None: the dataset's choice (`allow_flip`), for train loaders
    rand_augment_ops: int = 0  # RandAugment chain length (0: off)
    rand_augment_magnitude: float = 9.0
    random_erasing: float = 0.0  # probability per clip (drawn here, applied in the train step)
    num_clips: int = 1  # eval views: temporal clips ...
    num_crops: int = 1  # ... times spatial crops (1 or 3)

    def __post_init__(self):
        if self.sampling not in sampling.SAMPLERS:
            raise ValueError(f"unknown sampling {self.sampling!r}; "
                             f"choose from {sorted(sampling.SAMPLERS)}")
        if self.crop not in augment.TRAIN_CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; "
                             f"choose from {sorted(augment.TRAIN_CROPS)}")


class StoredVideos:
    """A split's records as `StoredVideo`s, read whole from TFDS's ArrayRecord source of
    serialized examples: for files `record_file.SplitRecords` cannot map (not on a local file
    system)."""

    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return StoredVideo(self.records[i])

    def __repr__(self):
        return f"StoredVideos({self.records!r})"


def stored_frames(record, indices, min_size=None):
    """The stored frames at `indices` as RGB uint8 arrays (H, W, 3), decoded from JPEG, nothing
    else: at full size, or with `min_size` (w, h) at the smallest DCT scale that keeps them at
    least that large."""
    scale = decode.jpeg_scale((int(record["width"]), int(record["height"])), min_size)
    return [decode.decode_jpeg(record["frames"][i], scale) for i in indices]


def stack_frames(frames) -> np.ndarray:
    """Frames (arrays or Pillow images) -> one (T, H, W, 3) uint8 array."""
    return np.stack([np.asarray(f) for f in frames])


def train_clip(record, rng: np.random.Generator, opts: ClipOptions) -> dict:
    """A random training clip: {"video": (T, H, W, 3) uint8, "frame_index": its stored-frame
    indices (T,) int32}, and with random erasing on, its draw: "erase_box" (4,) int32 (y0, y1,
    x0, x1; empty when the clip is not erased) and "erase_seed" (int32, the noise's seed)."""
    n, hw = int(record["num_frames"]), (int(record["height"]), int(record["width"]))
    indices = sampling.SAMPLERS[opts.sampling][0](n, opts.num_frames, opts.stride, rng)
    box = augment.TRAIN_CROPS[opts.crop](*hw, opts.image_size, rng, **dict(opts.crop_kwargs))
    frames = stored_frames(record, indices, augment.draft_size(box, opts.image_size, hw))
    frames = augment.crop_resize(frames, box, opts.image_size, hw)
    if opts.flip and rng.random() < 0.5:
        frames = [f[:, ::-1] for f in frames]  # a view; stacking copies it
    if opts.rand_augment_ops:
        frames = augment.rand_augment(frames, rng, opts.rand_augment_ops,
                                      opts.rand_augment_magnitude)
    clip = {"video": stack_frames(frames), "frame_index": indices}
    if opts.random_erasing > 0:
        clip["erase_box"] = augment.erase_box(opts.image_size, opts.image_size, rng,
                                              prob=opts.random_erasing)
        clip["erase_seed"] = np.int32(rng.integers(2**31))
    return clip


def eval_view(record, view: int, opts: ClipOptions):
    """View `view` = clip * num_crops + crop of one video: (video (T, H, W, 3) uint8, indices
    (T,)).

    `opts.num_frames == -1` takes every stored frame (whole-video models such as VTN)."""
    n, hw = int(record["num_frames"]), (int(record["height"]), int(record["width"]))
    clip, crop = divmod(view, opts.num_crops)
    if opts.num_frames == -1:
        indices = np.arange(n, dtype=np.int32)
    else:
        indices = sampling.SAMPLERS[opts.sampling][1](n, opts.num_frames, opts.stride,
                                                      opts.num_clips)[clip]
    box = augment.eval_boxes(*hw, opts.image_size, opts.num_crops)[crop]
    frames = stored_frames(record, indices, augment.draft_size(box, opts.image_size, hw))
    return stack_frames(augment.crop_resize(frames, box, opts.image_size, hw)), indices


# ---- grain pieces ---------------------------------------------------------------------------


class IndexedSource:
    """The TFDS source with each record's index attached (the `video_id`)."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return i, self.source[i]

    def __repr__(self):
        return f"IndexedSource({self.source!r}, num_records={len(self)})"


PADDING = (-1, 0, None)  # a ViewSource element past the last view


class ViewSource:
    """Each video repeated once per test view, then padding up to `length` (mask 0)."""

    def __init__(self, source, views: int, length: int):
        self.source, self.views, self.length = source, views, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        if i >= len(self.source) * self.views:
            return PADDING  # not None: grain drops None elements as filtered out
        video, view = divmod(i, self.views)
        return video, view, self.source[video]

    def __repr__(self):
        return f"ViewSource({self.source!r}, views={self.views}, length={self.length})"


class TrainClip(grain.transforms.RandomMap):
    """(video_id, record) -> a random training clip (`train_clip`) plus label, video_id, mask 1."""

    def __init__(self, opts: ClipOptions):
        self.opts = opts

    def random_map(self, element, rng):
        video_id, record = element
        return {**train_clip(record, rng, self.opts), "label": np.int32(record["label"]),
                "video_id": np.int32(video_id), "mask": np.float32(1)}


class EvalView(grain.transforms.Map):
    """A `ViewSource` element -> that eval view (`eval_view`) with label, video_id and mask 1;
    padding (`PADDING`) -> a zero clip with video_id -1 and mask 0."""

    def __init__(self, opts: ClipOptions):
        self.opts = opts

    def map(self, element):
        if element[2] is None:  # padding
            shape = (self.opts.num_frames, self.opts.image_size, self.opts.image_size, 3)
            return {"video": np.zeros(shape, np.uint8),
                    "frame_index": np.arange(self.opts.num_frames, dtype=np.int32),
                    "label": np.int32(0), "video_id": np.int32(-1), "mask": np.float32(0)}
        video_id, view, record = element
        video, index = eval_view(record, view, self.opts)
        return {"video": video, "frame_index": index, "label": np.int32(record["label"]),
                "video_id": np.int32(video_id), "mask": np.float32(1)}


class MixBatch(grain.transforms.RandomMap):
    """Adds one batch's mixup / cutmix draws (`mix.draw_mix`); the train step mixes."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def random_map(self, batch, rng):
        b, _, h, w, _ = batch["video"].shape
        return {**batch, **mix.draw_mix(b, h, w, rng, **self.kwargs)}


@dataclasses.dataclass
class VideoLoader:
    """An iterable of batches. `num_batches` is per pass for eval loaders (None when endless).

    `iter(loader)` gives a grain dataset iterator: `get_state()` / `set_state()` resume exactly,
    `close()` stops its worker processes now rather than at interpreter exit."""

    dataset: grain.IterDataset
    num_examples: int  # videos in the split, over all processes
    num_batches: int | None
    class_names: list[str]
    options: ClipOptions

    def __iter__(self):
        return iter(self.dataset)


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
    """How this process reads a split: grain worker processes (0: in the main process), threads
    per process, and its shard (None: `jax.process_index()` of `jax.process_count()`)."""

    worker_count: int = 0
    worker_buffer_size: int = 2
    shard_index: int | None = None
    shard_count: int | None = None
    read_threads: int | None = None  # per process (None: this machine's cores / processes)

    def threads(self) -> int:
        """Threads that read and decode records in each process. JPEG decoding and resizing run
        outside the GIL, so threads use the cores; more threads than cores only contend
        (docs/benchmarks.md: 16 threads on 2 cores gave 22% fewer clips per CPU-second)."""
        if self.read_threads is not None:
            if self.read_threads < 1:
                raise ValueError(f"read_threads must be positive, got {self.read_threads}")
            return self.read_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count() or 1
        return max(1, cores // max(1, self.worker_count))

    def shard(self) -> tuple[int, int]:
        index, count = self.shard_index, self.shard_count
        if index is None or count is None:
            import jax

            index, count = jax.process_index(), jax.process_count()
        if not 0 <= index < count:
            raise ValueError(f"shard_index {index} is not in [0, {count})")
        return index, count


@dataclasses.dataclass(frozen=True)
class TrainLoaderOptions(LoaderOptions):
    """A train loader's options besides the clip: the shuffle seed, passes over the split (None:
    endless) and the Beta alpha of mixup / cutmix (0: off; batches carry the draws, the train
    step mixes)."""

    seed: int = 0
    num_epochs: int | None = None
    mixup: float = 0.0
    cutmix: float = 0.0


def _open_split(data_dir, split: str, batch_size: int, clip: ClipOptions):
    """(TFDS builder, data source of `split`), after checking the loader's arguments."""
    builder, _ = open_dataset(data_dir)
    if split not in builder.info.splits:
        raise ValueError(f"split {split!r} not in {sorted(builder.info.splits)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if clip.num_frames < 1:  # -1 (every frame) is for one video at a time: predict, not batches
        raise ValueError(f"num_frames must be positive for a loader, got {clip.num_frames}")
    return builder, split_records(builder, split)


def split_records(builder, split: str):
    """The records of `split`, each read as far as a clip needs (`record_file.SplitRecords`:
    the clip's frames alone); on a file system that cannot be memory-mapped (gs://, ...),
    whole, through TFDS's ArrayRecord source."""
    instructions = builder.info.splits[split].file_instructions
    if all(os.path.isfile(os.fspath(x.filename)) for x in instructions):
        return SplitRecords(instructions)
    return StoredVideos(builder.as_data_source(split).data_source)


def _shard(ds: grain.MapDataset, options: LoaderOptions) -> grain.MapDataset:
    """This process's contiguous share of `ds`; every process gets the same number of records
    (the remainder is dropped)."""
    index, count = options.shard()
    per_process = len(ds) // count
    return ds[index * per_process:(index + 1) * per_process]


def _iterable(ds: grain.MapDataset, batch_size: int, options: LoaderOptions,
              batch_ops=()) -> grain.IterDataset:
    """Records read by `options.threads()` threads, batched, then (with `options.worker_count`)
    spread over grain worker processes, each batching its own records."""
    read = grain.ReadOptions(num_threads=options.threads(),
                             prefetch_buffer_size=max(2 * batch_size, 16))
    it = ds.to_iter_dataset(read).batch(batch_size, drop_remainder=True)
    for op, seed in batch_ops:
        it = it.random_map(op, seed=seed)
    if options.worker_count:
        _allow_worker_processes()
        it = it.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=options.worker_count, per_worker_buffer_size=options.worker_buffer_size))
    return it


def _allow_worker_processes() -> None:
    """Works around google/grain#1355 (fixed upstream, not in grain 0.2.18, the newest release):
    when jax is loaded, starting worker processes reads grain's own absl flag
    --grain_enable_multiprocess_worker_profiling, which raises outside an absl app (a notebook, a
    script). Marking that one flag as given, at its default value, lets the read succeed; every
    other flag, and whether FLAGS counts as parsed, stay as they were."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS[_GRAIN_WORKER_PROFILING].present = True


_GRAIN_WORKER_PROFILING = "grain_enable_multiprocess_worker_profiling"


def make_train_loader(data_dir, split: str, batch_size: int, clip: ClipOptions,
                      options: TrainLoaderOptions = TrainLoaderOptions()) -> VideoLoader:
    """Endless (or `options.num_epochs` passes of) shuffled, augmented batches of `batch_size`
    uint8 clips for this process; `clip.flip` None follows the dataset (off for SSv2 and the
    synthetic tasks)."""
    builder, source = _open_split(data_dir, split, batch_size, clip)
    if clip.flip is None:
        clip = dataclasses.replace(clip, flip=bool(builder.info.metadata.get("allow_flip", True)))
    _, count = options.shard()
    if len(source) < batch_size * count:
        raise ValueError(f"split {split!r} has {len(source)} videos: fewer than one batch of "
                         f"{batch_size} per process x {count} processes")
    records = _shard(grain.MapDataset.source(IndexedSource(source)), options)
    ds = records.shuffle(seed=options.seed).repeat(options.num_epochs)  # a new order each epoch
    ds = ds.random_map(TrainClip(clip), seed=options.seed)
    batch_ops = []
    if options.mixup or options.cutmix:
        batch_ops.append((MixBatch(mixup_alpha=options.mixup, cutmix_alpha=options.cutmix),
                          options.seed + 1))
    num_batches = (None if options.num_epochs is None
                   else options.num_epochs * len(records) // batch_size)
    return VideoLoader(_iterable(ds, batch_size, options, batch_ops), len(source), num_batches,
                       list(builder.info.features["label"].names), clip)


def make_eval_loader(data_dir, split: str, batch_size: int, clip: ClipOptions,
                     options: LoaderOptions = LoaderOptions()) -> VideoLoader:
    """One pass over every eval view (`clip.num_clips` x `clip.num_crops` per video) of this
    process's shard, padded to whole batches (padding has mask 0)."""
    builder, source = _open_split(data_dir, split, batch_size, clip)
    _, count = options.shard()
    per_pass = batch_size * count
    views = clip.num_clips * clip.num_crops
    length = math.ceil(len(source) * views / per_pass) * per_pass
    ds = _shard(grain.MapDataset.source(ViewSource(source, views, length)), options)
    return VideoLoader(_iterable(ds.map(EvalView(clip)), batch_size, options), len(source),
                       length // per_pass, list(builder.info.features["label"].names), clip)


def make_loader(data_dir, split: str, num_frames: int, image_size: int, batch_size: int,
                train: bool, seed: int = 0, *, worker_count: int = 0, worker_buffer_size: int = 2,
                read_threads: int | None = None,
                shard_index: int | None = None, shard_count: int | None = None,
                num_epochs: int | None = None, flip: bool | None = None, mixup: float = 0.0,
                cutmix: float = 0.0, **clip_options) -> VideoLoader:
    """`make_train_loader` or `make_eval_loader` in one call with keywords (for notebooks and
    scripts): clip_options are the fields of `ClipOptions` (flip, sampling, stride, crop,
    rand_augment_ops, random_erasing, num_clips, num_crops, ...; flip None follows the dataset);
    the others those of `TrainLoaderOptions` (seed, num_epochs, mixup and cutmix are for
    training only)."""
    clip = ClipOptions(num_frames=num_frames, image_size=image_size, flip=flip, **clip_options)
    reading = dict(worker_count=worker_count, worker_buffer_size=worker_buffer_size,
                   read_threads=read_threads,
                   shard_index=shard_index, shard_count=shard_count)
    if train:
        return make_train_loader(data_dir, split, batch_size, clip, TrainLoaderOptions(
            seed=seed, num_epochs=num_epochs, mixup=mixup, cutmix=cutmix, **reading))
    return make_eval_loader(data_dir, split, batch_size, clip, LoaderOptions(**reading))

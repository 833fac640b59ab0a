"""Build a TFDS dataset (ArrayRecord files) from a build plan: every video decoded once.

Each example stores all frames of one video as JPEG bytes (short side resized, fps optionally
lowered) plus its label, label name (via the ClassLabel feature), fps, frame count, size and
source path. Videos are decoded in worker processes, or, with `beam_options`, by an Apache Beam
pipeline (`beam_build`) that can run on a cluster; a file that fails is skipped, counted and
listed in the report, which is also written next to the data as `build_report.json`.

    report = build_dataset("video_folder", "/videos/ucf101", "/data/ucf101", short_side=256)
    report = build_dataset("video_folder", "/videos/ucf101", "/data/ucf101", short_side=256,
                           beam_options="--direct_num_workers=4 "
                                        "--direct_running_mode=multi_processing")
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import dataclasses
import functools
import itertools
import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from etils import epath
from tensorflow_datasets.core import writer as tfds_writer

from vidmix.data.annotations import KINDS, Plan
from vidmix.data.pixel_stats import pixel_stats
from vidmix.data.to_example import PIXEL_SUMS, make_example
from vidmix.errors import UserError

log = logging.getLogger(__name__)
REPORT_FILE = "build_report.json"


@dataclasses.dataclass
class BuildReport:
    """What a build made, saved as `build_report.json`: videos per split, class names, skipped
    files with their reasons, and per split its frame counts and pixel statistics."""

    data_dir: str  # the dataset directory (pass it to make_loader)
    num_examples: int
    splits: dict[str, int]
    class_names: list[str]
    skipped: list[tuple[str, str]]  # (path or annotation id, reason)
    seconds: float = 0.0
    # split -> {stored frames: number of videos} (what clip lengths the split can serve); empty
    # in reports written before vidmix recorded it
    frame_counts: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)
    # split -> {"mean": [r, g, b], "std": [r, g, b]} of the stored frames' pixels in [0, 1]
    # (config.data.pixel_stats="dataset" normalises with the training split's); empty in reports
    # written before vidmix recorded it
    pixel_stats: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f"{self.num_examples} videos in {self.data_dir} "
                 f"({', '.join(f'{s}: {n}' for s, n in self.splits.items())}; "
                 f"{len(self.class_names)} classes), built in {self.seconds:.1f} s"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


class NoVideosError(UserError, ValueError):
    """Every video of a split failed: there is nothing to build it from."""

    def __init__(self, split: str, skipped: list[tuple[str, str]]):
        lines = [f"  {path}: {reason}" for path, reason in skipped[:20]]
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more")
        super().__init__(f"no video of split {split!r} could be used; all {len(skipped)} were "
                         "skipped:\n" + "\n".join(lines))


class VidmixVideos(tfds.core.GeneratorBasedBuilder):
    """Videos stored as JPEG frame sequences; one builder config per user dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG frames + label, fps, size and source path per video."}

    def __init__(self, *, plan: Plan, options: dict, num_workers: int,
                 beam_side_dir: str | None = None, **kwargs):
        self.plan, self._options, self._num_workers = plan, options, num_workers
        self._beam_side_dir = beam_side_dir  # set: examples come from a Beam pipeline
        self.skipped: list[tuple[str, str]] = list(plan.missing)
        self.frame_counts: dict[str, collections.Counter] = {}
        self.pixel_sums: dict[str, np.ndarray] = {}  # split -> summed to_example.pixel_sums
        config = tfds.core.BuilderConfig(name=plan.name, description=json.dumps(options))
        super().__init__(config=config, file_format="array_record", **kwargs)

    def _info(self):
        features = tfds.features.FeaturesDict({
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "label": tfds.features.ClassLabel(names=self.plan.class_names),
            "fps": np.float32,
            "source_fps": np.float32,
            "num_frames": np.int32,
            "height": np.int32,
            "width": np.int32,
            "path": tfds.features.Text(),
            "key": tfds.features.Text(),
        })
        metadata = tfds.core.MetadataDict(
            {"allow_flip": True, **self.plan.metadata, **self._options})
        return tfds.core.DatasetInfo(builder=self, features=features, metadata=metadata,
                                     description="Video frames as JPEG bytes (vidmix).")

    def _example_writer(self):
        return UncompressedArrayRecords(self.info.file_format)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split, entries)
                for split, entries in self.plan.splits.items() if entries}

    def _generate_examples(self, split, entries):
        if self._beam_side_dir is not None:
            from vidmix.data import beam_build

            return beam_build.SplitExamples(split, entries, self._options, self._beam_side_dir)
        return self._generate_locally(split, entries)

    def _generate_locally(self, split, entries):
        fn = functools.partial(make_example, **self._options)
        results = (map(fn, entries) if self._num_workers <= 1
                   else _pool_map(fn, entries, self._num_workers))
        counts = self.frame_counts.setdefault(split, collections.Counter())
        first_skip = len(self.skipped)
        for entry, example, reason in results:
            if example is None:
                self.skipped.append((entry.path or entry.key, reason))
                log.warning("skipped %s: %s", entry.path or entry.key, reason)
            else:
                counts[int(example["num_frames"])] += 1
                sums = example.pop(PIXEL_SUMS)
                self.pixel_sums[split] = self.pixel_sums.get(split, 0) + sums
                yield entry.key, example
        if not counts:  # before TFDS fails the split with no word of why
            raise NoVideosError(split, self.skipped[first_skip:])


def _pool_map(fn, items, num_workers):
    """Ordered map over worker processes with at most 2 tasks per worker in flight. A worker that
    dies (a decoder crash) loses no other item: the items in flight are retried one per fresh
    process, and the one that crashes again is reported as such."""
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once JAX has started threads
    items = iter(items)
    pending = collections.deque()
    pool = futures.ProcessPoolExecutor(num_workers, mp_context=ctx)
    _check_workers_start(pool)
    try:
        pending.extend((x, pool.submit(fn, x)) for x in itertools.islice(items, 2 * num_workers))
        while pending:
            item, future = pending[0]
            try:
                result = future.result()
            except futures.process.BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                for x, _ in pending:
                    yield _isolated(fn, x, ctx)
                pending.clear()
                pool = futures.ProcessPoolExecutor(num_workers, mp_context=ctx)
                pending.extend((x, pool.submit(fn, x))
                               for x in itertools.islice(items, 2 * num_workers))
                continue
            pending.popleft()
            pending.extend((x, pool.submit(fn, x)) for x in itertools.islice(items, 1))
            yield result
    finally:
        pool.shutdown(cancel_futures=True)


GUARD_HELP = (
    "build_dataset's worker processes could not start. Worker processes are spawned: each one "
    "imports your script again, so a script that calls build_dataset with num_workers > 1 must "
    "do so under\n\n    if __name__ == \"__main__\":\n        build_dataset(...)\n\n"
    "(or pass num_workers=1).")


def _check_workers_start(pool) -> None:
    """A trivial task first: if no worker can even start, that is not a decoder crash (whose file
    is skipped) but, almost always, a script without an `if __name__ == "__main__":` guard."""
    try:
        pool.submit(os.getpid).result()
    except futures.process.BrokenProcessPool:
        pool.shutdown(cancel_futures=True)
        raise RuntimeError(GUARD_HELP) from None


def _isolated(fn, item, ctx):
    with futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, item).result()
        except futures.process.BrokenProcessPool:
            return item, None, "the decoder process crashed on this file"


class UncompressedArrayRecords(tfds_writer.ExampleWriter):
    """Writes ArrayRecord files uncompressed. TFDS's default brotli compression gains ~4% on JPEG
    frames and costs ~11 ms per 7 MB record read (measured: 14.0 vs 2.6 ms). Readers need no
    option (it is in the file). Used by local and Beam builds alike (TFDS pickles it to the Beam
    workers)."""

    def write(self, path, examples):
        writer = array_record_module.ArrayRecordWriter(os.fspath(path),
                                                       "group_size:1,uncompressed")
        for _, serialized in examples:
            writer.write(serialized)
        writer.close()


def build_dataset(kind: str, source, data_dir, *, short_side: int | None = None,
                  fps: float | None = None, quality: int = 90, num_workers: int | None = None,
                  overwrite: bool = False, beam_options=None, **options) -> BuildReport:
    """Builds `kind` (`annotations.KINDS`) from `source` into the TFDS data directory `data_dir`.

    short_side: resize frames so the short side is this many pixels (default 256 for decoded
      videos; generated videos keep their `size`; 0 keeps every video's own size).
    fps: keep at most this many frames per second. quality: JPEG quality.
    num_workers: decoding processes (default: every core). options: the kind's own keywords
      (e.g. `split_files=`, `annotations=`, `labels=`, `task=`, `name=`).
    beam_options: build with Apache Beam instead of a local process pool: `PipelineOptions`,
      or their command-line flags (a list, or one string), e.g. "--runner=FlinkRunner
      --flink_master=host:8081 ..." (docs/datasets.md). The dataset written is the same.
    An existing build of the same name is reused (its report returned) unless `overwrite`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {sorted(KINDS)}")
    start = time.time()
    plan = KINDS[kind](source, **options)
    if short_side is None and kind != "synthetic":
        short_side = 256
    builder_options = dict(short_side=short_side, fps=fps, quality=quality)
    # with Beam, what the pipeline gathers besides the examples (see beam_build) goes here
    side_dir = None if beam_options is None else os.path.join(data_dir, f".beam-{plan.name}")
    builder = VidmixVideos(plan=plan, options=builder_options, data_dir=os.fspath(data_dir),
                           num_workers=num_workers or os.cpu_count() or 1,
                           beam_side_dir=side_dir)
    out = epath.Path(builder.data_dir)
    if (out / "dataset_info.json").exists():
        if not overwrite:
            log.info("%s already built; reusing it (overwrite=True rebuilds)", out)
            return load_report(out)
        out.rmtree()
    if beam_options is None:
        builder.download_and_prepare()
        skipped, counts, sums = builder.skipped, builder.frame_counts, builder.pixel_sums
    else:
        skipped, counts, sums = _build_with_beam(builder, beam_options, side_dir)
    splits = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    frame_counts = {split: dict(sorted(c.items())) for split, c in counts.items()}
    stats = {split: pixel_stats(total) for split, total in sums.items()}
    report = BuildReport(os.fspath(out), sum(splits.values()), splits, plan.class_names,
                         skipped, time.time() - start, frame_counts, stats)
    (out / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(report), indent=1))
    log.info("%s", report)
    return report


def _build_with_beam(builder: VidmixVideos, beam_options, side_dir: str):
    """Runs `builder`'s build as a Beam pipeline; (skipped, frame counts, pixel sums) as the
    local build gathers them, read back from the pipeline's side outputs in `side_dir`."""
    from vidmix.data import beam_build

    side = epath.Path(side_dir)
    if side.exists():  # left by an interrupted build
        side.rmtree()
    config = tfds.download.DownloadConfig(
        beam_options=beam_build.pipeline_options(beam_options))
    try:
        builder.download_and_prepare(download_config=config)
    except Exception:
        for split, entries in builder.plan.splits.items():  # a split with no usable video
            skipped = beam_build.read_skipped(side_dir, split, entries)
            if entries and len(skipped) == len(entries):
                raise NoVideosError(split, skipped) from None
        raise
    skipped, counts, sums = beam_build.read_side_outputs(side_dir, builder.plan.splits)
    side.rmtree()
    return builder.skipped + skipped, counts, sums


def load_report(dataset_dir) -> BuildReport:
    """The `BuildReport` saved in `dataset_dir` (reports of older vidmix versions included)."""
    data = json.loads((Path(dataset_dir) / REPORT_FILE).read_text())
    data["skipped"] = [tuple(x) for x in data["skipped"]]
    data["frame_counts"] = {split: {int(n): c for n, c in counts.items()}
                            for split, counts in data.get("frame_counts", {}).items()}
    return BuildReport(**data)

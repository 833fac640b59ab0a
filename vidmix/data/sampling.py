"""Which frames make a clip: the field's two samplers, for training (random) and test (views).

dense    T frames `stride` apart. Train: random start. Test: K clips with starts spread evenly
         from frame 0 to the last possible start (K=1: the clip starting at frame 0, as XViT).
segment  TSN: the video cut into T equal segments, one frame per segment. Train: a random frame in
         each segment. Test: K clips, clip k taking the point (k + 0.5) / K of every segment
         (K=1: the middle frame).
Videos shorter than a clip repeat their last frame. Indices are int32 arrays of length T.
"""

from __future__ import annotations

import numpy as np


def _clamp(idx, num_frames):
    return np.minimum(np.asarray(idx), num_frames - 1).astype(np.int32)


def dense_train(num_frames: int, length: int, stride: int, rng: np.random.Generator):
    """`length` frame indices `stride` apart from a random start: (length,) int32."""
    span = (length - 1) * stride + 1
    start = rng.integers(0, max(num_frames - span, 0) + 1)
    return _clamp(start + stride * np.arange(length), num_frames)


def dense_test(num_frames: int, length: int, stride: int, num_clips: int):
    """`num_clips` dense clips, starts spread evenly from frame 0 to the last possible start:
    (num_clips, length) int32."""
    span = (length - 1) * stride + 1
    starts = np.round(np.linspace(0, max(num_frames - span, 0), num_clips)).astype(int)
    return np.stack([_clamp(s + stride * np.arange(length), num_frames) for s in starts])


def segment_train(num_frames: int, length: int, stride: int, rng: np.random.Generator):
    """A random frame in each of `length` equal segments (`stride` unused): (length,) int32."""
    del stride  # segments set the spacing
    edges = np.linspace(0, num_frames, length + 1)
    return _clamp(np.floor(edges[:-1] + rng.random(length) * np.diff(edges)), num_frames)


def segment_test(num_frames: int, length: int, stride: int, num_clips: int):
    """Clip k takes the point (k + 0.5) / num_clips of every segment (`stride` unused):
    (num_clips, length) int32."""
    del stride
    edges = np.linspace(0, num_frames, length + 1)
    offsets = (np.arange(num_clips) + 0.5) / num_clips
    return np.stack([_clamp(np.floor(edges[:-1] + o * np.diff(edges)), num_frames)
                     for o in offsets])


def clip_span(sampling: str, length: int, stride: int) -> int:
    """How many stored frames a clip of `length` frames covers without repeating one."""
    return (length - 1) * stride + 1 if sampling == "dense" else length


SAMPLERS = {"dense": (dense_train, dense_test), "segment": (segment_train, segment_test)}

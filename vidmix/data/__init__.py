"""Video data: TFDS datasets built from users' videos, and a grain pipeline of decoded clips."""

from vidmix.data.builder import BuildReport, build_dataset, load_report
from vidmix.data.pipeline import ClipOptions, VideoLoader, make_loader, open_dataset

__all__ = ["BuildReport", "ClipOptions", "VideoLoader", "build_dataset", "load_report",
           "make_loader", "open_dataset"]

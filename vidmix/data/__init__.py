"""Video data: TFDS datasets built from users' videos, and a grain pipeline of decoded clips."""

from vidmix.data.pipeline import (
    ClipOptions,
    LoaderOptions,
    TrainLoaderOptions,
    VideoLoader,
    make_eval_loader,
    make_loader,
    make_train_loader,
    open_dataset,
)
from vidmix.data.tfds_builder import BuildReport, build_dataset, load_report

__all__ = ["BuildReport", "ClipOptions", "LoaderOptions", "TrainLoaderOptions", "VideoLoader",
           "build_dataset", "load_report", "make_eval_loader", "make_loader", "make_train_loader",
           "open_dataset"]

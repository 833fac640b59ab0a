"""Video classification with the multi-view protocol: every video of the eval split seen as
`num_clips` x `num_crops` views, the views' logits (or softmax) combined per video, top-1 / top-5
over videos (`vidmix.training.evaluate`)."""

from __future__ import annotations

import numpy as np
from jax.experimental import multihost_utils

from vidmix.data.from_config import eval_loader
from vidmix.training import evaluate as ev
from vidmix.training import mesh as mesh_lib
from vidmix.training.steps import jitted_eval_step


class ClassificationEvaluator:
    """Top-1 / top-5 of the videos of `config.data.eval_split` under `settings` (the keys of
    `config.eval`). run(params) -> (metrics, (scores per video, labels))."""

    def __init__(self, exp, settings, name: str):
        self.exp, self.settings, self.name = exp, settings, name
        self.every = int(settings.every)
        key = "config.eval" if name == "eval" else f"config.evals.{name}"
        self.batch_size = mesh_lib.per_process_batch(settings.batch_size, exp.mesh,
                                                     f"{key}.batch_size")
        step = jitted_eval_step(exp.graphdef)
        self.step = lambda params, batch: step(params, batch, exp.rest)

    def run(self, params) -> tuple[dict, tuple]:
        exp = self.exp
        loader = eval_loader(exp.config, exp.data_dir, self.batch_size, self.settings)
        logits, ids, labels, masks = [], [], [], []
        it = iter(loader)
        try:
            for batch in it:
                inputs = {k: batch[k] for k in ("video", "frame_index")}
                out = self.step(params, mesh_lib.global_batch(inputs, exp.mesh))
                logits.append(multihost_utils.process_allgather(out, tiled=True))
                for dst, key in ((ids, "video_id"), (labels, "label"), (masks, "mask")):
                    dst.append(multihost_utils.process_allgather(batch[key], tiled=True))
        finally:
            it.close()
        scores, video_labels, _ = ev.combine_views(
            np.concatenate(logits), np.concatenate(ids), np.concatenate(labels),
            np.concatenate(masks), self.settings.combine)
        return ev.video_metrics(scores, video_labels), (scores, video_labels)

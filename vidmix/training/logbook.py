"""Where metrics go: a JSONL file, TensorBoard event files, and a PNG of the curves at the end."""

from __future__ import annotations

import json
import os

import jax


class Logbook:
    """Process 0 writes `metrics.jsonl`, `tensorboard/` and `curves.png` in the workdir."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.writer = None
        if self.active:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, metrics: dict):
        if not self.active:
            return
        row = {"step": int(step), "split": split,
               **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("step", "split"):
                self.writer.add_scalar(f"{split}/{k}", v, step)
        self.writer.flush()

    def rows(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def plot(self, name: str = "curves.png"):
        """Train loss and accuracy, and each evaluator's top-1, against the step."""
        rows = self.rows()
        if not self.active or not rows:
            return None
        # a Figure without pyplot: drawn to a file, no GUI backend, and the user's backend (e.g.
        # a notebook's inline one) is left alone
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 3.5))
        axes = fig.subplots(1, 2)
        train = [r for r in rows if r["split"] == "train"]
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
        axes[0].set_xlabel("step"), axes[0].set_ylabel("loss"), axes[0].legend()
        axes[1].plot([r["step"] for r in train], [r["accuracy"] for r in train],
                     label="train clip accuracy", alpha=0.6)
        for split in dict.fromkeys(r["split"] for r in rows if "top1" in r):  # each evaluator
            evals = [r for r in rows if r["split"] == split]
            axes[1].plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-",
                         label=f"{split} top-1 (videos)")
        axes[1].set_xlabel("step"), axes[1].set_ylim(0, 1.02), axes[1].legend()
        fig.tight_layout()
        path = os.path.join(self.workdir, name)
        fig.savefig(path, dpi=100)
        return path

    def close(self):
        if self.writer is not None:
            self.writer.close()

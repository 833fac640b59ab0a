"""Multi-view evaluation: combine each video's views, then video-level accuracy.

Views (K clips x S crops) carry their video's id; scores are combined per video by summing logits
(XViT, TimeSformer) or averaging softmax probabilities (`COMBINE`). Metrics: top-1, top-5 and the
mean over classes of per-class top-1 (classes present in the split).
"""

from __future__ import annotations

import numpy as np


def softmax(x):
    """Softmax over the last axis of the array `x`."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


COMBINE = {"sum_logits": lambda logits: logits, "mean_softmax": softmax}


def combine_views(logits, video_ids, labels, mask, how: str = "sum_logits"):
    """Per-view arrays (padding has mask 0) -> (scores (V, C), labels (V,), views per video)."""
    if how not in COMBINE:
        raise ValueError(f"config.eval.combine={how!r}: choose from {sorted(COMBINE)}")
    keep = np.asarray(mask) > 0
    ids, logits = np.asarray(video_ids)[keep], np.asarray(logits, np.float64)[keep]
    videos, inverse = np.unique(ids, return_inverse=True)
    scores = np.zeros((len(videos), logits.shape[-1]))
    np.add.at(scores, inverse, COMBINE[how](logits))
    counts = np.bincount(inverse, minlength=len(videos))
    video_labels = np.zeros(len(videos), np.int64)
    video_labels[inverse] = np.asarray(labels)[keep]
    return scores / counts[:, None], video_labels, counts


def video_metrics(scores, labels) -> dict:
    """Video scores (V, C) and labels (V,) -> {top1, top5, mean_class_accuracy, num_videos}."""
    top5 = np.argsort(-scores, axis=-1)[:, :5]
    hit1 = top5[:, 0] == labels
    per_class = [hit1[labels == c].mean() for c in np.unique(labels)]
    return {"top1": float(hit1.mean()), "top5": float((top5 == labels[:, None]).any(-1).mean()),
            "mean_class_accuracy": float(np.mean(per_class)), "num_videos": int(len(labels))}


def confusion_matrix(scores, labels, num_classes):
    """(num_classes, num_classes) counts of videos: row the label, column the top-scoring class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels, scores.argmax(-1)), 1)
    return cm


def plot_confusion(cm, class_names, path):
    """Writes the confusion matrix `cm` as an annotated heat map image to `path`."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    n = len(class_names)
    fig = Figure(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)

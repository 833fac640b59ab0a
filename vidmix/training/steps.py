"""The jitted train and eval steps: pure functions of (graphdef, state, batch).

The model is split once into a static graphdef, its parameters, and the rest (RNG streams). A
train state is {"params", "opt_state", "step"}; dropout and drop-path draw fresh keys from
(seed, step) inside the step, so a run is a function of its state and data only (what makes
bitwise resumption possible). Batches hold uint8 clips: the model normalises them; random erasing
and mixup / cutmix drawn by the loader are applied here (`inputs.train_inputs`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vidmix.training.inputs import train_inputs


def split_model(model):
    """`model` -> (graphdef, its parameters, the rest of its state, e.g. RNG streams)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def forward(model, batch, *, train: bool):
    """The model on a batch. Whole-video models (`model.whole_video`, e.g. VTN) also get each
    frame's index in its video, which their temporal position embeddings use."""
    if getattr(model, "whole_video", False) and "frame_index" in batch:
        return model(batch["video"], train=train, positions=batch["frame_index"])
    return model(batch["video"], train=train)


def loss_and_metrics(logits, targets, batch):
    """Mean cross-entropy against soft `targets` (B, classes) over the batch's unmasked examples,
    and top-1 accuracy against its labels: (loss, {"loss", "accuracy"})."""
    mask = batch["mask"].astype(jnp.float32)
    losses = optax.softmax_cross_entropy(logits, targets)
    count = jnp.maximum(mask.sum(), 1.0)
    loss = (losses * mask).sum() / count
    correct = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
    return loss, {"loss": loss, "accuracy": (correct * mask).sum() / count}


def make_train_step(graphdef, tx, *, num_classes: int, label_smoothing: float = 0.0,
                    seed: int = 0, stochastic: bool = False):
    """train_step(state, batch, rest) -> (state, metrics); `rest` is the model's non-parameter
    state (RNG streams), passed in rather than closed over so NNX sees it at the step's trace
    level. A non-finite loss leaves the state unchanged (except the step count) and is reported
    in metrics["finite"]."""
    base_key = jax.random.key(seed)

    def train_step(state, batch, rest):
        model = nnx.merge(graphdef, state["params"], rest)
        if stochastic:
            nnx.reseed(model, dropout=jax.random.fold_in(base_key, state["step"]))
        video, targets = train_inputs(batch, model.config, num_classes, label_smoothing)

        def loss_fn(model):
            logits = forward(model, {**batch, "video": video}, train=True)
            return loss_and_metrics(logits, targets, batch)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param), has_aux=True)
        (loss, metrics), grads = grad_fn(model)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        finite = jnp.isfinite(loss)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = {"params": keep(params, state["params"]),
                     "opt_state": keep(opt_state, state["opt_state"]),
                     "step": state["step"] + 1}
        metrics.update(grad_norm=optax.tree.norm(grads), finite=finite.astype(jnp.int32))
        return new_state, metrics

    return train_step


def make_eval_step(graphdef):
    """eval_step(params, batch, rest) -> logits (B, classes), fp32."""

    def eval_step(params, batch, rest):
        return forward(nnx.merge(graphdef, params, rest), batch, train=False)

    return eval_step


@functools.cache
def jitted_eval_step(graphdef):
    """`make_eval_step(graphdef)` under jax.jit, made once per model structure, so every
    evaluator of a run and predict share one compiled step."""
    return jax.jit(make_eval_step(graphdef))

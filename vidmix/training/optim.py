"""optax optimisers, schedules and weight-decay masks from the config (`config.train`)."""

from __future__ import annotations

import jax
import optax


def schedule(cfg, total_steps: int):
    """warm-up (linear from `warmup_init * lr`) then `cosine` to 0, `step` (x `step_factor` at
    each of `step_boundaries`, fractions of training) or `constant`."""
    lr, warm = cfg.learning_rate, int(cfg.warmup_steps)
    after = max(total_steps - warm, 1)
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, after)
    elif cfg.schedule == "step":
        main = optax.piecewise_constant_schedule(
            lr, {int(b * total_steps) - warm: cfg.step_factor for b in cfg.step_boundaries})
    elif cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise ValueError(f"config.train.schedule={cfg.schedule!r}: use cosine, step or constant")
    if not warm:
        return main
    warmup = optax.linear_schedule(cfg.warmup_init * lr, lr, warm)
    return optax.join_schedules([warmup, main], [warm])


def _names(path):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return names[:-1] if names and names[-1] == "value" else names  # nnx.State leaves


# which parameters get weight decay: mask(path names, array) -> bool
DECAY_MASKS = {
    "all": lambda names, x: True,
    # XViT: every parameter but the head's biases
    "all_but_head_bias": lambda names, x: not (names[0] == "head" and names[-1] == "bias"),
    # the common ViT rule: matrices only (no biases, norms, tokens or position embeddings)
    "matrices": lambda names, x: _layer_ndim(names, x) >= 2 and not any(
        "embed" in n and "patch" not in n for n in names),
}


def _layer_ndim(names, x) -> int:
    """A parameter's own rank: scanned layers' parameters carry a leading layer axis."""
    from vidmix.models.stack import STACK_AXIS

    return x.ndim - (STACK_AXIS in names)


def decay_mask(params, rule: str):
    """A pytree of bools like `params`: which get weight decay under `rule` (see `DECAY_MASKS`)."""
    if rule not in DECAY_MASKS:
        raise ValueError(f"config.train.decay_mask={rule!r}: choose from {sorted(DECAY_MASKS)}")
    fn = DECAY_MASKS[rule]
    return jax.tree_util.tree_map_with_path(lambda p, x: fn(_names(p), x), params)


def make_optimizer(cfg, params, total_steps: int) -> optax.GradientTransformation:
    """SGD (Nesterov momentum; weight decay added to the gradient, as in the recipes) or AdamW,
    with global-norm clipping and gradient accumulation over `accum_steps` micro-batches."""
    lr = schedule(cfg, total_steps // max(cfg.accum_steps, 1))
    mask = decay_mask(params, cfg.decay_mask)
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip else []
    if cfg.optimizer == "sgd":
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay, mask))
        parts.append(optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov))
    elif cfg.optimizer == "adamw":
        parts.append(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                                 mask=mask))
    else:
        raise ValueError(f"config.train.optimizer={cfg.optimizer!r}: use sgd or adamw")
    tx = optax.chain(*parts)
    if cfg.accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accum_steps)
    return tx

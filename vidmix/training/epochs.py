"""Schedules in epochs: `train.num_epochs`, `train.warmup_epochs` and `eval.every_epochs` become
steps once the training split's real size is known (at start-up), so a recipe never hard-codes a
dataset size that a user's copy (Kinetics videos disappear) does not have.

Each quantity is given either in steps or in epochs, never both: `train.num_steps` or
`train.num_epochs`, `train.warmup_steps` or `train.warmup_epochs`, `eval.every` or
`eval.every_epochs` (the unused one is 0).
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

# (section, key in steps, key in epochs)
PAIRS = (("train", "num_steps", "num_epochs"), ("train", "warmup_steps", "warmup_epochs"),
         ("eval", "every", "every_epochs"))


def steps_per_epoch(num_examples: int, batch_size: int) -> float:
    """Optimiser steps per pass over `num_examples` clips at global batch `batch_size`."""
    return num_examples / batch_size


def uses_epochs(config) -> bool:
    """Whether `config` gives any quantity of `PAIRS` in epochs."""
    return any(config[sec][epochs] for sec, _, epochs in PAIRS)


def resolve_epochs(config, num_train_examples: int):
    """A copy of `config` with every epoch-based key turned into steps (the epoch keys set to
    0); `config` itself is not changed. Raises ValueError if a quantity is given both ways."""
    both = [f"config.{sec}.{steps}={config[sec][steps]} and config.{sec}.{epochs}="
            f"{config[sec][epochs]}" for sec, steps, epochs in PAIRS
            if config[sec][steps] and config[sec][epochs]]
    if both:
        raise ValueError(f"{'; '.join(both)}: give each in steps or in epochs, and set the "
                         "other to 0")
    resolved = config.copy_and_resolve_references()
    if not uses_epochs(config):
        return resolved
    if num_train_examples <= 0:
        raise ValueError("the training split is empty: cannot convert epochs into steps")
    per_epoch = steps_per_epoch(num_train_examples, config.train.batch_size)
    for sec, steps, epochs in PAIRS:
        if config[sec][epochs]:
            n = max(1, math.ceil(config[sec][epochs] * per_epoch))
            resolved[sec][steps], resolved[sec][epochs] = n, 0
            log.info("config.%s.%s=%g: %d steps (%d training clips, batch %d)", sec, epochs,
                     config[sec][epochs], n, num_train_examples, config.train.batch_size)
    return resolved

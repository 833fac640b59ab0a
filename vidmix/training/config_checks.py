"""Start-up checks of a run config: every numeric key in its valid range, every choice known.

`check_config(config)` runs before any data is read or a model compiled (main.py and the trainer
call it), and raises `ConfigError` naming the key, the value and what is valid, so a mistake costs
a second, not a training budget. Checks that need the dataset (clip length against the videos'
frame counts) live with the data code (`vidmix.data.from_config.check_clip_length`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from vidmix.errors import ConfigError

# A rule: (predicate, what is valid), the text completing "must be ...".
Rule = tuple[Callable[[object], bool], str]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def at_least(low: float, *, integer: bool = False) -> Rule:
    """Rule: a number (an integer if `integer`) >= `low`."""
    kind = "an integer" if integer else "a number"
    ok = _integer if integer else _number
    return (lambda x: ok(x) and x >= low), f"{kind} >= {low:g}"


def positive(*, integer: bool = False) -> Rule:
    """Rule: a number (an integer if `integer`) > 0."""
    kind = "an integer" if integer else "a number"
    ok = _integer if integer else _number
    return (lambda x: ok(x) and x > 0), f"{kind} > 0"


def fraction(*, closed: bool = False) -> Rule:
    """Rule: a number in [0, 1), or in [0, 1] if `closed`."""
    top = "1]" if closed else "1)"
    return ((lambda x: _number(x) and 0 <= x and (x <= 1 if closed else x < 1)),
            f"a number in [0, {top}")


def one_of(*choices) -> Rule:
    """Rule: one of `choices`."""
    return (lambda x: x in choices), "one of " + ", ".join(map(repr, choices))


def positive_or_all() -> Rule:
    """Rule: an integer >= 1, or -1 (all)."""
    return (lambda x: _integer(x) and (x >= 1 or x == -1)), "an integer >= 1, or -1 (all)"


RULES: dict[str, Rule] = {
    "seed": at_least(0, integer=True),
    # train
    "train.batch_size": positive(integer=True),
    "train.num_steps": at_least(0, integer=True),
    "train.num_epochs": at_least(0),
    "train.optimizer": one_of("sgd", "adamw"),
    "train.learning_rate": positive(),
    "train.momentum": fraction(),
    "train.b1": fraction(),
    "train.b2": fraction(),
    "train.weight_decay": at_least(0),
    "train.decay_mask": one_of("all", "all_but_head_bias", "matrices"),
    "train.schedule": one_of("cosine", "step", "constant"),
    "train.warmup_steps": at_least(0, integer=True),
    "train.warmup_epochs": at_least(0),
    "train.warmup_init": fraction(closed=True),
    "train.step_factor": positive(),
    "train.grad_clip": at_least(0),
    "train.accum_steps": positive(integer=True),
    "train.label_smoothing": fraction(),
    "train.log_every": positive(integer=True),
    "train.checkpoint_every": positive(integer=True),
    "train.keep_checkpoints": positive(integer=True),
    # data
    "data.num_frames": positive(integer=True),
    "data.image_size": positive(integer=True),
    "data.sampling": one_of("dense", "segment"),
    "data.stride": positive(integer=True),
    "data.crop": one_of("jitter", "rrc", "multiscale"),
    "data.rand_augment_ops": at_least(0, integer=True),
    "data.random_erasing": fraction(closed=True),
    "data.mixup": at_least(0),
    "data.cutmix": at_least(0),
    "data.pixel_stats": one_of("model", "dataset"),
    "data.worker_count": at_least(0, integer=True),
    "data.prefetch": at_least(0, integer=True),
    "data.read_threads": ((lambda x: x is None or (_integer(x) and x > 0)),
                          "None (cores / processes) or an integer > 0"),
    # eval
    "eval.batch_size": positive(integer=True),
    "eval.num_clips": positive(integer=True),
    "eval.num_crops": positive(integer=True),
    "eval.num_frames": ((lambda x: _integer(x) and x >= -1),
                        "an integer >= 1, 0 (data.num_frames) or -1 (every frame)"),
    "eval.sampling": one_of("", "dense", "segment"),
    "eval.combine": one_of("sum_logits", "mean_softmax"),
    "eval.every": at_least(0, integer=True),
    "eval.every_epochs": at_least(0),
    "eval.confusion_max_classes": at_least(0, integer=True),
    # mesh, predict, zoo
    "mesh.data": positive_or_all(),
    "mesh.fsdp": positive(integer=True),
    "mesh.fsdp_min_size": at_least(0, integer=True),
    "predict.top_k": positive(integer=True),
    "zoo.num_frames": positive(integer=True),
    "zoo.image_size": positive(integer=True),
}


def _get(config, key: str):
    node = config
    for part in key.split("."):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def problems(config) -> list[str]:
    """Every rule the config breaks, as "key=value: must be ..." lines (empty: none)."""
    found = []
    for key, (ok, valid) in RULES.items():
        value = _get(config, key)
        if value is not _MISSING and not ok(value):
            found.append(f"config.{key}={value!r}: must be {valid}")
    train = config.get("train")
    if train is not None and _get(config, "train.num_steps") == 0 \
            and not _get(config, "train.num_epochs"):
        found.append("config.train.num_steps=0 and config.train.num_epochs=0: nothing to train; "
                     "set num_steps > 0 (or num_epochs > 0 with num_steps=0)")
    found += _evaluator_problems(config)
    bounds = _get(config, "train.step_boundaries")
    if bounds is not _MISSING and not (
            all(_number(b) and 0 < b < 1 for b in bounds)
            and list(bounds) == sorted(bounds)):
        found.append(f"config.train.step_boundaries={tuple(bounds)!r}: must be increasing "
                     "fractions of training in (0, 1)")
    return found


def _evaluator_problems(config) -> list[str]:
    """Each `config.evals` entry: a known type, keys of config.eval, values in their ranges."""
    from vidmix.training.evaluators import EVALUATORS

    found = []
    for name, entry in (config.get("evals") or {}).items():
        where = f"config.evals.{name}"
        if not hasattr(entry, "items"):
            found.append(f"{where}={entry!r}: must be a dict of evaluator settings")
            continue
        kind = entry.get("type", "classification")
        if kind not in EVALUATORS:
            found.append(f"{where}.type={kind!r}: must be one of {sorted(EVALUATORS)}")
        allowed = set(config.eval) - {"every_epochs"} if "eval" in config else set()
        for key, value in entry.items():
            if key == "type":
                continue
            if key not in allowed:
                found.append(f"{where}.{key}: not a key of config.eval; valid: "
                             f"{', '.join(sorted(allowed))}")
            elif f"eval.{key}" in RULES and not RULES[f"eval.{key}"][0](value):
                found.append(f"{where}.{key}={value!r}: must be {RULES[f'eval.{key}'][1]}")
    return found


def check_config(config) -> None:
    """Raise `ConfigError` listing every out-of-range key of `config` (nothing: it passes)."""
    found = problems(config)
    if found:
        lines = "\n  ".join(found)
        raise ConfigError(f"invalid config ({len(found)} problem{'s' * (len(found) > 1)}):\n"
                          f"  {lines}")

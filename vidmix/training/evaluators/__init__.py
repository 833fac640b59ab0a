"""Evaluators: what a run measures besides its training loss, one small module each.

`config.eval` configures the run's main evaluation, "eval": the field's multi-view protocol at the
end of training (and every `config.eval.every` steps), whose top-1 is what `train` returns.
`config.evals.<name>` adds more; each entry names its `type` (a key of `EVALUATORS`) and the keys
of `config.eval` it changes, the others are the main evaluation's. For example, a cheap one-view
eval every 200 steps next to the full 3x3-view one at the end:

    config.eval.num_clips, config.eval.num_crops = 3, 3
    config.evals.quick = dict(type="classification", num_clips=1, num_crops=1, every=200)

An evaluator is built once per run, `EVALUATORS[type](exp, settings, name)`, and measures the
parameters it is given: `evaluator.run(params) -> (metrics, details)`. It runs every
`evaluator.every` steps (0: only the main one, at the end); the logbook records its metrics under
its name. A new kind is one module with such a class and one line in `EVALUATORS`.
"""

from __future__ import annotations

import ml_collections

from vidmix.training.evaluators.classification import ClassificationEvaluator

# type -> evaluator class
EVALUATORS = {"classification": ClassificationEvaluator}
MAIN = "eval"  # the evaluation `config.eval` configures


def settings(config, name: str) -> ml_collections.ConfigDict:
    """The settings of evaluator `name`: `config.eval`, changed by `config.evals[name]`."""
    merged = ml_collections.ConfigDict(config.eval.to_dict())
    if name != MAIN:
        merged.update({k: v for k, v in config.evals[name].items() if k != "type"})
    return merged


def main_evaluator(exp) -> ClassificationEvaluator:
    """The evaluation `config.eval` configures (what `train` returns and `--mode=eval` runs)."""
    return ClassificationEvaluator(exp, settings(exp.config, MAIN), MAIN)


def make_evaluators(exp) -> dict:
    """{name: evaluator} of a run: the main one first, then `config.evals` in order."""
    config = exp.config
    evaluators = {MAIN: main_evaluator(exp)}
    for name, entry in config.get("evals", {}).items():
        evaluators[name] = EVALUATORS[entry.get("type", "classification")](
            exp, settings(config, name), name)
    return evaluators

"""The training program: `train(config, workdir)` and `evaluate(config, workdir)`.

One jitted step over a (data, fsdp) mesh, the same code on one CPU, 8 devices or many hosts. The
workdir holds everything a run needs to resume: orbax checkpoints (train state + each process's
data-iterator state), `config.json`, `class_names.json`, `metrics.jsonl`, TensorBoard files and,
at the end, `curves.png` (and `confusion.png` for small label sets).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.data import open_dataset
from vidmix.data.from_config import (
    build_report,
    check_clip_length,
    ensure_dataset,
    train_loader,
)
from vidmix.errors import MissingFileError
from vidmix.models import create_model, model_config
from vidmix.training import evaluate as ev
from vidmix.training import mesh as mesh_lib
from vidmix.training.checkpointing import Checkpoints, abstract_like
from vidmix.training.config_checks import ConfigError, check_config
from vidmix.training.epochs import resolve_epochs, uses_epochs
from vidmix.training.evaluators import MAIN, main_evaluator, make_evaluators
from vidmix.training.logbook import Logbook
from vidmix.training.optim import make_optimizer
from vidmix.training.prefetch import Prefetch
from vidmix.training.steps import jitted_eval_step, make_train_step, split_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised by `train` when the loss becomes NaN or Inf; names the steps and last checkpoint."""

    pass


# ---- the experiment ---------------------------------------------------------------------------


@dataclasses.dataclass
class Experiment:
    """What a run works with: config, mesh, the split model (graphdef, rest), its train state with
    shardings, the optimiser, class names, dataset dir, step count and model config. Evaluating a
    model folder, `state` holds only the params and `state_shardings` and `tx` are None."""

    config: object
    mesh: object
    graphdef: object
    rest: object
    state: dict
    state_shardings: dict
    tx: object
    class_names: list
    data_dir: str
    num_steps: int
    model_config: object


# Keys of older configs (and of the config.json of older runs): the normalisation, now the
# model's pixel statistics.
LEGACY_DATA_KEYS = {"mean": "pixel_mean", "std": "pixel_std"}


def dataset_pixel_stats(config, data_dir) -> dict:
    """{"pixel_mean": ..., "pixel_std": ...} of the training split, from the build report."""
    split = config.data.train_split
    stats = getattr(build_report(data_dir), "pixel_stats", {})
    if split not in stats:
        raise ConfigError(f"config.data.pixel_stats='dataset', but the build report of {data_dir} "
                          f"has no pixel statistics of split {split!r} (built by an older vidmix): "
                          "rebuild the dataset, or set config.data.pixel_stats='model'")
    return {"pixel_mean": tuple(stats[split]["mean"]), "pixel_std": tuple(stats[split]["std"])}


def _model_overrides(config, num_classes, data_dir=None):
    overrides = dict(config.model.overrides.to_dict())
    overrides.update(num_frames=config.data.num_frames, image_size=config.data.image_size)
    if config.data.get("pixel_stats", "model") == "dataset":
        given = [k for k in ("pixel_mean", "pixel_std") if k in overrides]
        if given:
            raise ConfigError(f"config.data.pixel_stats='dataset' and config.model.overrides."
                              f"{given[0]} both set the normalisation; keep one")
        overrides.update(dataset_pixel_stats(config, data_dir))
    for old, new in LEGACY_DATA_KEYS.items():
        if old not in config.data:
            continue
        value = tuple(config.data[old])
        if tuple(overrides.setdefault(new, value)) != value:
            raise ConfigError(f"config.data.{old}={value} and config.model.overrides.{new}="
                             f"{tuple(overrides[new])} disagree; the normalisation is the "
                             f"model's: keep only config.model.overrides.{new}")
        log.warning("config.data.%s (an older config) is read as the model's %s=%s; set "
                    "config.model.overrides.%s instead", old, new, value, new)
    if "dtype" in config.data:
        log.warning("config.data.dtype (an older config) is not used: clips are uint8, and the "
                    "model computes in config.model.overrides.dtype")
    wanted = overrides.setdefault("num_classes", num_classes)
    if wanted != num_classes:
        raise ConfigError(f"config.model.overrides.num_classes={wanted} but the dataset has "
                         f"{num_classes} classes")
    return overrides


def _check_eval_frames(config, model, name: str | None = None) -> None:
    frames = config.eval.num_frames
    if frames in (0, config.data.num_frames) or getattr(model, "whole_video", False):
        return
    raise ConfigError(f"config.eval.num_frames={frames} differs from the model's clips of "
                     f"{config.data.num_frames} frames, but {name or config.model.name} takes "
                     "clips of a fixed length; only whole-video models (VTN) can; set "
                     "config.eval.num_frames=0")


def _split_size(builder, split: str) -> int:
    if split not in builder.info.splits:
        raise ConfigError(f"config.data.train_split={split!r} is not in the dataset; its splits: "
                         f"{', '.join(builder.info.splits)}")
    return builder.info.splits[split].num_examples


def setup(config, workdir: str, *, for_training: bool = True, devices=None) -> Experiment:
    """Mesh, model (created sharded, or loaded from config.init.path), optimiser, state."""
    check_config(config)  # before any data is read or a model compiled
    data_dir = ensure_dataset(config)
    builder, _ = open_dataset(data_dir)
    class_names = builder.info.features["label"].names
    if uses_epochs(config):  # the training split's real size turns epochs into steps
        config = resolve_epochs(config, _split_size(builder, config.data.train_split))
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp, devices)
    overrides = _model_overrides(config, len(class_names), data_dir)
    if config.init.path and not os.path.exists(os.path.expanduser(config.init.path)):
        raise MissingFileError(f"config.init.path={config.init.path!r} does not exist")
    name = config.model.name

    def make():
        return create_model(name, rngs=nnx.Rngs(config.seed), **overrides)

    abstract_model = nnx.eval_shape(make)
    _check_eval_frames(config, abstract_model)
    check_clip_length(config, data_dir, for_training=for_training)
    graphdef, abstract_params, abstract_rest = split_model(abstract_model)
    param_sh = mesh_lib.state_shardings(abstract_params, mesh, config.mesh.fsdp_min_size)
    if config.init.path:
        from vidmix.checkpoints import load_weights

        # built and converted in host memory (the CPU backend), then split over the mesh: no
        # accelerator holds a full copy
        with jax.default_device(jax.local_devices(backend="cpu")[0]):
            model = make()
            load_weights(model, os.path.expanduser(config.init.path), format=config.init.format,
                         ignore=tuple(config.init.ignore), inflate=config.init.inflate)
            _, params, rest = split_model(model)
        params = jax.device_put(params, param_sh)
        rest = jax.device_put(rest, mesh_lib.replicated(mesh))
    else:  # created directly with its final sharding: no full copy on any one device
        rest_sh = jax.tree.map(lambda _: mesh_lib.replicated(mesh), abstract_rest)
        params, rest = jax.jit(lambda: split_model(make())[1:],
                               out_shardings=(param_sh, rest_sh))()
    num_steps = int(config.train.num_steps)
    tx = make_optimizer(config.train, params, num_steps)
    opt_sh = mesh_lib.state_shardings(jax.eval_shape(tx.init, params), mesh,
                                      config.mesh.fsdp_min_size)
    if for_training:
        opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
    else:  # only its shape, to restore checkpoints into
        opt_state = jax.eval_shape(tx.init, params)
    state = {"params": params, "opt_state": opt_state,
             "step": jax.device_put(jnp.zeros((), jnp.int32), mesh_lib.replicated(mesh))}
    shardings = {"params": param_sh, "opt_state": opt_sh, "step": mesh_lib.replicated(mesh)}
    return Experiment(config, mesh, graphdef, rest, state, shardings, tx, list(class_names),
                      data_dir, num_steps, model_config(name, **overrides))


def resolved_config(exp: Experiment):
    """The run config with what it took from the dataset written in: with
    data.pixel_stats="dataset", the measured statistics become model.overrides.pixel_mean/std
    (so export and predict rebuild the model from config.json without the dataset)."""
    config = exp.config
    if config.data.get("pixel_stats", "model") != "dataset":
        return config
    config = copy.deepcopy(config)
    with config.unlocked():
        config.data.pixel_stats = "model"
        config.model.overrides.pixel_mean = tuple(exp.model_config.pixel_mean)
        config.model.overrides.pixel_std = tuple(exp.model_config.pixel_std)
    return config


def _write_run_files(exp: Experiment, workdir: str):
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(resolved_config(exp).to_json_best_effort(indent=1))
    with open(os.path.join(workdir, "class_names.json"), "w") as f:
        json.dump(exp.class_names, f)


# ---- evaluation -------------------------------------------------------------------------------


def _eval_step_fn(exp):
    step = jitted_eval_step(exp.graphdef)
    return lambda params, batch: step(params, batch, exp.rest)


def _finish_eval(exp, workdir, metrics, scores_labels):
    if jax.process_index() == 0 and len(exp.class_names) <= exp.config.eval.confusion_max_classes:
        cm = ev.confusion_matrix(*scores_labels, len(exp.class_names))
        ev.plot_confusion(cm, exp.class_names, os.path.join(workdir, "confusion.png"))
    return metrics


# ---- training ---------------------------------------------------------------------------------


def train(config, workdir: str) -> dict:
    """Trains (resuming from the workdir's newest intact checkpoint), evaluates, returns the
    metrics."""
    from tqdm import tqdm

    workdir = os.path.abspath(workdir)
    exp = setup(config, workdir)
    config = exp.config  # epochs resolved into steps
    _write_run_files(exp, workdir)
    per_process = mesh_lib.per_process_batch(config.train.batch_size, exp.mesh,
                                             "config.train.batch_size")
    evaluators = make_evaluators(exp)
    loader = train_loader(config, exp.data_dir, per_process)
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), config.train.checkpoint_every,
                              config.train.keep_checkpoints)
    it = iter(loader)
    state = exp.state
    restored = checkpoints.restore(state, exp.state_shardings, it)
    if restored is not None:
        state = restored
        log.info("resumed from step %d in %s", int(state["step"]), checkpoints.directory)
    start = int(state["step"])
    # the next batch is read and put on the mesh while the device computes the current step
    batches = Prefetch(it, functools.partial(mesh_lib.global_batch, mesh=exp.mesh),
                       config.data.get("prefetch", 1))
    cfg = exp.model_config
    stochastic = bool(cfg.drop_path_rate or cfg.dropout_rate or cfg.head_dropout_rate)
    step_fn = jax.jit(make_train_step(exp.graphdef, exp.tx,
                                      num_classes=len(exp.class_names),
                                      label_smoothing=config.train.label_smoothing,
                                      seed=config.seed, stochastic=stochastic),
                      out_shardings=(exp.state_shardings, None), donate_argnums=0)
    logbook = Logbook(workdir)
    stop = {"signal": None}
    previous = signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal=s))
    bar = tqdm(total=exp.num_steps, initial=start, disable=jax.process_index() != 0,
               desc="train", dynamic_ncols=True)
    metrics_sum, count, tick = None, 0, time.perf_counter()
    try:
        for step in range(start + 1, exp.num_steps + 1):
            batch = next(batches)
            state, metrics = step_fn(state, batch, exp.rest)
            metrics_sum = metrics if metrics_sum is None else jax.tree.map(
                jnp.add, metrics_sum, metrics)
            count += 1
            last = step == exp.num_steps
            if step % config.train.log_every == 0 or last or checkpoints.due(step):
                host = jax.device_get(metrics_sum)
                if int(host.pop("finite")) != count:
                    raise NonFiniteLossError(
                        f"the loss became NaN or Inf between steps {step - count + 1} and {step} "
                        f"(those updates were skipped); the last good checkpoint is step "
                        f"{checkpoints.latest_step()} in {checkpoints.directory}. Lower "
                        "config.train.learning_rate or set config.train.grad_clip.")
                elapsed = time.perf_counter() - tick
                row = {k: v / count for k, v in host.items()}
                row["clips_per_s"] = count * config.train.batch_size / elapsed
                logbook.write(step, "train", row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
                metrics_sum, count, tick = None, 0, time.perf_counter()
            bar.update(1)
            checkpoints.maybe_save(step, state, batches, force=last or stop["signal"] is not None)
            if stop["signal"] is not None:
                log.warning("SIGTERM: saved step %d, stopping; rerun to resume", step)
                break
            for name, evaluator in evaluators.items():  # the main one runs after the loop too
                if evaluator.every and step % evaluator.every == 0 and not (last and name == MAIN):
                    logbook.write(step, name, evaluator.run(state["params"])[0])
    finally:
        bar.close()
        checkpoints.wait()
        batches.close()
        it.close()
        signal.signal(signal.SIGTERM, previous)
    eval_metrics = None
    if stop["signal"] is None:
        eval_metrics, scores = evaluators[MAIN].run(state["params"])
        logbook.write(int(state["step"]), MAIN, eval_metrics)
        _finish_eval(exp, workdir, eval_metrics, scores)
    logbook.plot()
    logbook.close()
    checkpoints.close()
    return eval_metrics


def _folder_experiment(config, model_dir: str) -> Experiment:
    """An Experiment that evaluates the model folder `model_dir` (`vidmix.save_pretrained`) on
    the config's dataset and views. The model's input format is the folder's: clip frames, image
    size and normalisation from its config; sampling and stride from its preprocessing."""
    import copy

    from vidmix.checkpoints.pretrained import from_pretrained, read_config

    info = read_config(model_dir)
    model = from_pretrained(model_dir)
    cfg = model.config
    if not isinstance(cfg.image_size, int):
        raise ConfigError(f"{model_dir}: evaluation takes square images; the model's image_size "
                         f"is {cfg.image_size}")
    pre = info.get("preprocessing") or {}
    config = copy.deepcopy(config)
    config.data.num_frames, config.data.image_size = cfg.num_frames, cfg.image_size
    for key in ("sampling", "stride"):
        if key in pre:
            config.data[key] = pre[key]
    log.info("evaluating %s: %d frames of %d px, pixel mean %s, std %s, %s sampling", model_dir,
             cfg.num_frames, cfg.image_size, cfg.pixel_mean, cfg.pixel_std, config.data.sampling)
    data_dir = ensure_dataset(config)
    builder, _ = open_dataset(data_dir)
    class_names = list(builder.info.features["label"].names)
    if cfg.num_classes != len(class_names):
        raise ConfigError(f"the model in {model_dir} has {cfg.num_classes} classes, the dataset "
                         f"{data_dir} {len(class_names)}")
    saved = info.get("class_names")
    if saved and list(saved) != class_names:
        i = next(i for i, (a, b) in enumerate(zip(saved, class_names, strict=True)) if a != b)
        raise ConfigError(f"the model in {model_dir} was trained with other class names than the "
                         f"dataset's: class {i} is {saved[i]!r} there, {class_names[i]!r} here")
    _check_eval_frames(config, model, f"the model in {model_dir}")
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    graphdef, params, rest = split_model(model)
    params = jax.device_put(params, mesh_lib.state_shardings(params, mesh,
                                                             config.mesh.fsdp_min_size))
    rest = jax.device_put(rest, mesh_lib.replicated(mesh))
    return Experiment(config, mesh, graphdef, rest, {"params": params}, None, None, class_names,
                      data_dir, 0, cfg)


def checkpoint_params(exp: Experiment, workdir: str):
    """The parameters of the workdir's newest intact checkpoint (not its optimiser state)."""
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), read_only=True)
    try:
        found = checkpoints.restore_params(abstract_like(exp.state["params"],
                                                         exp.state_shardings["params"]))
    finally:
        checkpoints.close()
    if found is None:
        raise MissingFileError(f"no checkpoint in {checkpoints.directory}; train first "
                                f"(--mode=train --workdir={workdir})")
    log.info("using step %d of %s", found[0], checkpoints.directory)
    return found[1]


def evaluate(config, workdir: str | None, *, model_dir: str | None = None) -> dict:
    """Evaluates the workdir's newest intact checkpoint with the config's views; with
    `model_dir`, the model folder instead (the workdir, if given, only receives confusion.png)."""
    if model_dir:
        exp = _folder_experiment(config, model_dir)
        metrics, scores = main_evaluator(exp).run(exp.state["params"])
        if workdir is None:
            return metrics
        os.makedirs(workdir, exist_ok=True)
        return _finish_eval(exp, os.path.abspath(workdir), metrics, scores)
    workdir = os.path.abspath(workdir)
    exp = setup(config, workdir, for_training=False)
    params = checkpoint_params(exp, workdir)
    metrics, scores = main_evaluator(exp).run(params)
    return _finish_eval(exp, workdir, metrics, scores)


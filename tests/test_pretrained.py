"""Model folders: save_pretrained / from_pretrained, load_weights of a folder, export of a run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import vidmix
from vidmix.checkpoints import CheckpointError
from vidmix.checkpoints.mapping import param_paths
from vidmix.checkpoints.pretrained import from_pretrained, read_config, save_pretrained

VIT = dict(width=32, depth=2, num_heads=2, patch_size=8, image_size=16, num_frames=4,
           num_classes=3)
MODELS = {
    "mixing": ("xvit_s16", dict(VIT, head="linear")),
    "mixing_temporal_attention": ("xvit_s16", VIT),
    "summary": ("xvit_b16_summary", VIT),
    "divided": ("timesformer_b16", VIT),
    "joint": ("timesformer_b16_joint", VIT),
    "space": ("timesformer_b16_space", VIT),
    "vit_avg": ("vit_b16", VIT),
    "tubelet": ("timesformer_b16_joint", dict(VIT, tubelet_size=2)),
    "vtn": ("vtn_vit_b16", dict(VIT, depth=1, temporal_layers=1, temporal_heads=2,
                                temporal_mlp_dim=64, attention_window=2)),
    "pst": ("pst_tiny", dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=2,
                             image_size=16, num_frames=4, num_classes=3)),
}
NAMES = ["left", "right", "still"]


def randomised(name, seed=0, **kw):
    """A tiny model whose every parameter is random (fresh heads start at zero: logits would
    be equal for any weights)."""
    model = vidmix.create_model(name, rngs=nnx.Rngs(seed), **kw)
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(
        lambda a: a + 0.2 * rng.standard_normal(a.shape).astype(a.dtype), state))
    return model


@pytest.fixture(scope="module")
def clip():
    return jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 16, 16, 3)), jnp.float32)


_forward = nnx.jit(lambda model, clip: model(clip, train=False))  # compiled once per structure


def logits(model, clip):
    return np.asarray(_forward(model, clip))


@pytest.mark.parametrize("kind", list(MODELS))
def test_round_trip_is_bitwise(tmp_path, clip, kind):
    name, kw = MODELS[kind]
    model = randomised(name, **kw)
    path = save_pretrained(model, tmp_path / "m", NAMES, preset=name)
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    info = json.load(open(tmp_path / "m" / "config.json"))
    family = {"vtn": "vtn", "pst": "pst"}.get(kind, "vit")
    assert (info["format"], info["format_version"], info["family"], info["preset"]) == \
        ("vidmix", 2, family, name)
    assert info["class_names"] == NAMES and info["preprocessing"] is None
    assert info["config"]["num_classes"] == 3 and info["config"]["width" if kind != "pst"
                                                                  else "embed_dim"] in (32, 16)
    tensors = load_file(tmp_path / "m" / "model.safetensors")
    assert set(tensors) == set(param_paths(model))  # every parameter under its nnx path
    assert all(v.dtype == np.float32 for v in tensors.values())
    if family == "vit":
        assert "backbone/blocks/1/attn/qkv/kernel" in tensors  # layer-indexed names

    loaded = from_pretrained(tmp_path / "m")  # no preset name, no config: the folder alone
    assert type(loaded) is type(model) and loaded.config == model.config
    want = logits(model, clip)
    assert np.abs(want).max() > 0.1
    np.testing.assert_array_equal(logits(loaded, clip), want)


def test_bf16_model_saves_fp32_and_overrides_apply(tmp_path, clip):
    model = randomised("timesformer_b16", **VIT, dtype="bfloat16")
    save_pretrained(model, tmp_path / "bf16")
    with safe_open(tmp_path / "bf16" / "model.safetensors", "numpy") as f:
        assert f.metadata()["format"] == "vidmix"
        assert {f.get_tensor(k).dtype for k in f.keys()} == {np.dtype(np.float32)}
    loaded = from_pretrained(tmp_path / "bf16")
    assert loaded.config.dtype == "bfloat16"
    np.testing.assert_array_equal(logits(loaded, clip), logits(model, clip))
    # overrides that keep every parameter apply: compute dtype, remat
    full = from_pretrained(tmp_path / "bf16", dtype="float32", remat=True)
    assert full.config.dtype == "float32" and full.config.remat
    # the same weights (same seed), fp32, compiled alike (with remat on a CPU the layers run as a
    # loop, without it unrolled: the same values, not the same bits)
    reference = randomised("timesformer_b16", **VIT, remat=True)
    np.testing.assert_array_equal(logits(full, clip), logits(reference, clip))
    assert rel_err(logits(loaded, clip), logits(full, clip)) < 5e-2


def test_override_that_changes_parameters_is_named(tmp_path):
    save_pretrained(randomised("xvit_s16", **VIT), tmp_path / "m")
    with pytest.raises(vidmix.CheckpointMismatchError, match="num_classes=5") as e:
        from_pretrained(tmp_path / "m", num_classes=5)
    assert {m[0].split(" -> ")[1] for m in e.value.mismatched} == \
        {"head/classifier/kernel", "head/classifier/bias"}
    with pytest.raises(vidmix.CheckpointMismatchError, match="num_frames=8") as e:
        from_pretrained(tmp_path / "m", num_frames=8)  # one temporal embedding per frame
    assert [m[0] for m in e.value.mismatched] == ["backbone/temporal_embed -> backbone/temporal_embed"]
    with pytest.raises(TypeError, match="unknown model option.*'widht'"):
        from_pretrained(tmp_path / "m", widht=64)


def test_strict_load_names_missing_unexpected_and_mis_shaped(tmp_path):
    model = randomised("xvit_s16", **VIT)
    save_pretrained(model, tmp_path / "m")
    file = tmp_path / "m" / "model.safetensors"
    tensors = load_file(file)
    del tensors["backbone/blocks/1/mlp/fc2/bias"]
    tensors["backbone/blocks/9/extra"] = np.zeros(3, np.float32)
    tensors["backbone/norm/scale"] = np.zeros(5, np.float32)
    save_file(tensors, file, metadata={"format": "vidmix", "format_version": "1"})
    with pytest.raises(vidmix.CheckpointMismatchError) as e:
        from_pretrained(tmp_path / "m")
    assert e.value.missing == ["backbone/blocks/1/mlp/fc2/bias <- backbone/blocks/1/mlp/fc2/bias"]
    assert e.value.unexpected == ["backbone/blocks/9/extra"]
    assert e.value.mismatched == [("backbone/norm/scale -> backbone/norm/scale", (5,), (32,))]


def test_load_weights_reads_a_folder_strictly_and_ignore_keeps_a_new_head(tmp_path, clip):
    model = randomised("xvit_s16", **VIT)
    save_pretrained(model, tmp_path / "m", NAMES)
    same = vidmix.load_weights(vidmix.create_model("xvit_s16", **VIT), tmp_path / "m")
    np.testing.assert_array_equal(logits(same, clip), logits(model, clip))
    # the weight file alone is recognised from its header
    alone = vidmix.load_weights(vidmix.create_model("xvit_s16", **VIT),
                                tmp_path / "m" / "model.safetensors")
    np.testing.assert_array_equal(logits(alone, clip), logits(model, clip))

    other = vidmix.create_model("xvit_s16", **{**VIT, "num_classes": 10})
    head = np.asarray(other.head.classifier.kernel[...]).copy()
    with pytest.raises(vidmix.CheckpointMismatchError, match="head/classifier/kernel"):
        vidmix.load_weights(other, tmp_path / "m")
    vidmix.load_weights(other, tmp_path / "m", ignore=("head/*",))
    np.testing.assert_array_equal(other.head.classifier.kernel[...], head)  # fresh head kept
    np.testing.assert_array_equal(other.backbone.blocks[1].attn.qkv.kernel[...],
                                  model.backbone.blocks[1].attn.qkv.kernel[...])
    with pytest.raises(CheckpointError, match="holds a 'vit' model; this model is 'pst'"):
        vidmix.load_weights(vidmix.create_model(MODELS["pst"][0], **MODELS["pst"][1]), tmp_path / "m")


def test_folder_errors(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=16, patch_size=8)).save_pretrained(
        tmp_path / "hf")
    with pytest.raises(CheckpointError, match="not a vidmix model folder"):
        from_pretrained(tmp_path / "hf")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        from_pretrained(tmp_path / "nope")
    model = randomised("xvit_s16", **VIT)
    save_pretrained(model, tmp_path / "m")
    with pytest.raises(FileExistsError, match="already holds a model"):
        save_pretrained(model, tmp_path / "m")
    save_pretrained(model, tmp_path / "m", NAMES, overwrite=True)
    assert read_config(tmp_path / "m")["class_names"] == NAMES
    with pytest.raises(ValueError, match="2 class names for a model of 3 classes"):
        save_pretrained(model, tmp_path / "m2", NAMES[:2])
    with pytest.raises(ValueError, match="unknown preprocessing key.*'meen'"):
        save_pretrained(model, tmp_path / "m2", preprocessing={"meen": [0.5] * 3})
    with pytest.raises(ValueError, match=r"preprocessing mean and std: the normalisation is the "
                                         r"model's .* pixel_mean=\.\.\., pixel_std=\.\.\."):
        save_pretrained(model, tmp_path / "m2", preprocessing={"mean": [0.5] * 3, "std": [1] * 3})
    with pytest.raises(ValueError, match="image_size 32 differs from the model's 16"):
        save_pretrained(model, tmp_path / "m2", preprocessing={"image_size": 32})
    with pytest.raises(ValueError, match="num_frames 8 differs from the model's 4"):
        save_pretrained(model, tmp_path / "m2", preprocessing={"num_frames": 8})
    assert not os.path.exists(tmp_path / "m2")  # nothing written on error
    vtn = vidmix.create_model(MODELS["vtn"][0], **MODELS["vtn"][1])  # whole videos: any length
    save_pretrained(vtn, tmp_path / "vtn", preprocessing={"num_frames": -1})
    assert read_config(tmp_path / "vtn")["preprocessing"]["num_frames"] == -1
    info = json.load(open(tmp_path / "m" / "config.json"))
    json.dump({**info, "format_version": 3}, open(tmp_path / "m" / "config.json", "w"))
    with pytest.raises(CheckpointError, match="newer vidmix"):
        from_pretrained(tmp_path / "m")
    json.dump({**info, "config": {**info["config"], "colour": 1}},
              open(tmp_path / "m" / "config.json", "w"))
    with pytest.raises(CheckpointError, match="'colour'"):
        from_pretrained(tmp_path / "m")


def test_preprocessing_and_normalisation_are_recorded(tmp_path):
    model = randomised("xvit_s16", **VIT, pixel_mean=(0.45,) * 3, pixel_std=(0.225,) * 3)
    save_pretrained(model, tmp_path / "m", preprocessing=dict(short_side=20, num_clips=2))
    info = read_config(tmp_path / "m")
    assert info["preprocessing"] == {"num_frames": 4, "image_size": 16, "short_side": 20,
                                     "num_clips": 2}
    assert (info["config"]["pixel_mean"], info["config"]["pixel_std"]) == ([0.45] * 3, [0.225] * 3)
    assert from_pretrained(tmp_path / "m").config.pixel_mean == (0.45,) * 3


def test_format_1_folder_normalisation_moves_into_the_model_config(tmp_path, clip):
    """Format 1 kept mean / std in `preprocessing`: they become pixel_mean / pixel_std; a folder
    without them gets the config's defaults."""
    model = randomised("timesformer_b16", **VIT, pixel_mean=(0.4, 0.5, 0.6),
                       pixel_std=(0.2, 0.3, 0.4))
    save_pretrained(model, tmp_path / "m", preprocessing=dict(short_side=20))
    info = json.load(open(tmp_path / "m" / "config.json"))
    config = {k: v for k, v in info["config"].items() if not k.startswith("pixel_")}
    old = {**info, "format_version": 1, "config": config,
           "preprocessing": {**info["preprocessing"], "mean": [0.4, 0.5, 0.6],
                             "std": [0.2, 0.3, 0.4]}}
    json.dump(old, open(tmp_path / "m" / "config.json", "w"))
    read = read_config(tmp_path / "m")
    assert read["preprocessing"] == {"num_frames": 4, "image_size": 16, "short_side": 20}
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    pixels = np.random.default_rng(0).integers(0, 256, clip.shape, dtype=np.uint8)
    np.testing.assert_array_equal(logits(loaded, pixels), logits(model, pixels))
    json.dump({**old, "preprocessing": None}, open(tmp_path / "m" / "config.json", "w"))
    assert from_pretrained(tmp_path / "m").config.pixel_mean == (0.5, 0.5, 0.5)


# A training run: export, then predict / eval / init from the folder --------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny XViT trained for 4 steps on a synthetic dataset (checkpoints at steps 2 and 4)."""
    from configs.default import get_config
    from vidmix.data import build_dataset
    from vidmix.training.trainer import train

    root = tmp_path_factory.mktemp("run")
    data = build_dataset("synthetic", None, root / "data", num_train=16, num_val=8, num_frames=8,
                         size=16, num_workers=1).data_dir
    c = get_config()
    c.model.overrides = dict(width=32, depth=1, num_heads=2, patch_size=4, head="linear",
                             head_dropout_rate=0.0)
    c.data.dir = data
    c.data.num_frames, c.data.image_size, c.data.stride = 4, 16, 2
    c.data.pixel_stats = "model"  # the model's own, given here (not the demo's dataset stats)
    c.model.overrides.update(pixel_mean=(0.4, 0.5, 0.6), pixel_std=(0.2, 0.3, 0.4))
    c.train.update(batch_size=8, num_steps=4, log_every=2, checkpoint_every=2, warmup_steps=0)
    c.eval.update(batch_size=8, every=0, num_clips=2)
    workdir = str(root / "workdir")
    train(c, workdir)
    return c, workdir


@pytest.mark.slow  # with the run fixture: ~30 s
def test_export_writes_the_runs_model(run, tmp_path, clip):
    from saved_checkpoints import saved_state

    from vidmix.export import main as export_main

    config, workdir = run
    out = export_main([workdir, str(tmp_path / "out")])
    info = read_config(out)
    assert info["preset"] == "xvit_s16"
    assert info["class_names"] == json.load(open(os.path.join(workdir, "class_names.json")))
    pre = info["preprocessing"]
    assert "mean" not in pre and (pre["num_frames"], pre["image_size"], pre["num_clips"]) == \
        (4, 16, 2)
    assert (info["config"]["pixel_mean"], info["config"]["pixel_std"]) == \
        ([0.4, 0.5, 0.6], [0.2, 0.3, 0.4])
    model = from_pretrained(out)
    assert model.config.num_classes == 2 and model.config.width == 32
    for step in (4, 2):
        saved = saved_state(os.path.join(workdir, "checkpoints"), step)["params"]
        exported = model if step == 4 else from_pretrained(
            export_main([workdir, str(tmp_path / "step2"), "--step", "2"]))
        flat = {"/".join(map(str, p)): np.asarray(v[...])
                for p, v in nnx.to_flat_state(nnx.state(exported, nnx.Param))}
        for path, value in jax.tree_util.tree_flatten_with_path(saved)[0]:
            name = "/".join(str(k.key) for k in path[:-1])  # the leaf is the Variable's "value"
            np.testing.assert_array_equal(flat.pop(name), np.asarray(value))
        assert not flat
    assert not np.array_equal(model.head.classifier.kernel[...],
                              from_pretrained(tmp_path / "step2").head.classifier.kernel[...])
    # the dataset is not needed: a copy of the run whose dataset is elsewhere exports the same
    import shutil

    moved = tmp_path / "moved_run"
    shutil.copytree(workdir, moved)
    run_config = json.load(open(moved / "config.json"))
    run_config["data"].update(dir=str(tmp_path / "gone"), kind="video_folder")
    # a run of an older vidmix: its normalisation in config.data.mean / std
    overrides = run_config["model"]["overrides"]
    run_config["data"].update(mean=overrides.pop("pixel_mean"), std=overrides.pop("pixel_std"))
    json.dump(run_config, open(moved / "config.json", "w"))
    elsewhere = export_main([str(moved), str(tmp_path / "moved_out"), "--short_side", "24"])
    assert read_config(elsewhere)["preprocessing"]["short_side"] == 24
    assert from_pretrained(elsewhere).config == model.config
    np.testing.assert_array_equal(load_file(os.path.join(elsewhere, "model.safetensors"))[
        "head/classifier/kernel"], np.asarray(model.head.classifier.kernel[...]))
    assert not os.path.exists(tmp_path / "gone")
    with pytest.raises(ValueError, match="no checkpoint of step 3 .* its steps: 2, 4"):
        export_main([workdir, str(tmp_path / "x"), "--step", "3"])
    with pytest.raises(FileNotFoundError, match="not the workdir of a training run"):
        export_main([str(tmp_path), str(tmp_path / "y")])


@pytest.mark.slow
def test_export_predict_and_eval_from_the_folder(run, tmp_path):
    """The folder predicts and evaluates as the run does; predict needs no dataset nor workdir,
    and config.init.path takes the folder."""
    from video_files import moving_bar_frames, write_video

    from configs.default import get_config
    from vidmix.export import main as export_main
    from vidmix.training.predict import predict
    from vidmix.training.trainer import evaluate, setup

    config, workdir = run
    out = export_main([workdir, str(tmp_path / "out")])
    video = tmp_path / "bar.mp4"
    write_video(video, moving_bar_frames(12, h=24, w=40))
    want = predict(config, workdir, str(video))
    # the demo config (other model, normalisation, dataset) does not matter: the folder decides
    demo = get_config()
    demo.data.dir = str(tmp_path / "no_dataset_here")
    got = predict(demo, None, str(video), model_dir=out)
    assert [n for n, _ in got] == [n for n, _ in want]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in want], rtol=1e-6)

    demo.data.dir = config.data.dir
    demo.eval.update(batch_size=8, num_clips=2)
    scored = evaluate(demo, None, model_dir=out)
    assert scored == evaluate(config, workdir)
    assert not os.path.exists(os.path.join(str(tmp_path), "confusion.png"))

    config = config.copy_and_resolve_references()
    config.init.path = out
    exp = setup(config, str(tmp_path / "fine_tune"), for_training=False)
    model = from_pretrained(out)
    np.testing.assert_array_equal(
        np.asarray(exp.state["params"]["head"]["classifier"]["kernel"][...]),
        np.asarray(model.head.classifier.kernel[...]))


def test_eval_from_a_folder_checks_its_classes(run, tmp_path):
    from vidmix.training.trainer import evaluate

    config, _ = run
    save_pretrained(randomised("xvit_s16", **{**VIT, "num_classes": 2}), tmp_path / "wrong",
                    ["moving_left", "moving_right"])  # the dataset's classes, in another order
    with pytest.raises(ValueError, match="class 0 is 'moving_left' there, 'moving_right' here"):
        evaluate(config, None, model_dir=str(tmp_path / "wrong"))

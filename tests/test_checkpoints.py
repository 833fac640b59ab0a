"""Image and video checkpoints in every layout users bring, against `transformers`' ViT."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err
from transformers import ViTConfig, ViTForImageClassification

import vidmix
from vidmix.checkpoints.families.vit import patch_kernel

D, HEADS, DEPTH, CLASSES = 48, 4, 2, 7
VIT = dict(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
           intermediate_size=4 * D, num_labels=CLASSES, layer_norm_eps=1e-6)


def hf_vit(image_size=32, patch_size=8, seed=0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    model = ViTForImageClassification(ViTConfig(image_size=image_size, patch_size=patch_size, **VIT))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def image_logits(ref, frame):
    with torch.no_grad():
        return ref(pixel_values=torch.from_numpy(frame).permute(0, 3, 1, 2)).logits.numpy()


def video_model(name="vit_b16", **kw):
    base = dict(width=D, depth=DEPTH, num_heads=HEADS, image_size=32, patch_size=8, num_frames=1,
                num_classes=CLASSES)
    return vidmix.create_model(name, **{**base, **kw})


def frame_vit(**kw):
    """The vidmix per-frame ViT as an image model: space attention, T = 1, linear head."""
    return video_model("vit_b16", head="linear", **kw)


@pytest.fixture(scope="module")
def ref():
    return hf_vit()


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)


# Google .npz layouts, written by the test from the HF weights (layouts of checkpoints.md) -------
def hub_state(ref) -> dict[str, np.ndarray]:
    """The weights under the names of HF's saved files (`vit.encoder.layer.{i}...`)."""
    import tempfile

    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as d:
        ref.save_pretrained(d)
        return load_file(f"{d}/model.safetensors")


def google_npz(ref, style: str) -> dict[str, np.ndarray]:
    sd = hub_state(ref)
    e = "vit.embeddings."
    names = {"orig": ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
             "linen": ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")}
    ln1, mha, ln2, mlp = names["orig" if style == "orig" else "linen"]
    out = {"embedding/kernel": sd[f"{e}patch_embeddings.projection.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": sd[f"{e}patch_embeddings.projection.bias"],
           "cls": sd[f"{e}cls_token"],
           "Transformer/encoder_norm/scale": sd["vit.layernorm.weight"],
           "Transformer/encoder_norm/bias": sd["vit.layernorm.bias"],
           "head/kernel": sd["classifier.weight"].T, "head/bias": sd["classifier.bias"]}
    pos = sd[f"{e}position_embeddings"]
    if style.startswith("big_vision"):  # no CLS row: fold it into the CLS token
        out["cls"] = out["cls"] + pos[:, :1]
        out["pos_embedding"] = pos[:, 1:]
    else:
        out["Transformer/posembed_input/pos_embedding"] = pos
    blocks = []
    for i in range(DEPTH):
        s = f"vit.encoder.layer.{i}."
        b = {f"{ln1}/scale": sd[s + "layernorm_before.weight"],
             f"{ln1}/bias": sd[s + "layernorm_before.bias"],
             f"{ln2}/scale": sd[s + "layernorm_after.weight"],
             f"{ln2}/bias": sd[s + "layernorm_after.bias"],
             f"{mlp}/Dense_0/kernel": sd[s + "intermediate.dense.weight"].T,
             f"{mlp}/Dense_0/bias": sd[s + "intermediate.dense.bias"],
             f"{mlp}/Dense_1/kernel": sd[s + "output.dense.weight"].T,
             f"{mlp}/Dense_1/bias": sd[s + "output.dense.bias"],
             f"{mha}/out/kernel": sd[s + "attention.output.dense.weight"].T.reshape(HEADS, -1, D),
             f"{mha}/out/bias": sd[s + "attention.output.dense.bias"]}
        for p in ("query", "key", "value"):
            b[f"{mha}/{p}/kernel"] = sd[s + f"attention.attention.{p}.weight"].T.reshape(D, HEADS, -1)
            b[f"{mha}/{p}/bias"] = sd[s + f"attention.attention.{p}.bias"].reshape(HEADS, -1)
        blocks.append(b)
    if style == "big_vision_scanned":
        for k in blocks[0]:
            out[f"Transformer/encoderblock/{k}"] = np.stack([b[k] for b in blocks])
    else:
        for i, b in enumerate(blocks):
            out.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in b.items()})
    if style.startswith("big_vision"):
        out = {f"params/{k}": v for k, v in out.items()}
    return out


def test_hf_vit_safetensors_and_bin(tmp_path, ref, frames):
    ref.save_pretrained(tmp_path / "st")
    (tmp_path / "bin").mkdir()  # transformers 5's in-memory names, as torch.save writes them
    torch.save(ref.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    want = image_logits(ref, frames)
    for path in (tmp_path / "st" / "model.safetensors", tmp_path / "bin" / "pytorch_model.bin"):
        model = vidmix.load_weights(frame_vit(), path)
        got = np.asarray(model(jnp.asarray(frames[:, None])))
        assert rel_err(got, want) < 1e-5, path


@pytest.mark.parametrize("style", ["orig", "linen", "big_vision", "big_vision_scanned"])
def test_google_npz_layouts(tmp_path, ref, frames, style):
    path = tmp_path / f"{style}.npz"
    np.savez(path, **google_npz(ref, style))
    model = vidmix.load_weights(frame_vit(), path)
    assert rel_err(np.asarray(model(jnp.asarray(frames[:, None]))), image_logits(ref, frames)) < 1e-5


def test_timm_names(tmp_path, ref, frames):
    from safetensors.numpy import save_file

    from vidmix.checkpoints.formats.torch_vit import hugging_face

    timm = hugging_face.to_canonical(hub_state(ref))
    save_file(timm, tmp_path / "timm.safetensors")
    assert vidmix.checkpoints.detect_format(timm) == "timm_vit"
    model = vidmix.load_weights(frame_vit(), tmp_path / "timm.safetensors")
    assert rel_err(np.asarray(model(jnp.asarray(frames[:, None]))), image_logits(ref, frames)) < 1e-5


# Image -> video ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_file(tmp_path_factory, ref):
    path = tmp_path_factory.mktemp("img") / "vit.safetensors"
    ref.save_pretrained(path.parent)
    return path.parent / "model.safetensors"


def still_clip(frames, t):
    return jnp.asarray(np.repeat(frames[:, None], t, axis=1))


def test_timesformer_from_image_is_the_image_model(image_file, ref, frames):
    """temporal_fc starts at zero and the time embedding at zero: a still clip gives the image
    model's logits."""
    model = vidmix.load_weights(video_model("timesformer_b16", num_frames=4), image_file)
    blk = model.backbone.blocks[0]
    np.testing.assert_array_equal(blk.temporal_attn.qkv.kernel[...], blk.attn.qkv.kernel[...])
    assert not np.any(blk.temporal_fc.kernel[...]) and not np.any(model.backbone.temporal_embed[...])
    got = np.asarray(model(still_clip(frames, 4)))
    assert rel_err(got, image_logits(ref, frames)) < 1e-5


def image_features(ref, frames):
    """HF ViT's normalised CLS feature per image."""
    with torch.no_grad():
        out = ref.vit(pixel_values=torch.from_numpy(frames).permute(0, 3, 1, 2))
    return out.last_hidden_state[:, 0].numpy()


def test_xvit_from_image_on_a_still_clip(image_file, ref, frames, caplog):
    """What holds: on T identical frames, a shifted channel carries the same values as the
    unshifted one except where the shift brings zeros in (clip edges). With `roll` there are no
    edges, so every frame's features are the image model's. With zero padding, the edge effect
    travels one frame per block: frames t with depth <= t < T - depth are still exact."""
    want = image_features(ref, frames)
    with caplog.at_level("WARNING"):
        rolled = vidmix.load_weights(video_model("xvit_b16", num_frames=8, shift_mode="roll"),
                                     image_file)
    assert "no temporal-attention head: new head" in caplog.text  # the image head is not used
    feats = np.asarray(rolled.features(still_clip(frames, 8)))  # (B, T, D)
    for t in range(8):
        assert rel_err(feats[:, t], want) < 1e-5
    padded = vidmix.load_weights(video_model("xvit_b16", num_frames=8), image_file)
    feats = np.asarray(padded.features(still_clip(frames, 8)))
    for t in range(8):
        exact = DEPTH <= t < 8 - DEPTH
        assert (rel_err(feats[:, t], want) < 1e-5) == exact, t


@pytest.mark.parametrize("size", [160, 288])
def test_position_embedding_resize(tmp_path, size):
    src = hf_vit(image_size=224, patch_size=16)
    src.save_pretrained(tmp_path)
    pos = src.vit.embeddings.position_embeddings.detach().numpy()[0]
    model = vidmix.load_weights(frame_vit(image_size=size, patch_size=16), tmp_path)
    got = np.asarray(model.backbone.pos_embed[...])
    grid = size // 16
    assert got.shape == (1 + grid * grid, D)
    np.testing.assert_array_equal(got[0], pos[0])  # the CLS row is kept
    # Bicubic resizing keeps a smooth field's values where grids align: the corners' mean level.
    assert abs(got[1:].mean() - pos[1:].mean()) < 0.1 * np.abs(pos[1:]).mean()
    out = model(jnp.zeros((1, 1, size, size, 3)))
    assert out.shape == (1, CLASSES)


def test_tubelet_inflation_average_and_central(rng):
    w = rng.standard_normal((D, 3, 8, 8)).astype(np.float32)
    avg, central = patch_kernel(w, 2, "average"), patch_kernel(w, 2, "central")
    assert avg.shape == central.shape == (2, 8, 8, 3, D)
    np.testing.assert_allclose(avg.sum(0), w.transpose(2, 3, 1, 0), rtol=1e-6)
    np.testing.assert_array_equal(central[1], w.transpose(2, 3, 1, 0))
    assert not central[0].any()


def test_tubelet_model_from_image_on_a_still_clip(image_file, frames):
    """Average inflation: a still clip gives the tubelet model the image's patch tokens."""
    model = vidmix.load_weights(video_model("timesformer_b16_joint", num_frames=4, tubelet_size=2),
                                image_file)
    image = vidmix.load_weights(frame_vit(), image_file)
    tokens = model.backbone.patch_embed(still_clip(frames, 4))[:, 0]
    want = image.backbone.patch_embed(jnp.asarray(frames))
    assert rel_err(tokens, want) < 1e-5


# Released video layouts --------------------------------------------------------------------------
def test_timesformer_official_pyth_equals_hf(tmp_path):
    from test_timesformer_parity import hf_model, torch_input, vidmix_model

    hf = hf_model("divided_space_time")
    hf.save_pretrained(tmp_path)
    official = {}
    renames = [("timesformer.embeddings.cls_token", "cls_token"),
               ("timesformer.embeddings.position_embeddings", "pos_embed"),
               ("timesformer.embeddings.time_embeddings", "time_embed"),
               ("timesformer.embeddings.patch_embeddings.projection", "patch_embed.proj"),
               ("timesformer.encoder.layer", "blocks"), ("layernorm_before", "norm1"),
               ("attention.attention.qkv", "attn.qkv"), ("temporal_attn.output.dense",
                                                         "temporal_attn.proj"),
               ("attention.output.dense", "attn.proj"), ("temporal_layernorm", "temporal_norm1"),
               ("temporal_dense", "temporal_fc"), ("layernorm_after", "norm2"),
               ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"),
               ("timesformer.layernorm", "norm"), ("classifier", "head")]
    for key, value in hf.state_dict().items():
        key = key.replace("temporal_attention.attention.qkv", "temporal_attn.qkv")
        key = key.replace("temporal_attention.output.dense", "temporal_attn.output.dense")
        for a, b in renames:
            key = key.replace(a, b)
        official[f"model.{key}"] = value
    torch.save({"model_state": official, "epoch": 15, "cfg": "TRAIN: ...",
                "optimizer_state": {"state": {0: {"momentum_buffer": torch.ones(3)}}}},
               tmp_path / "TimeSformer_divST_8x32_224_K400.pyth")
    clip = np.random.default_rng(3).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    a = vidmix.load_weights(vidmix_model("divided"), tmp_path / "TimeSformer_divST_8x32_224_K400.pyth")
    b = vidmix.load_weights(vidmix_model("divided"), tmp_path / "model.safetensors")
    np.testing.assert_array_equal(np.asarray(a(jnp.asarray(clip))), np.asarray(b(jnp.asarray(clip))))
    with torch.no_grad():
        want = hf(pixel_values=torch_input(clip)).logits.numpy()
    assert rel_err(np.asarray(a(jnp.asarray(clip))), want) < 1e-5


def xvit_release(rng, classes=5, depth=DEPTH, size=32, patch=8) -> dict[str, torch.Tensor]:
    """A state dict in the official XViT layout (xvit.md), random values."""
    n = (size // patch) ** 2
    r = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32))
    sd = {"base_model.cls_token": r(1, 1, D), "base_model.pos_embed": r(1, n + 1, D),
          "base_model.temp_embed": r(1, 8, 1, D), "base_model.patch_embed.proj.weight": r(D, 3, patch, patch),
          "base_model.patch_embed.proj.bias": r(D), "base_model.norm.weight": r(D),
          "base_model.norm.bias": r(D), "new_fc.weight": r(classes, D), "new_fc.bias": r(classes),
          "consensus.cls_token": r(1, 1, D)}

    def block(prefix, qkv_bias=True):
        b = {f"{prefix}.attn.qkv.weight": r(3 * D, D), f"{prefix}.attn.proj.weight": r(D, D),
             f"{prefix}.attn.proj.bias": r(D), f"{prefix}.mlp.fc1.weight": r(4 * D, D),
             f"{prefix}.mlp.fc1.bias": r(4 * D), f"{prefix}.mlp.fc2.weight": r(D, 4 * D),
             f"{prefix}.mlp.fc2.bias": r(D)}
        for norm in ("norm1", "norm2"):
            b[f"{prefix}.{norm}.weight"], b[f"{prefix}.{norm}.bias"] = r(D), r(D)
        if qkv_bias:
            b[f"{prefix}.attn.qkv.bias"] = r(3 * D)
        return b

    for i in range(depth):
        sd.update(block(f"base_model.blocks.{i}"))
    sd.update(block("consensus.temporal_encoder.0", qkv_bias=False))
    sd.update({"consensus.mlp_head.0.weight": r(D), "consensus.mlp_head.0.bias": r(D),
               "consensus.mlp_head.1.weight": r(D, D), "consensus.mlp_head.1.bias": r(D),
               "consensus.mlp_head.4.weight": r(classes, D), "consensus.mlp_head.4.bias": r(classes)})
    return sd


def test_xvit_release_layout(tmp_path, rng, caplog):
    sd = xvit_release(rng)
    torch.save({"model_state": sd, "epoch": 30}, tmp_path / "xvit_k600_16f.pth")
    model = video_model("xvit_b16", num_frames=16, shift_group=8, temporal_embed_slots=8,
                        num_classes=5)
    with caplog.at_level("WARNING"):
        vidmix.load_weights(model, tmp_path / "xvit_k600_16f.pth")
    assert "new_fc.weight" in caplog.text  # the release's unused classifier is named
    np.testing.assert_array_equal(model.backbone.temporal_embed[...], sd["base_model.temp_embed"][0, :, 0])
    np.testing.assert_array_equal(model.head.block.attn.qkv.kernel[...],
                                  sd["consensus.temporal_encoder.0.attn.qkv.weight"].numpy().T)
    np.testing.assert_array_equal(model.head.classifier.kernel[...],
                                  sd["consensus.mlp_head.4.weight"].numpy().T)
    out = model(jnp.zeros((1, 16, 32, 32, 3)))
    assert out.shape == (1, 5) and bool(jnp.all(jnp.isfinite(out)))


# Mismatches and bad files --------------------------------------------------------------------------
def _save(tmp_path, tensors):
    from safetensors.numpy import save_file

    path = tmp_path / "ckpt.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path)
    return path


@pytest.fixture
def canonical(ref):
    from vidmix.checkpoints.formats.torch_vit import hugging_face

    return hugging_face.to_canonical(hub_state(ref))


def test_extra_key_is_named(tmp_path, canonical):
    path = _save(tmp_path, {**canonical, "blocks.0.attn.rel_pos_bias": np.zeros(3, np.float32)})
    with pytest.raises(vidmix.CheckpointMismatchError, match=r"unexpected \(1\): blocks.0.attn.rel_pos_bias"):
        vidmix.load_weights(frame_vit(), path)


def test_missing_key_is_named_and_model_untouched(tmp_path, canonical):
    del canonical["blocks.1.mlp.fc2.bias"]
    model = frame_vit()
    before = np.asarray(model.backbone.blocks[0].mlp.fc1.kernel[...]).copy()
    with pytest.raises(vidmix.CheckpointMismatchError,
                       match=r"missing \(1\): backbone/blocks/1/mlp/fc2/bias <- blocks.1.mlp.fc2.bias"):
        vidmix.load_weights(model, _save(tmp_path, canonical))
    np.testing.assert_array_equal(before, model.backbone.blocks[0].mlp.fc1.kernel[...])


def test_other_width_reports_every_mismatch(tmp_path, image_file):
    model = frame_vit(width=64)
    with pytest.raises(vidmix.CheckpointMismatchError, match="shape mismatch") as e:
        vidmix.load_weights(model, image_file)
    assert len(e.value.mismatched) > 20
    assert any("blocks.1.attn.qkv.weight" in m[0] for m in e.value.mismatched)


def test_other_depth_reports_missing_blocks(image_file):
    with pytest.raises(vidmix.CheckpointMismatchError) as e:
        vidmix.load_weights(frame_vit(depth=3), image_file)
    assert e.value.missing and all("blocks/2/" in m for m in e.value.missing)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pth"])
def test_truncated_files(tmp_path, ref, canonical, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(path, **canonical)
    elif suffix == ".pth":
        torch.save(ref.state_dict(), path)
    else:
        path = _save(tmp_path, canonical).rename(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(vidmix.checkpoints.CheckpointError):
        vidmix.load_weights(frame_vit(), path)


def test_unrecognised_layout_and_type(tmp_path):
    path = _save(tmp_path, {"foo.weight": np.zeros(3, np.float32)})
    with pytest.raises(vidmix.checkpoints.CheckpointError, match="unrecognised checkpoint layout"):
        vidmix.load_weights(frame_vit(), path)
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(vidmix.checkpoints.CheckpointError, match="unknown file type"):
        vidmix.load_weights(frame_vit(), tmp_path / "w.h5")


def test_convert_command_writes_a_model_folder(tmp_path, ref, frames):
    import json
    import subprocess
    import sys

    from test_main import ROOT

    from vidmix.checkpoints.pretrained import from_pretrained

    np.savez(tmp_path / "vit.npz", **google_npz(ref, "orig"))
    (tmp_path / "labels.txt").write_text("".join(f"label {i}\n" for i in range(CLASSES)))
    out = tmp_path / "converted"
    cmd = [sys.executable, "-m", "vidmix.convert", "vit_b16", str(tmp_path / "vit.npz"), str(out),
           "--set", "head=linear", "--set", f"width={D}", "--set", f"depth={DEPTH}",
           "--set", f"num_heads={HEADS}", "--set", "image_size=32", "--set", "patch_size=8",
           "--set", "num_frames=1", "--set", f"num_classes={CLASSES}",
           "--class-names", str(tmp_path / "labels.txt"), "--set", "pixel_mean=0.45,0.45,0.45",
           "--pre", "short_side=40"]
    env = {**__import__("os").environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert "wrote vit_b16 (7 classes)" in run.stdout
    info = json.load(open(out / "config.json"))
    assert (info["format"], info["family"], info["preset"]) == ("vidmix", "vit", "vit_b16")
    assert info["config"]["num_classes"] == CLASSES and info["config"]["head"] == "linear"
    assert info["class_names"] == [f"label {i}" for i in range(CLASSES)]
    assert info["preprocessing"] == {"short_side": 40, "num_frames": 1, "image_size": 32}
    assert info["config"]["pixel_mean"] == [0.45] * 3
    model = from_pretrained(out)
    assert rel_err(np.asarray(model(jnp.asarray(frames[:, None]))), image_logits(ref, frames)) < 1e-5
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode != 0 and "already holds a model" in again.stderr
    bad_cmd = [str(tmp_path / "o2") if a == str(out) else a for a in cmd] + ["--pre", "meen=1"]
    bad = subprocess.run(bad_cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and "unknown preprocessing key(s) 'meen'" in bad.stderr
    moved = subprocess.run(bad_cmd[:-1] + ["mean=0.5,0.5,0.5"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env=env)
    assert moved.returncode != 0 and "make the model with pixel_mean=" in moved.stderr


def test_incomplete_hf_qkv_is_reported_by_its_file_names(tmp_path, ref):
    # a Hugging Face file missing one layer's key projection: the layer's query and value are not
    # fused, the error names them as the file does, and the fused kernel as missing
    from safetensors.numpy import save_file

    state = {k: np.ascontiguousarray(v) for k, v in hub_state(ref).items()
             if not k.endswith("layer.1.attention.attention.key.weight")}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(vidmix.CheckpointMismatchError) as e:
        vidmix.load_weights(frame_vit(), tmp_path / "model.safetensors")
    message = str(e.value)
    assert "backbone/blocks/1/attn/qkv/kernel <- blocks.1.attn.qkv.weight" in message
    for part in ("query", "value"):
        assert f"encoder.layer.1.attention.attention.{part}.weight" in message
    assert "blocks.1.attn.qkv.bias" not in message  # the biases are complete: fused


# The official TimeSformer release, every attention type ----------------------------------------------
def official_timesformer(hf) -> dict[str, torch.Tensor]:
    """A Hugging Face TimeSformer's weights in the official release's layout (timesformer.md):
    `model.` + timm names, `time_embed` (not in space_only), per-block temporal branch (divided)."""
    rules = [("timesformer.embeddings.cls_token", "cls_token"),
             ("timesformer.embeddings.position_embeddings", "pos_embed"),
             ("timesformer.embeddings.time_embeddings", "time_embed"),
             ("timesformer.embeddings.patch_embeddings.projection", "patch_embed.proj"),
             ("timesformer.encoder.layer", "blocks"), ("timesformer.layernorm", "norm"),
             ("temporal_attention.attention.qkv", "temporal_attn.qkv"),
             ("temporal_attention.output.dense", "temporal_attn.proj"),
             ("temporal_layernorm", "temporal_norm1"), ("temporal_dense", "temporal_fc"),
             ("layernorm_before", "norm1"), ("attention.attention.qkv", "attn.qkv"),
             ("attention.output.dense", "attn.proj"), ("layernorm_after", "norm2"),
             ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"),
             ("classifier", "head")]
    out = {}
    for key, value in hf.state_dict().items():
        for a, b in rules:
            key = key.replace(a, b)
        out[f"model.{key}"] = value.clone()
    return out


@pytest.mark.parametrize("attention_type", ["space_only", "joint_space_time", "divided_space_time"])
def test_timesformer_official_layouts(tmp_path, attention_type):
    from test_timesformer_parity import SCHEME, hf_model, torch_input, vidmix_model

    hf = hf_model(attention_type)
    official = official_timesformer(hf)
    keys = set(official)
    assert ("model.time_embed" in keys) == (attention_type != "space_only")
    assert any(".temporal_attn." in k for k in keys) == (attention_type == "divided_space_time")
    assert "model.head.weight" in keys and "model.blocks.1.attn.qkv.weight" in keys
    assert vidmix.checkpoints.detect_format(keys) == "timesformer"
    name = {"space_only": "TimeSformer_spaceOnly_8x32_224.pyth",
            "joint_space_time": "TimeSformer_jointST_8x32_224.pyth",
            "divided_space_time": "TimeSformer_divST_8x32_224_K400.pyth"}[attention_type]
    torch.save({"model_state": official, "epoch": 15}, tmp_path / name)
    hf.save_pretrained(tmp_path / "hf")

    clip = np.random.default_rng(3).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    a = vidmix.load_weights(vidmix_model(SCHEME[attention_type]), tmp_path / name)
    b = vidmix.load_weights(vidmix_model(SCHEME[attention_type]), tmp_path / "hf")
    got = np.asarray(a(jnp.asarray(clip)))
    np.testing.assert_array_equal(got, np.asarray(b(jnp.asarray(clip))))
    with torch.no_grad():
        if attention_type == "space_only":  # frames averaged before the final norm (the release)
            hidden = hf(pixel_values=torch_input(clip), output_hidden_states=True).hidden_states[-1]
            pooled = hidden.reshape(2, 4, *hidden.shape[1:]).mean(1)
            want = hf.classifier(hf.timesformer.layernorm(pooled)[:, 0]).numpy()
        else:
            want = hf(pixel_values=torch_input(clip)).logits.numpy()
    assert np.abs(want).max() > 1.0
    assert rel_err(got, want) < 1e-5


def test_space_only_release_into_other_schemes(tmp_path):
    """A space-only file has no time embedding and no temporal branch: a divided model starts its
    temporal branch from the spatial one (as from an image ViT); a space model with temporal
    embedding slots starts them at zero."""
    from test_timesformer_parity import hf_model, vidmix_model

    official = official_timesformer(hf_model("space_only"))
    torch.save({"model_state": official}, tmp_path / "space.pyth")
    divided = vidmix.load_weights(vidmix_model("divided"), tmp_path / "space.pyth")
    blk = divided.backbone.blocks[1]
    np.testing.assert_array_equal(blk.temporal_attn.qkv.kernel[...], blk.attn.qkv.kernel[...])
    assert not np.any(blk.temporal_fc.kernel[...])
    # a joint file's time embedding is unexpected in a model that has none
    torch.save({"model_state": official_timesformer(hf_model("joint_space_time"))},
               tmp_path / "joint.pyth")
    with pytest.raises(vidmix.CheckpointMismatchError, match=r"unexpected \(1\): time_embed"):
        vidmix.load_weights(vidmix_model("space"), tmp_path / "joint.pyth")


def test_plain_timm_vit_is_not_taken_for_timesformer(canonical):
    from vidmix.checkpoints.formats.timesformer import official

    assert vidmix.checkpoints.detect_format(canonical) == "timm_vit"
    assert not official.detect(set(canonical))


# Every file matches exactly one format ----------------------------------------------------------
def layout_examples(ref) -> list[tuple[str, set[str]]]:
    """(format, tensor names) of every layout the test suite writes, built as its tests build them
    (HF ViT saved and in memory, timm, the four Google layouts, XViT, TimeSformer official and HF,
    VTN, and Swin: HF, timm, official, and the PST release)."""
    import tempfile

    from safetensors.numpy import load_file
    from test_pst import hf_swin
    from test_timesformer_parity import hf_model
    from test_vtn import Reference

    from vidmix.checkpoints.formats import swin, torch_vit

    hub = hub_state(ref)
    out = [("hf_vit", set(hub)), ("hf_vit", set(ref.state_dict())),
           ("timm_vit", set(torch_vit.hugging_face.to_canonical(hub))),
           ("xvit", set(xvit_release(np.random.default_rng(0)))),
           ("vtn", set(Reference().official_state()))]
    out += [("google_vit", set(google_npz(ref, s)))
            for s in ("orig", "linen", "big_vision", "big_vision_scanned")]
    for attention_type in ("space_only", "joint_space_time", "divided_space_time"):
        hf = hf_model(attention_type)
        out += [("timesformer", set(official_timesformer(hf))),
                ("hf_timesformer", set(hf.state_dict()))]
    with tempfile.TemporaryDirectory() as d:
        hf_swin(56).save_pretrained(d)
        hf = load_file(f"{d}/model.safetensors")
    official = set(swin.hugging_face.to_canonical(hf))
    timm = {k.replace("layers.1.downsample", "layers.2.downsample").replace("head.", "head.fc.")
            for k in official}
    out += [("hf_swin", set(hf)), ("swin", official), ("swin", timm),
            ("swin", {f"model.{k}" for k in official}),
            ("pst_mmaction", {k.replace("head.", "cls_head.fc_cls.") if k.startswith("head.")
                              else f"backbone.{k}" for k in official})]
    return out


def test_every_layout_matches_exactly_one_format(ref):
    """Detection is order-free: on each example layout exactly its own detector fires, and every
    registered format (but vidmix's folders, known by their marker) has an example."""
    from vidmix.checkpoints.formats import FORMATS

    examples = layout_examples(ref)
    for expected, keys in examples:
        matches = [name for name, fmt in FORMATS.items() if fmt.detect(keys)]
        assert matches == [expected], (expected, matches, sorted(keys)[:5])
    assert {name for name, _ in examples} == set(FORMATS) - {"vidmix"}

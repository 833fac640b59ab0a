"""PST (Swin with temporal patch shift and channel shift): the shifts, parity of its 2-D Swin with
`transformers`' SwinModel through every checkpoint layout, image -> video inflation, cost, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err
from flax import nnx
from safetensors.numpy import load_file, save_file
from transformers import SwinConfig, SwinForImageClassification

import vidmix
from vidmix.checkpoints import CheckpointMismatchError
from vidmix.checkpoints.formats import swin as swin_formats
from vidmix.models.cost import xla_flops
from vidmix.models.patch_shift import PATTERNS, channel_shift, patch_shift, window_offsets
from vidmix.models.pst import PSTConfig
from vidmix.models.swin import temporal_offsets

DIM, DEPTHS, HEADS, CLASSES = 24, (2, 2), (2, 4), 5


def pst(image_size=56, num_frames=2, shifts=False, **kw):
    base = dict(num_classes=CLASSES, num_frames=num_frames, image_size=image_size, embed_dim=DIM,
                depths=DEPTHS, num_heads=HEADS, patch_shift=shifts, channel_shift=shifts)
    return vidmix.create_model("pst_tiny", **{**base, **kw})


backbone = nnx.jit(lambda model, video: model.backbone(video))
logits = nnx.jit(lambda model, video: model(video))


def hf_swin(image_size=56, seed=0, **kw) -> SwinForImageClassification:
    torch.manual_seed(seed)
    cfg = SwinConfig(image_size=image_size, embed_dim=DIM, depths=list(DEPTHS),
                     num_heads=list(HEADS), window_size=7, num_labels=CLASSES, **kw)
    model = SwinForImageClassification(cfg)
    with torch.no_grad():  # non-trivial biases, norms and position tables
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def hf_outputs(ref, images):
    with torch.no_grad():
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
        feats = ref.swin(pixel_values=pixels).last_hidden_state.numpy()
        return feats, ref(pixel_values=pixels).logits.numpy()


def still(images, frames):
    return np.repeat(images[:, None], frames, axis=1)


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory):
    """{image size: (reference model, saved HF file)} for 56 px and 72 px (padded windows)."""
    out = {}
    for size in (56, 72):
        d = tmp_path_factory.mktemp(f"hf{size}")
        ref = hf_swin(size)
        ref.save_pretrained(d)
        out[size] = (ref, d / "model.safetensors")
    return out


def images(size, n=2):
    return np.random.default_rng(size).standard_normal((n, size, size, 3)).astype(np.float32)


# Patch shift and channel shift ----------------------------------------------------------------
def coded(b, t, nw, n, c):
    """Every element's value names its (batch, time, window, token, channel) position."""
    return np.arange(b * t * nw * n * c, dtype=np.float32).reshape(b, t, nw, n, c)


@pytest.mark.parametrize("frames", [4, 16])
def test_patch_shift_sends_each_tile_class_to_its_offset(frames):
    win = 7
    offsets = window_offsets("tps", (win, win))
    x = coded(2, frames, 3, win * win, 4)
    out = np.asarray(patch_shift(x, offsets))
    table = PATTERNS["tps"]
    for h in range(win):
        for w in range(win):
            delta = table[h % 3][w % 3]  # anchored at the window origin
            n = h * win + w
            for t in range(frames):
                np.testing.assert_array_equal(out[:, t, :, n], x[:, (t + delta) % frames, :, n])
    assert sorted({table[h][w] for h in range(3) for w in range(3)}) == list(range(-4, 5))
    np.testing.assert_array_equal(np.asarray(patch_shift(out, offsets, inverse=True)), x)
    assert not np.array_equal(out, x)  # it did move tokens


def test_channel_shift_moves_exactly_the_stated_channels():
    heads, hd, t = 3, 16, 5
    x = coded(2, t, 2, 4, heads * hd)
    out = np.asarray(channel_shift(x, heads)).reshape(2, t, 2, 4, heads, hd)
    xs = x.reshape(2, t, 2, 4, heads, hd)
    fold = hd // 8
    for s in range(t):
        prev, nxt = max(s - 1, 0), min(s + 1, t - 1)  # ends keep their own values
        np.testing.assert_array_equal(out[:, s, ..., :fold], xs[:, prev, ..., :fold])
        np.testing.assert_array_equal(out[:, s, ..., fold:2 * fold], xs[:, nxt, ..., fold:2 * fold])
        np.testing.assert_array_equal(out[:, s, ..., 2 * fold:], xs[:, s, ..., 2 * fold:])
    assert not np.array_equal(out, xs)


def test_release_bias_lookup_matches_the_releases_rolled_coordinates():
    """Our "release" offsets reproduce the release's index: coordinates rolled per tile class
    over 16 slots, query frame t against key slot 0 (computed here the release's way)."""
    slots, win = 16, 7
    t_coord = np.broadcast_to(np.arange(slots)[:, None, None], (slots, win, win)).copy()
    rolled = t_coord.copy()
    table = PATTERNS["tps"]
    for a in range(3):
        for b in range(3):  # roll by -δ: slot t holds time t + δ
            rolled[:, a::3, b::3] = np.roll(t_coord[:, a::3, b::3], -table[a][b], axis=0)
    flat = rolled.reshape(slots, -1)
    want = flat[:, :, None] - flat[0][None, None, :]
    np.testing.assert_array_equal(temporal_offsets("tps", win, slots, slots, "release"), want)
    plain = t_coord.reshape(slots, -1)
    np.testing.assert_array_equal(temporal_offsets(None, win, slots, slots, "release"),
                                  plain[:, :, None] - plain[0][None, None, :])
    clean = temporal_offsets("tps", win, slots, slots, "offset")[0]
    d = window_offsets("tps", (win, win))
    np.testing.assert_array_equal(clean, d[:, None] - d[None, :])


# Parity with transformers' Swin through every layout ----------------------------------------
def official_names(hf_file):
    return swin_formats.hugging_face.to_canonical(load_file(hf_file))


def write(tmp_path, layout, hf_file):
    """The reference weights as a file of `layout`."""
    if layout == "hf":
        return hf_file
    sd = official_names(hf_file)
    if layout == "timm":  # timm >= 0.9: merging at the start of the next stage, head.fc
        moved = {}
        for k, v in sd.items():
            if ".downsample." in k:
                i = int(k.split(".")[1])
                k = k.replace(f"layers.{i}.", f"layers.{i + 1}.", 1)
            moved[k.replace("head.", "head.fc.", 1) if k.startswith("head.") else k] = v
        path = tmp_path / "timm.safetensors"
        save_file(moved, path)
        return path
    # The official Swin `.pth`: {"model": state_dict} with index buffers and attention masks.
    state = {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
    state["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    state["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    path = tmp_path / "swin.pth"
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize("size", [56, 72])  # 72: stages of 18 and 9 tokens, padded windows
@pytest.mark.parametrize("layout", ["hf", "timm", "official"])
def test_2d_swin_matches_transformers(tmp_path, hf_files, size, layout):
    ref, hf_file = hf_files[size]
    path = write(tmp_path, layout, hf_file)
    assert vidmix.checkpoints.detect_format(vidmix.checkpoints.readers.read_tensors(path)) == {
        "hf": "hf_swin", "timm": "swin", "official": "swin"}[layout]
    model = vidmix.load_weights(pst(size), path)
    x = images(size)
    want_feats, want_logits = hf_outputs(ref, x)
    feats = np.asarray(backbone(model, still(x, 2)))  # one time step of the repeated image
    assert rel_err(feats.reshape(want_feats.shape), want_feats) <= 1e-5
    assert rel_err(logits(model, still(x, 2)), want_logits) <= 1e-5


@pytest.mark.parametrize("positions", ["space", "space_time"])
def test_absolute_position_embedding_matches_transformers(tmp_path, hf_files, positions):
    """Swin's `ape` (`use_absolute_embeddings` in `transformers`): the (1, h w, C) table loads as
    an (h, w, C) one, is added to every time step's patch embeddings, and gives the image model
    (a "space_time" model's rows per time step start at zero: no Swin file has them); a model
    without it names the file's table as unexpected rather than dropping it."""
    ref = hf_swin(56, seed=1, use_absolute_embeddings=True)
    ref.save_pretrained(tmp_path)
    model = vidmix.load_weights(pst(num_frames=4, absolute_pos_embed=positions),
                                tmp_path / "model.safetensors")
    table = ref.swin.embeddings.position_embeddings.detach().numpy()
    np.testing.assert_array_equal(model.backbone.absolute_pos_embed[...],
                                  table.reshape(14, 14, DIM))
    if positions == "space_time":
        np.testing.assert_array_equal(model.backbone.temporal_pos_embed[...], np.zeros((2, DIM)))
    x = images(56)
    want_feats, want_logits = hf_outputs(ref, x)
    feats = np.asarray(backbone(model, still(x, 4)))
    for t in range(2):
        assert rel_err(feats[:, t].reshape(want_feats.shape), want_feats) <= 1e-5
    assert rel_err(logits(model, still(x, 4)), want_logits) <= 1e-5
    with pytest.raises(CheckpointMismatchError) as err:
        vidmix.load_weights(pst(), tmp_path / "model.safetensors")
    assert "absolute_pos_embed" in err.value.unexpected
    with pytest.raises(CheckpointMismatchError) as err:  # the model's table has no source
        vidmix.load_weights(pst(absolute_pos_embed=positions), hf_files[56][1])
    assert "absolute_pos_embed" in str(err.value)
    # another resolution: the table is resized bicubically over the grid, as a ViT's is
    small = vidmix.load_weights(pst(image_size=28, absolute_pos_embed=positions),
                                tmp_path / "model.safetensors")
    want = jax.image.resize(jnp.asarray(table.reshape(14, 14, DIM)), (7, 7, DIM), "bicubic")
    np.testing.assert_allclose(small.backbone.absolute_pos_embed[...], want, rtol=1e-6)


def test_fresh_absolute_positions_follow_pos_embed_std():
    for std in (0.02, 1.0):
        model = pst(num_frames=8, absolute_pos_embed="space_time", pos_embed_std=std)
        space = np.asarray(model.backbone.absolute_pos_embed[...])
        time = np.asarray(model.backbone.temporal_pos_embed[...])
        assert space.shape == (14, 14, DIM) and time.shape == (4, DIM)  # 8 frames: 4 steps
        assert 0.8 * std < space.std() < 1.0 * std  # truncated at two stds: 0.88 std
    assert pst().backbone.absolute_pos_embed is None
    assert pst(absolute_pos_embed="space").backbone.temporal_pos_embed is None
    with pytest.raises(ValueError, match="pos_embed_std"):
        pst(pos_embed_std=-1.0)
    with pytest.raises(ValueError, match="absolute_pos_embed"):
        pst(absolute_pos_embed="time")


@pytest.mark.parametrize("positions,steps_differ", [("space", False), ("space_time", True)])
def test_only_space_time_positions_tell_the_time_steps_of_a_still_clip_apart(
        positions, steps_differ):
    """A still clip through the plain 2-D Swin (shifts off) gives every time step the same
    features, with Swin's 2-D table too; rows per time step make them differ."""
    model = pst(num_frames=4, absolute_pos_embed=positions, pos_embed_std=1.0)
    feats = np.asarray(backbone(model, still(images(56), 4)))
    assert (np.abs(feats[:, 0] - feats[:, 1]).max() > 1e-3) == steps_differ


# Image -> video -------------------------------------------------------------------------------
@pytest.mark.parametrize("shifts", [False, True])
def test_image_weights_on_a_still_clip_give_the_image_model(hf_files, shifts):
    """Every time step sees the image (kernel averaged over its 2 frames); with the shifts on, the
    moved tokens are identical and the tiled table gives every temporal offset the 2-D bias."""
    ref, hf_file = hf_files[56]
    model = vidmix.load_weights(pst(num_frames=8, shifts=shifts), hf_file)
    x = images(56)
    want_feats, want_logits = hf_outputs(ref, x)
    feats = np.asarray(backbone(model, still(x, 8)))  # (B, 4, 7, 7, C)
    for t in range(4):
        assert rel_err(feats[:, t].reshape(want_feats.shape), want_feats) <= 1e-5
    assert rel_err(logits(model, still(x, 8)), want_logits) <= 1e-5


def test_tiled_table_and_inflated_kernel(hf_files):
    _, hf_file = hf_files[56]
    sd = official_names(hf_file)
    model = vidmix.load_weights(pst(num_frames=4, shifts=True), hf_file)
    for i, j in ((0, 0), (1, 1)):
        table = np.asarray(model.backbone.layers[i].blocks[j].attn.relative_position_bias_table[...])
        table = table.reshape(31, 169, -1)  # offsets -15 ... 15 of temporal_window 16
        np.testing.assert_array_equal(table[15], sd[f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"])
        np.testing.assert_array_equal(table, np.broadcast_to(table[15], table.shape))
    kernel = np.asarray(model.backbone.patch_embed.proj.kernel[...])  # (2, 4, 4, 3, D)
    k2d = sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_allclose(kernel, np.stack([k2d / 2, k2d / 2]), rtol=1e-7)


def test_pst_mmaction_video_checkpoint(tmp_path, hf_files):
    """The release's layout (`state_dict`, `backbone.`, `cls_head.fc_cls`, tiled tables, 3-D
    kernel, index buffers) into a PST reproduces the model it was written from."""
    _, hf_file = hf_files[56]
    source = vidmix.load_weights(pst(num_frames=4, shifts=True), hf_file)
    sd = official_names(hf_file)
    state = {}
    for k, v in sd.items():
        if k.endswith("relative_position_bias_table"):
            v = np.tile(v, (31, 1))
        if k == "patch_embed.proj.weight":
            v = np.repeat(v[:, :, None] / 2, 2, axis=2)
        key = k.replace("head.", "cls_head.fc_cls.") if k.startswith("head.") else f"backbone.{k}"
        state[key] = torch.from_numpy(np.ascontiguousarray(v))
    state["backbone.layers.0.blocks.1.attn.relative_position_index_old"] = torch.zeros(16, 49, 49)
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, tmp_path / "pst.pth")
    model = vidmix.load_weights(pst(num_frames=4, shifts=True), tmp_path / "pst.pth")
    x = np.random.default_rng(1).standard_normal((2, 4, 56, 56, 3)).astype(np.float32)
    np.testing.assert_array_equal(logits(model, x), logits(source, x))


def test_shifts_mix_time_and_off_they_do_not():
    x = np.random.default_rng(2).standard_normal((1, 8, 56, 56, 3)).astype(np.float32)
    y = x.copy()
    y[:, :2] += 1.0  # change time step 0 only
    for shifts, mixes in ((False, False), (True, True)):
        model = pst(num_frames=8, shifts=shifts, rngs=nnx.Rngs(0))
        a, b = np.asarray(backbone(model, x)), np.asarray(backbone(model, y))
        assert not np.allclose(a[:, 0], b[:, 0])
        assert (not np.allclose(a[:, 1:], b[:, 1:])) == mixes


# Cost, registry, errors -----------------------------------------------------------------------
def test_shifts_cost_no_flops():
    base = dict(num_classes=CLASSES, num_frames=8, image_size=56, embed_dim=DIM, depths=DEPTHS,
                num_heads=HEADS)
    on = xla_flops(PSTConfig(**base))
    off = xla_flops(PSTConfig(**base, patch_shift=False, channel_shift=False))
    assert abs(on / off - 1) <= 0.01


def test_presets_and_describe():
    cfg = vidmix.models.model_config("pst_base")
    assert (cfg.embed_dim, cfg.depths, cfg.num_heads) == (128, (2, 2, 18, 2), (4, 8, 16, 32))
    assert (cfg.num_frames, cfg.time_steps, cfg.drop_path_rate, cfg.head_dropout_rate) == (32, 16, 0.1, 0.5)
    assert cfg.describe()["family"] == "swin"
    assert cfg.replace(image_size=[112, 224]).image_hw == (112, 224)
    with pytest.raises(TypeError, match="embed_dim"):
        cfg.replace(embed_dims=3)


def test_shape_errors():
    with pytest.raises(ValueError, match="temporal_patch"):
        PSTConfig(num_frames=7)
    with pytest.raises(ValueError, match="patch_size"):
        PSTConfig(image_size=226)
    with pytest.raises(ValueError, match="same length"):
        PSTConfig(depths=(2, 2), num_heads=(3,))
    with pytest.raises(ValueError, match="temporal_window"):
        PSTConfig(temporal_window=4)
    with pytest.raises(ValueError, match="shift_pattern"):
        PSTConfig(shift_pattern="nope")
    with pytest.raises(ValueError, match=r"num_frames=2, image_size=56"):
        pst()(np.zeros((1, 4, 56, 56, 3), np.float32))


def test_checkpoint_mismatch_names_the_keys(tmp_path, hf_files, caplog):
    _, hf_file = hf_files[56]
    sd = official_names(hf_file)
    del sd["layers.1.blocks.0.mlp.fc1.bias"]
    sd["layers.1.blocks.0.extra.weight"] = np.zeros(3, np.float32)
    save_file(sd, tmp_path / "bad.safetensors")
    model = pst()
    before = np.asarray(model.backbone.norm.scale[...]).copy()
    with pytest.raises(CheckpointMismatchError) as err:
        vidmix.load_weights(model, tmp_path / "bad.safetensors")
    assert "layers.1.blocks.0.mlp.fc1.bias" in str(err.value)
    assert "layers.1.blocks.0.extra.weight" in err.value.unexpected
    np.testing.assert_array_equal(model.backbone.norm.scale[...], before)  # untouched
    # Another class count: a fresh head, the old one reported as unused.
    model = vidmix.load_weights(pst(num_classes=3), hf_file)
    assert np.all(np.asarray(model.head.classifier.kernel[...]) == 0)
    assert "new classifier" in caplog.text


def test_position_bias_uses_the_source_time_offset():
    """With a table whose value is the temporal offset, a patch-shift block's bias between query n
    and key m is δ_n - δ_m (the same for every frame); other blocks use offset 0."""
    model = pst(num_frames=8, shifts=True)
    d = window_offsets("tps", (7, 7))
    for j, want in ((1, d[:, None] - d[None, :]), (0, np.zeros((49, 49)))):
        attn = model.backbone.layers[0].blocks[j].attn
        rows, heads = attn.relative_position_bias_table.shape
        offset = np.repeat(np.arange(-15, 16), rows // 31).astype(np.float32)
        attn.relative_position_bias_table[...] = np.repeat(offset[:, None], heads, axis=1)
        bias = np.asarray(attn.position_bias(4))
        assert bias.shape == (1, heads, 49, 49)
        np.testing.assert_array_equal(bias[0, 0], want)


def randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(a.dtype),
                                   state))
    return model


@pytest.mark.parametrize("name", ["pst_tiny", "pst_base"])
def test_presets_run_jit_train_and_bf16(name):
    kw = dict(num_classes=CLASSES, num_frames=4, image_size=56, embed_dim=16, depths=(2, 2),
              num_heads=(2, 2))
    model = randomise(vidmix.create_model(name, **kw))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 4, 56, 56, 3)), jnp.float32)
    eager = logits(model, x)  # (eager execution of the same code is slow on CPU, not run here)
    assert eager.shape == (2, CLASSES) and eager.dtype == jnp.float32
    train = nnx.jit(lambda m, v: m(v, train=True))(model, x)  # dropout 0.5 + drop-path 0.1
    assert bool(jnp.all(jnp.isfinite(train))) and not np.allclose(train, eager)
    half = randomise(vidmix.create_model(name, dtype="bfloat16", **kw))
    out = nnx.jit(lambda m, v: m(v))(half, x)
    assert out.dtype == jnp.float32 and rel_err(out, eager) < 0.1


def test_gradients_finite_and_remat_equal():
    kw = dict(num_classes=CLASSES, num_frames=4, image_size=56, embed_dim=16, depths=(2, 2),
              num_heads=(2, 2))
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 4, 56, 56, 3)), jnp.float32)

    def grads(remat):
        model = randomise(vidmix.create_model("pst_tiny", remat=remat, **kw))
        return nnx.jit(nnx.grad(lambda m: (m(x) ** 2).sum()))(model)

    g, g_remat = grads(False), grads(True)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_remat), strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the stage's blocks are scanned in pairs: block 1 is the odd block of pair 0
    table = g["backbone"]["layers"][0]["blocks"]["stacked"]["1"]["attn"][
        "relative_position_bias_table"][...][0]
    assert float(jnp.abs(g["backbone"]["patch_embed"]["proj"]["kernel"][...]).sum()) > 0
    assert float(jnp.abs(table).sum()) > 0

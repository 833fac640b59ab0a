"""Public model API: presets, overrides, shapes, jit, gradients, bf16, remat, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from flax import nnx

import vidmix
from vidmix.models import PRESETS
from vidmix.models.pst import PSTConfig
from vidmix.models.vtn import VTNConfig

TINY = dict(width=32, depth=2, num_heads=4, image_size=32, patch_size=16, num_frames=4,
            num_classes=5)


# tiny sizes of the other families, for tests that run every preset
FAMILY_TINY = {
    VTNConfig: dict(TINY, temporal_heads=4, temporal_mlp_dim=64, attention_window=4),
    PSTConfig: dict(embed_dim=16, depths=(2, 2), num_heads=(2, 2), window_size=4, image_size=32,
                    num_frames=4, num_classes=5),
}


def tiny(name="xvit_b16", **kw):
    return vidmix.create_model(name, **{**FAMILY_TINY.get(PRESETS[name][0], TINY), **kw})


def randomise(model, seed=0):
    """Give every parameter (zero-initialised heads too) a random value: outputs depend on all."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(
        lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(a.dtype), state))
    return model


def clip(batch=2, frames=4, size=32, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(
        (batch, frames, size, size, 3)).astype(np.float32))


def test_list_models_has_the_presets():
    names = vidmix.list_models()
    for name in ["xvit_b16", "xvit_l16", "xvit_s16", "timesformer_b16", "timesformer_b16_joint",
                 "timesformer_b16_space", "vit_b16", "vtn_vit_b16", "pst_tiny", "pst_base"]:
        assert name in names


@pytest.mark.parametrize("name", vidmix.list_models())
def test_every_preset_runs_and_jits(name):
    model = randomise(tiny(name))
    x = clip()
    eager = model(x, train=False)
    assert eager.shape == (2, 5) and eager.dtype == jnp.float32
    jitted = nnx.jit(lambda m, v: m(v, train=False))(model, x)
    assert rel_err(jitted, eager) < 1e-5
    assert bool(jnp.all(jnp.isfinite(eager)))


@pytest.mark.parametrize("attention,head", [("mixing", "temporal_attention"), ("mixing", "avg"),
                                            ("mixing", "summary"), ("space", "linear"),
                                            ("divided", "linear"), ("joint", "avg")])
def test_gradients_are_finite_and_nonzero(attention, head):
    model = randomise(tiny(attention=attention, head=head))
    x, labels = clip(), jnp.array([1, 3])

    def loss_fn(m):
        logits = m(x, train=False)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean()

    grads = nnx.grad(loss_fn)(model)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads["backbone"]["patch_embed"]["kernel"][...]).sum()) > 0


@pytest.mark.parametrize("name", ["xvit_b16", "timesformer_b16"])
def test_remat_gives_the_same_gradients(name):
    x = clip()

    def grads(remat):
        model = randomise(tiny(name, remat=remat))
        g = nnx.grad(lambda m: (m(x) ** 2).sum())(model)
        return jax.tree.leaves(g)

    for a, b in zip(grads(False), grads(True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["xvit_b16", "timesformer_b16"])
def test_bf16_compute_path(name):
    x = clip()
    full = randomise(tiny(name))(x)
    half_model = randomise(tiny(name, dtype="bfloat16"))
    half = half_model(x)
    assert half.dtype == jnp.float32  # logits are returned in fp32
    assert half_model.backbone.blocks[0].attn.qkv.kernel[...].dtype == jnp.float32  # fp32 params
    assert rel_err(half, full) < 5e-2  # bf16 has 8 bits of mantissa


def host_normalised(pixels, cfg):
    """What the loader made before clips stayed uint8: (x / 255 - mean) / std in numpy float32."""
    std = np.asarray(cfg.pixel_std, np.float32)
    out = np.multiply(pixels, 1 / (255 * std), dtype=np.float32)
    return out - np.asarray(cfg.pixel_mean, np.float32) / std


PIXELS = {"timesformer": (0.45, 0.225), "vtn": (0.45, 0.225), "pst": (0.485, 0.229)}


@pytest.mark.parametrize("name", vidmix.list_models())
def test_uint8_video_is_normalised_by_the_model(name):
    """A uint8 clip gives the logits of the same clip normalised on the host with the preset's
    pixel statistics (its release's); a float clip is taken as normalised already."""
    model = randomise(tiny(name))
    cfg = model.config
    family = next((k for k in PIXELS if name.startswith(k)), None)
    mean, std = PIXELS.get(family, (0.5, 0.5))
    assert (cfg.pixel_mean[0], cfg.pixel_std[0]) == (mean, std)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    forward = nnx.jit(lambda m, v: m(v, train=False))
    want = forward(model, jnp.asarray(host_normalised(pixels, cfg)))
    assert rel_err(forward(model, jnp.asarray(pixels)), want) < 1e-5
    assert rel_err(model(pixels), want) < 1e-5  # eager, from numpy
    with pytest.raises(TypeError, match="uint8 pixels or an already normalised float array, got "
                                        "int32"):
        model(jnp.asarray(pixels, jnp.int32))


def test_tubelet_embedding():
    model = tiny(tubelet_size=2, attention="joint", head="linear")
    assert model.backbone.patch_embed.kernel.shape == (2, 16, 16, 3, 32)
    assert model(clip()).shape == (2, 5)


def test_drop_path_only_in_training():
    model = randomise(tiny("timesformer_b16", drop_path_rate=0.5, dropout_rate=0.1))
    x = clip()
    assert rel_err(model(x, train=False), model(x, train=False)) == 0
    assert rel_err(model(x, train=True), model(x, train=False)) > 1e-3


def test_temporal_embedding_slots_wrap_around():
    """The release's quirk: 8 slots for 16 frames, frame t uses slot t mod 8."""
    model = tiny(num_frames=8, temporal_embed_slots=4)
    emb = model.backbone.temporal_embed
    emb[...] = jnp.arange(4, dtype=jnp.float32)[:, None] * jnp.ones((4, 32))
    x = jnp.zeros((1, 8, 32, 32, 3))
    tokens = model.backbone.embed(x)  # (1, 8, 1 + 4, 32); frame 0 uses slot 0 = zeros
    for t in range(8):
        np.testing.assert_allclose(tokens[:, t] - tokens[:, 0], t % 4, atol=1e-6)


# Bad input -------------------------------------------------------------------------------------
def test_unknown_model_name_suggests():
    with pytest.raises(ValueError, match=r"unknown model 'xvit_b61'.*xvit_b16"):
        vidmix.create_model("xvit_b61")


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match=r"'num_frame' \(did you mean 'num_frames'\?\)"):
        vidmix.create_model("xvit_b16", num_frame=8)


@pytest.mark.parametrize("kw,message", [
    (dict(attention="sparse"), "attention must be one of"),
    (dict(head="mlp"), "head must be one of"),
    (dict(attention="divided", head="temporal_attention"), "one CLS token per clip"),
    (dict(width=30), "not divisible by num_heads"),
    (dict(image_size=40), "not a multiple of patch_size"),
    (dict(shift_group=3), "does not divide"),
    (dict(shift_div=1), "shift_div"),
    (dict(num_frames=5, tubelet_size=2), "multiple of tubelet_size"),
    (dict(dtype="int8"), "dtype"),
    (dict(pixel_mean=(0.5, 0.5)), r"pixel_mean must be 3 numbers \(R, G, B\)"),
    (dict(pixel_std=(0.5, 0.0, 0.5)), "pixel_std must be positive"),
    (dict(pos_embed_std=-1.0), "pos_embed_std must be a number >= 0"),
    (dict(temporal_embed_std="1"), "temporal_embed_std must be a number >= 0"),
])
def test_bad_options_are_explained(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kw)


@pytest.mark.parametrize("name", ["xvit_b16", "vtn_vit_b16"])
def test_pos_embed_std_scales_the_fresh_position_embeddings(name):
    """pos_embed_std sets the std of a fresh model's spatial positions (VTN's per-frame ViT too):
    the same draw as the default 0.02, scaled, so the default keeps its values bit for bit."""
    default = np.asarray(tiny(name).backbone.pos_embed[...])
    wide = np.asarray(tiny(name, pos_embed_std=1.0).backbone.pos_embed[...])
    assert 0.015 < default.std() < 0.025 and 0.75 < wide.std() < 1.25
    np.testing.assert_allclose(wide, default / 0.02, rtol=1e-5, atol=1e-6)


def test_vtn_sincos_positions_start_neighbouring_frames_close():
    """temporal_position_init="sincos": the fresh table is the Transformer's sinusoids at scale
    temporal_position_std (entry RMS), the padding row zero; a frame's row is closer to the next
    frame's than to a far one's, where "normal" rows are unrelated."""
    def table(**kw):
        model = tiny("vtn_vit_b16", temporal_position_std=1.0, **kw)
        return np.asarray(model.temporal.embeddings.position.embedding[...]), model.config

    sincos, cfg = table(temporal_position_init="sincos")
    frames = sincos[:cfg.cls_position]
    np.testing.assert_allclose(np.sqrt((frames ** 2).mean()), 1.0, rtol=0.02)
    assert not sincos[cfg.pad_position].any()
    # column 0 is sin(p), the fastest sinusoid; the last pair is nearly constant
    np.testing.assert_allclose(frames[:5, 0], np.sqrt(2) * np.sin(np.arange(5)), rtol=1e-5,
                               atol=1e-6)

    def distance(t, a, b):
        return np.linalg.norm(t[a] - t[b])

    assert all(distance(frames, p, p + 1) < 0.5 * distance(frames, p, p + 40) for p in range(40))
    normal, _ = table()
    assert distance(normal, 3, 4) > 0.8 * distance(normal, 3, 43)
    with pytest.raises(ValueError, match="unknown temporal_position_init 'learned'"):
        tiny("vtn_vit_b16", temporal_position_init="learned")


@pytest.mark.parametrize("shape", [(2, 8, 32, 32, 3), (2, 4, 48, 48, 3), (2, 4, 32, 32, 1),
                                   (4, 32, 32, 3)])
def test_clip_the_model_cannot_take(shape):
    model = tiny()
    with pytest.raises(ValueError, match=r"expected a video of shape \(batch, 4, 32, 32, 3\)"):
        model(jnp.zeros(shape))


def test_temporal_attention_head_positions_see_frame_order():
    """Without positions (the release's head, the default) the paper's head is a function of the
    set of frame features (order blind); the optional learned positions make it see the order."""
    kw = dict(num_classes=3, num_frames=4, image_size=32, patch_size=8, width=32, depth=1,
              num_heads=2, head_dropout_rate=0.0)
    feats = jax.random.normal(jax.random.key(0), (2, 4, 32))
    shuffled = feats[:, ::-1]
    blind = vidmix.create_model("xvit_s16", **kw)
    assert blind.head.positions is None
    blind.head.classifier.kernel[...] = jax.random.normal(jax.random.key(1), (32, 3))
    assert np.abs(blind.head(feats)).max() > 0.1
    np.testing.assert_allclose(blind.head(feats), blind.head(shuffled), rtol=1e-5, atol=1e-6)
    seeing = vidmix.create_model("xvit_s16", head_positions=True, **kw)
    seeing.head.classifier.kernel[...] = jax.random.normal(jax.random.key(1), (32, 3))
    assert seeing.head.positions[...].shape == (4, 32)
    assert not np.allclose(seeing.head(feats), seeing.head(shuffled), atol=1e-4)

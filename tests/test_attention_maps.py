"""Features for every family, attention maps (the weights each block used, without changing the
outputs) and attention rollout (against a dense from-the-definition reference and hand-computed
cases)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_models import clip, randomise, tiny

from vidmix.models import layers
from vidmix.models.attention_maps import (
    AttentionMaps,
    attention_maps,
    attention_rollout,
    key_sources,
    plot_rollout,
    rollout,
)
from vidmix.models.longformer import attention_weights, banded_attention
from vidmix.models.schemes import MixingAttention
from vidmix.models.swin import WindowAttention, shifted_window_mask

# (preset, overrides) covering every scheme, every ViT head, VTN and PST
VIT_CASES = [
    ("xvit_b16", {}),  # mixing + temporal-attention head
    ("xvit_b16", dict(head="avg", shift_group=2)),
    ("xvit_b16", dict(head="linear", shift_mode="roll")),  # the demo's read-out
    ("xvit_b16_summary", {}),  # mixing + summary tokens
    ("vit_b16", {}),  # space + avg
    ("timesformer_b16_space", {}),  # space + linear (frames pooled)
    ("timesformer_b16", {}),  # divided
    ("timesformer_b16_joint", {}),  # joint
    ("timesformer_b16_joint", dict(tubelet_size=2)),
]
ALL_CASES = VIT_CASES + [("vtn_vit_b16", {}), ("pst_tiny", {})]


def _id(case):
    if not isinstance(case, tuple):
        return ""
    name, kw = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


def _model(case, seed=0):
    name, kw = case
    return randomise(tiny(name, **kw), seed)


# Features ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ALL_CASES, ids=_id)
def test_head_of_features_is_the_logits(case):
    model = _model(case)
    x = clip()
    cfg = model.config

    @nnx.jit
    def run(m, v):
        feats = m.features(v)
        extra = {}
        if case[0] == "vtn_vit_b16":
            extra = dict(tokens=m.temporal_tokens(v), frames=m.frame_features(v))
        elif case[0] == "pst_tiny":
            extra = dict(fmap=m.feature_map(v))
        return feats, m.head(feats).astype(jnp.float32), m(v), extra

    feats, from_features, logits, extra = run(model, x)
    np.testing.assert_allclose(from_features, logits, rtol=1e-6, atol=1e-7)
    if case[0] == "vtn_vit_b16":
        assert feats.shape == (2, cfg.width)
        assert extra["tokens"].shape == (2, 1 + 4, cfg.width)
        assert extra["frames"].shape == (2, 4, cfg.width)
        np.testing.assert_allclose(extra["tokens"][:, 0], feats, rtol=1e-6, atol=1e-7)
    elif case[0] == "pst_tiny":
        assert feats.shape == (2, cfg.num_features)
        assert extra["fmap"].shape == (2, cfg.time_steps, 4, 4, cfg.num_features)  # 32 / (4 · 2)
        np.testing.assert_allclose(extra["fmap"].mean(axis=(1, 2, 3)), feats, rtol=1e-6,
                                   atol=1e-6)
    else:
        frames = cfg.token_frames if cfg.per_frame_cls and cfg.head != "linear" else 1
        assert feats.shape == (2, frames, cfg.width)


def test_vtn_features_take_positions_and_mask():
    model = _model(("vtn_vit_b16", {}))
    x, mask = clip(), jnp.array([[True] * 4, [True, True, False, False]])
    positions = jnp.array([[0, 5, 10, 15], [3, 4, 0, 0]])

    @nnx.jit
    def run(m, v, p, k):
        return m.head(m.features(v, positions=p, mask=k)), m(v, positions=p, mask=k)

    from_features, logits = run(model, x, positions, mask)
    np.testing.assert_allclose(from_features, logits, rtol=1e-6, atol=1e-7)
    maps = attention_maps(model, x, positions=positions, mask=mask)
    np.testing.assert_allclose(maps.logits, logits, rtol=1e-5, atol=1e-6)


# Attention maps: what they hold ------------------------------------------------------------------
def _all_maps(maps: AttentionMaps):
    for group in (*maps.blocks, maps.head, *maps.temporal):
        yield from group.values()


@pytest.mark.parametrize("case", ALL_CASES, ids=_id)
def test_maps_leave_the_logits_unchanged_and_are_distributions(case):
    model = _model(case)
    x = clip()
    maps = attention_maps(model, x)  # jitted
    np.testing.assert_array_equal(maps.logits, nnx.jit(lambda m, v: m(v))(model, x))
    if case in (VIT_CASES[0], VIT_CASES[6]):  # eager too (slow): bit for bit the model's call
        np.testing.assert_array_equal(attention_maps(model, x, jit=False).logits, model(x))
    assert not jax.tree.leaves(nnx.state(model, nnx.Intermediate))  # nothing left on the model
    count = 0
    for w in _all_maps(maps):
        assert w.dtype == jnp.float32 and float(w.min()) >= 0
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        count += 1
    assert count == len(maps.blocks) * (2 if case[0] == "timesformer_b16" else 1) + len(
        maps.head) + len(maps.temporal)


@pytest.mark.parametrize("case,shapes", [
    (VIT_CASES[0], dict(blocks={"space": (2, 4, 4, 5, 5)}, head={"head": (2, 4, 5, 5)})),
    (VIT_CASES[3], dict(blocks={"space": (2, 4, 4, 5, 5 + 4)}, head={})),
    (VIT_CASES[6], dict(blocks={"time": (2, 4, 4, 4, 4), "space": (2, 4, 4, 5, 5)}, head={})),
    (VIT_CASES[7], dict(blocks={"joint": (2, 4, 17, 17)}, head={})),
    (VIT_CASES[8], dict(blocks={"joint": (2, 4, 9, 9)}, head={})),
    (("vtn_vit_b16", {}), dict(blocks={"space": (2, 4, 4, 5, 5)}, head={},
                               temporal={"longformer": (2, 4, 5, 5)})),
], ids=_id)
def test_map_shapes(case, shapes):
    maps = attention_maps(_model(case), clip())
    assert len(maps.blocks) == 2
    for block in maps.blocks:
        assert {k: v.shape for k, v in block.items()} == shapes["blocks"]
    assert {k: v.shape for k, v in maps.head.items()} == shapes["head"]
    for layer in maps.temporal:
        assert {k: v.shape for k, v in layer.items()} == shapes["temporal"]


def test_pst_window_maps_and_block_info():
    model = _model(("pst_tiny", {}))
    maps = attention_maps(model, clip())
    assert [b["window"].shape for b in maps.blocks] == [(2, 2, 4, 2, 16, 16)] * 2 + [
        (2, 2, 1, 2, 16, 16)] * 2  # 8x8 grid: 4 windows of 4x4; then 4x4: one window
    assert [(i["stage"], i["shift"], i["temporal"]) for i in maps.block_info] == [
        (0, 0, "channel"), (0, 2, "patch"), (1, 0, "channel"), (1, 0, "patch")]
    with pytest.raises(NotImplementedError, match="PST"):
        rollout(maps)


def test_vtn_maps_ignore_frame_chunks():
    x = clip()
    chunked = _model(("vtn_vit_b16", dict(frame_chunk=3)))
    plain = _model(("vtn_vit_b16", {}))
    a, b = attention_maps(chunked, x), attention_maps(plain, x)
    np.testing.assert_allclose(a.logits, chunked(x), rtol=1e-5, atol=1e-6)
    for u, v in zip(_all_maps(a), _all_maps(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_vtn_longformer_map_is_banded_and_skips_masked_frames():
    model = _model(("vtn_vit_b16", dict(attention_window=2, num_frames=6)))
    x = clip(frames=6)
    mask = jnp.array([[True] * 6, [True] * 4 + [False] * 2])
    w = np.asarray(attention_maps(model, x, mask=mask).temporal[0]["longformer"])
    assert w.shape == (2, 4, 7, 7)
    i, j = np.arange(7)[:, None], np.arange(7)[None, :]
    outside = (np.abs(i - j) > 1) & (j > 0) & (i > 0)  # neither [CLS] nor the band (one_sided 1)
    assert np.all(w[:, :, outside] == 0)
    assert np.all(w[1, :, :, 5:] == 0) and np.all(w[0, :, 0] > 0)  # masked keys; [CLS] sees all


# The weights are the ones the output was computed with -------------------------------------------
def _sown(module, *args, **kwargs):
    def call(m):
        with layers.capture_attention():
            return m(*args, **kwargs)

    out, inter = nnx.capture(call, nnx.Intermediate)(module)
    (weights,) = nnx.to_pure_dict(inter)[layers.ATTENTION_WEIGHTS]
    return out, weights


@pytest.mark.parametrize("summary", [False, True])
def test_mixing_weights_reproduce_the_attention(rng, summary):
    attn = layers.Attention(32, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 4, 5, 32)).astype(np.float32))
    hook = MixingAttention(fold=4, summary=summary).kv_hook()
    out, weights = _sown(attn, x, kv_hook=hook)
    np.testing.assert_array_equal(out, attn(x, kv_hook=hook))  # capture changes nothing
    assert weights.shape == (2, 4, 4, 5, 5 + 4 * summary)
    _, k, v = jnp.split(attn.qkv(x), 3, axis=-1)
    _, v = hook(k, v)  # the shifted (and summary-extended) values
    mixed = jnp.einsum("bthqk,btkhc->btqhc", weights, v.reshape(*v.shape[:3], 4, 8))
    np.testing.assert_allclose(attn.proj(mixed.reshape(2, 4, 5, 32)), out, rtol=1e-5, atol=1e-5)


def test_longformer_weights_reproduce_the_banded_attention(rng):
    b, length, heads, hd = 2, 11, 2, 4
    q, k, v, qg, kg, vg = (jnp.asarray(rng.standard_normal((b, length, heads, hd)),
                                       jnp.float32) for _ in range(6))
    valid = jnp.asarray(np.arange(length)[None] < np.array([[11], [8]]))
    out = banded_attention(q, k, v, qg, kg, vg, valid, one_sided=2)
    w = attention_weights(q, k, qg, kg, valid, one_sided=2)
    mixed = jnp.einsum("bhqk,bkhd->bqhd", w, v)
    mixed = mixed.at[:, :1].set(jnp.einsum("bhqk,bkhd->bqhd", w[:, :, :1], vg))
    np.testing.assert_allclose(mixed, out, rtol=1e-5, atol=1e-5)


def test_window_weights_reproduce_the_window_attention(rng):
    attn = WindowAttention(16, 2, window=4, temporal=None, pattern="tps", slots=2,
                           lookup="offset", channel_div=8, qkv_bias=True, dropout_rate=0.0,
                           dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 2, 4, 16, 16)).astype(np.float32))
    mask = shifted_window_mask(8, 8, 4, 2)
    out, weights = _sown(attn, x, mask)
    np.testing.assert_array_equal(out, attn(x, mask))
    _, _, v = jnp.split(attn.qkv(x), 3, axis=-1)
    mixed = jnp.einsum("btwhqk,btwkhc->btwqhc", weights, v.reshape(2, 2, 4, 16, 2, 8))
    np.testing.assert_allclose(attn.proj(mixed.reshape(x.shape)), out, rtol=1e-5, atol=1e-5)


def test_key_sources_follow_the_shift():
    model = tiny("xvit_b16", width=32, num_heads=4, shift_div=8, num_frames=4)  # fold 4, hd 8
    c = key_sources(model.config)
    # head 0: channels 0-3 from t+1, 4-7 from t-1; heads 1-3 unshifted; zeros at the clip edges
    np.testing.assert_allclose(c[0], [[0, .5, 0, 0], [.5, 0, .5, 0], [0, .5, 0, .5],
                                      [0, 0, .5, 0]])
    np.testing.assert_allclose(c[1:], np.broadcast_to(np.eye(4), (3, 4, 4)))
    grouped = key_sources(tiny("xvit_b16", width=32, num_heads=4, shift_group=2).config)
    assert grouped[0, 1, 2] == 0 and grouped[0, 2, 1] == 0  # nothing crosses the group boundary
    rolled = key_sources(tiny("xvit_b16", width=32, num_heads=4, shift_mode="roll").config)
    np.testing.assert_allclose(rolled.sum(-1), 1.0)


# Rollout -----------------------------------------------------------------------------------------
ROLLOUT_CASES = [c for c in ALL_CASES if c[0] != "pst_tiny"]


@pytest.mark.parametrize("case", ROLLOUT_CASES, ids=_id)
def test_rollout_is_a_distribution_over_the_patches(case):
    model = _model(case)
    r = attention_rollout(model, clip())
    frames = 2 if case[1].get("tubelet_size") == 2 else 4
    assert r.shape == (2, frames, 2, 2) and r.dtype == jnp.float32
    assert float(r.min()) >= 0
    np.testing.assert_allclose(r.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)


def _dense_rollout(maps: AttentionMaps, head_weights=True) -> np.ndarray:
    """Abnar & Zuidema written out with explicit token-by-token matrices, per the module's
    documented construction: B = ½·M + ½·I per attention step, R = B_L ··· B_1, read-out row."""
    h, w = maps.grid
    n, t = h * w, maps.frames
    q = 1 + n
    out = []
    for b in range(maps.logits.shape[0]):
        if maps.attention in ("joint", "divided"):
            size = 1 + t * n
            tok = lambda f, i: 0 if i == 0 else 1 + f * n + (i - 1)  # noqa: E731 (i: index in Q)
            steps = []
            for block in maps.blocks:
                if maps.attention == "joint":
                    steps.append(np.asarray(block["joint"][b]).mean(0))
                    continue
                at = np.asarray(block["time"][b]).mean(1)  # (N, T, T)
                m_time = np.zeros((size, size))
                m_time[0, 0] = 1.0  # the CLS takes no part
                for p in range(n):
                    for f in range(t):
                        for g in range(t):
                            m_time[tok(f, p + 1), tok(g, p + 1)] = at[p, f, g]
                a = np.asarray(block["space"][b]).mean(1)  # (T, Q, Q)
                m_space = np.zeros((size, size))
                for f in range(t):
                    for i in range(q):
                        for j in range(q):
                            if i == 0:  # the clip CLS: mean over frames of its rows
                                m_space[0, tok(f, j)] += a[f, 0, j] / t
                            else:
                                m_space[tok(f, i), tok(f, j)] += a[f, i, j]
                steps += [m_time, m_space]  # applied in this order
            r = np.zeros(size)
            r[0] = 1.0
            total = np.eye(size)
            for m in steps:
                total = (0.5 * m + 0.5 * np.eye(size)) @ total
            patches = (r @ total)[1:].reshape(t, n)
        else:
            size = t * q
            c = maps.key_sources
            heads = c.shape[0]
            total = np.eye(size)
            for block in maps.blocks:
                a = np.asarray(block["space"][b], np.float64)  # (T, heads, Q, Lk)
                m = np.zeros((size, size))
                for f in range(t):
                    for i in range(q):
                        for hh in range(heads):
                            for j in range(q):
                                for s in range(t):
                                    m[f * q + i, s * q + j] += a[f, hh, i, j] * c[hh, f, s] / heads
                            if maps.summary:
                                for s in range(t):
                                    m[f * q + i, s * q:(s + 1) * q] += (a[f, hh, i, q + s]
                                                                         / (heads * q))
                rows = m.sum(1, keepdims=True)
                m = np.where(rows > 0, m / np.where(rows > 0, rows, 1), np.eye(size))
                total = (0.5 * m + 0.5 * np.eye(size)) @ total
            if head_weights and maps.head:
                fw = np.asarray(maps.head["head"][b]).mean(0)[0, 1:]
            elif head_weights and maps.temporal:
                size_t = 1 + t
                tt = np.eye(size_t)
                for layer in maps.temporal:
                    tt = (0.5 * np.asarray(layer["longformer"][b]).mean(0)
                          + 0.5 * np.eye(size_t)) @ tt
                fw = tt[0, 1:]
            else:
                fw = np.ones(t)
            r = np.zeros(size)
            r[::q] = fw / fw.sum()
            patches = (r @ total).reshape(t, q)[:, 1:]
        out.append((patches / patches.sum()).reshape(t, h, w))
    return np.stack(out)


@pytest.mark.parametrize("case", ROLLOUT_CASES + [
    ("xvit_b16", dict(num_frames=4, shift_div=2, num_heads=2)),  # every channel shifted
], ids=_id)
@pytest.mark.parametrize("head_weights", [True, False])
def test_rollout_matches_the_dense_reference(case, head_weights):
    maps = attention_maps(_model(case, seed=1), clip(batch=1, seed=3))
    want = _dense_rollout(maps, head_weights)
    np.testing.assert_allclose(rollout(maps, head_weights=head_weights), want, rtol=1e-4,
                               atol=1e-6)


def _known(attention, blocks, frames, grid, **kw):
    return AttentionMaps(jnp.zeros((1, 2)), blocks, kw.pop("head", {}), [], "vit", attention,
                         grid, frames, **kw)


def _eye_rows(shape_prefix, q):
    """Maps in which every token attends only to itself, (*shape_prefix, q, q)."""
    return np.broadcast_to(np.eye(q, dtype=np.float32), (*shape_prefix, q, q)).copy()


def test_rollout_of_known_divided_attention():
    """One divided block, T = 4 frames of 2x2 patches. Spatially every frame's CLS looks only at
    patch 3; temporally patch 3 of every frame looks only at frame 0; all else looks at itself.
    Read-out row after the spatial step: ½ on the CLS, ½·¼ on patch 3 of every frame. The temporal
    step keeps half of each in place and moves half to frame 0: patch 3 of frame 0 holds
    ½·(⅛ + 4·⅛) = 5/16, the others 1/16 each; normalised over the ½ on patches: 5/8, 1/8, 1/8,
    1/8."""
    t, n = 4, 4
    space = _eye_rows((1, t, 3), 1 + n)
    space[:, :, :, 0] = 0
    space[:, :, :, 0, 1 + 3] = 1  # CLS -> patch 3
    time = _eye_rows((1, n, 3), t)
    time[:, 3] = 0
    time[:, 3, :, :, 0] = 1  # patch 3, every frame -> frame 0
    r = np.asarray(rollout(_known("divided", [{"time": time, "space": space}], t, (2, 2))))[0]
    want = np.zeros((t, 2, 2))
    want[:, 1, 1] = [5 / 8, 1 / 8, 1 / 8, 1 / 8]
    np.testing.assert_allclose(r, want, atol=1e-7)


def test_rollout_of_known_mixing_attention():
    """One mixing block, T = 3 frames, 2 heads: head 0 takes half its channels from t+1 and half
    from t-1 (zeros at the clip edges), head 1 none. Every CLS looks only at patch 0 of its frame,
    frames weighted 1/3 each (avg head). Frame 0's row keeps ¾ of its channels (head 0's "t-1"
    half is zeros): u = (⅓/¾, ⅓, ⅓/¾) = (4/9, 3/9, 4/9). Patch 0 of frame s receives
    ½ Σ_h Σ_t c_h[t, s] u_t: frame 0: ½(½·3/9 + 4/9) = 11/36, frame 1: ½(½·4/9 + ½·4/9 + 3/9) =
    14/36, frame 2: 11/36."""
    sources = np.zeros((2, 3, 3), np.float32)
    sources[0, 0, 1] = sources[0, 2, 1] = 0.5
    sources[0, 1, 0] = sources[0, 1, 2] = 0.5
    sources[1] = np.eye(3)
    a = _eye_rows((1, 3, 2), 5)
    a[:, :, :, 0] = 0
    a[:, :, :, 0, 1] = 1  # CLS -> patch 0, both heads
    r = np.asarray(rollout(_known("mixing", [{"space": a}], 3, (2, 2), key_sources=sources)))[0]
    want = np.zeros((3, 2, 2))
    want[:, 0, 0] = [11 / 36, 14 / 36, 11 / 36]
    np.testing.assert_allclose(r, want, atol=1e-7)


def test_rollout_of_known_joint_attention_and_head():
    """Joint: the CLS looks only at frame 2's patch 1 in the first block, at itself in the
    second: everything lands there. A TA head that looks only at frame 1 puts a space model's
    whole map in frame 1."""
    t, n = 3, 4
    first = _eye_rows((1, 2), 1 + t * n)
    first[:, :, 0] = 0
    first[:, :, 0, 1 + 2 * n + 1] = 1
    second = _eye_rows((1, 2), 1 + t * n)
    r = np.asarray(rollout(_known("joint", [{"joint": first}, {"joint": second}], t, (2, 2))))
    want = np.zeros((1, t, 2, 2))
    want[0, 2, 0, 1] = 1
    np.testing.assert_allclose(r, want, atol=1e-7)

    space = np.full((1, t, 2, 5, 5), 0.2, np.float32)  # uniform attention in every frame
    head = np.zeros((1, 2, 1 + t, 1 + t), np.float32)
    head[:, :, :, 2] = 1  # the head's token (and the frames) look only at frame 1
    sources = np.broadcast_to(np.eye(t, dtype=np.float32), (2, t, t)).copy()
    maps = _known("space", [{"space": space}], t, (2, 2), head={"head": head},
                  key_sources=sources)
    r = np.asarray(rollout(maps))
    np.testing.assert_allclose(r[0, 1], 0.25, atol=1e-7)
    np.testing.assert_allclose(r[0, [0, 2]], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(rollout(maps, head_weights=False))[0], 1 / 12,
                               atol=1e-7)


def test_plot_rollout_draws_every_frame():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = _model(("timesformer_b16_joint", dict(tubelet_size=2)))
    x = clip(batch=1)
    r = attention_rollout(model, x)  # (1, 2, 2, 2): two tubelets of two frames
    fig = plot_rollout(x, r, title="joint")
    assert len(fig.axes) == 2 * 4 + 1  # frames, overlays, colour bar
    assert [a.get_title() for a in fig.axes[:4]] == [f"frame {i}" for i in range(4)]
    plt.close(fig)
    u8 = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    plt.close(plot_rollout(u8, r[0]))
    with pytest.raises(ValueError, match="divisible"):
        plot_rollout(u8[:3], r[0])

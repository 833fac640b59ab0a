"""XViT space-time mixing: the shift itself, and a whole block against a from-the-spec reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import vidmix
from vidmix.models.temporal_shift import temporal_shift


def reference_shift(x, fold, group, mode):
    """Loop-by-loop statement of the spec: channel c of frame t reads frame t+1 (c < fold), t-1
    (fold <= c < 2 fold) or t; outside the frame's group: zero, or wrapped inside the group."""
    b, t = x.shape[:2]
    out = np.zeros_like(x)
    for f in range(t):
        start = f - f % group
        for c in range(x.shape[-1]):
            src = f + 1 if c < fold else f - 1 if c < 2 * fold else f
            if not start <= src < start + group:
                if mode == "zero":
                    continue
                src = start + (src - start) % group
            out[:, f, ..., c] = x[:, src, ..., c]
    return out


@pytest.mark.parametrize("fold,group,mode", [(2, 8, "zero"), (3, 4, "zero"), (2, 4, "roll"),
                                             (1, 2, "zero"), (4, 8, "roll")])
def test_shift_matches_reference(rng, fold, group, mode):
    x = rng.standard_normal((2, 8, 3, 16)).astype(np.float32)
    got = np.asarray(temporal_shift(jnp.asarray(x), fold, group=group, mode=mode))
    np.testing.assert_array_equal(got, reference_shift(x, fold, group, mode))


def test_edges_see_zeros_and_groups_do_not_leak(rng):
    x = rng.standard_normal((1, 16, 5, 32)).astype(np.float32) + 10.0  # no value is zero
    y = np.asarray(temporal_shift(jnp.asarray(x), 4, group=8))
    for last in (7, 15):  # last frame of each group: "t+1" channels are zero
        assert np.all(y[:, last, :, :4] == 0) and np.all(y[:, last - 1, :, :4] != 0)
    for first in (0, 8):  # first frame of each group: "t-1" channels are zero
        assert np.all(y[:, first, :, 4:8] == 0) and np.all(y[:, first + 1, :, 4:8] != 0)
    np.testing.assert_array_equal(y[..., 8:], x[..., 8:])


@pytest.mark.parametrize("shift_div", [2, 4, 8, 16])
def test_mixed_fraction_follows_shift_div(rng, shift_div):
    d = 64
    x = jnp.asarray(rng.standard_normal((1, 4, 3, d)).astype(np.float32))
    moved = np.asarray(temporal_shift(x, d // shift_div)[:, 1:3] != x[:, 1:3])  # inner frames
    assert moved.any(axis=(0, 1, 2)).sum() == 2 * d // shift_div


def _layer_norm(x, p, eps=1e-6):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x, p):
    return x @ p["kernel"] + p["bias"]


def reference_mixing_block(x, p, heads, fold):
    """One XViT block in numpy, written from the spec: x (B, T, L, D)."""
    from scipy.special import erf

    b, t, n, d = x.shape
    hd = d // heads
    qkv = _dense(_layer_norm(x, p["norm1"]), p["attn"]["qkv"])
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def shift(a):
        out = a.copy()
        out[:, :, :, :fold] = 0
        out[:, :-1, :, :fold] = a[:, 1:, :, :fold]  # from frame t+1
        out[:, :, :, fold:2 * fold] = 0
        out[:, 1:, :, fold:2 * fold] = a[:, :-1, :, fold:2 * fold]  # from frame t-1
        return out

    k, v = shift(k), shift(v)
    split = lambda a: a.reshape(b, t, n, heads, hd)
    logits = np.einsum("btqhc,btkhc->bthqk", split(q), split(k)) / np.sqrt(hd)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bthqk,btkhc->btqhc", w, split(v)).reshape(b, t, n, d)
    x = x + _dense(o, p["attn"]["proj"])
    h = _dense(_layer_norm(x, p["norm2"]), p["mlp"]["fc1"])
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    return x + _dense(h, p["mlp"]["fc2"])


def tiny_xvit(**kw):
    base = dict(width=32, depth=1, num_heads=4, image_size=16, patch_size=8, num_frames=8,
                num_classes=3)
    return vidmix.create_model("xvit_b16", **{**base, **kw})


def _perturb(state_tree, rng):
    noise = lambda a: a + 0.3 * rng.standard_normal(a.shape).astype(a.dtype)
    return jax.tree.map(noise, state_tree)


def test_block_matches_reference(rng):
    from flax import nnx

    model = tiny_xvit()
    block = model.backbone.blocks[0]
    nnx.update(block, _perturb(nnx.state(block, nnx.Param), rng))
    x = rng.standard_normal((2, 8, 5, 32)).astype(np.float32)
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(block, nnx.Param)))
    got = np.asarray(block(jnp.asarray(x)))
    want = reference_mixing_block(x.astype(np.float64), params, heads=4, fold=32 // 8)
    assert rel_err(got, want) < 1e-5


def _changed_frames(model, clip, frame, rng):
    base = np.asarray(model.backbone.tokens(jnp.asarray(clip)))
    other = clip.copy()
    other[:, frame] += rng.standard_normal(other[:, frame].shape).astype(np.float32)
    moved = np.asarray(model.backbone.tokens(jnp.asarray(other)))
    return set(np.flatnonzero(np.abs(moved - base).max(axis=(0, 2, 3)) > 1e-6).tolist())


@pytest.mark.parametrize("frame", [0, 3, 7])
def test_one_block_sees_only_neighbouring_frames(rng, frame):
    model = tiny_xvit()
    clip = rng.standard_normal((1, 8, 16, 16, 3)).astype(np.float32)
    want = {f for f in (frame - 1, frame, frame + 1) if 0 <= f < 8}
    assert _changed_frames(model, clip, frame, rng) == want


def test_no_change_crosses_a_shift_group(rng):
    model = tiny_xvit(shift_group=4)
    clip = rng.standard_normal((1, 8, 16, 16, 3)).astype(np.float32)
    assert _changed_frames(model, clip, 3, rng) == {2, 3}  # frame 4 is in the next group
    assert _changed_frames(model, clip, 4, rng) == {4, 5}


def test_roll_wraps_around_the_clip(rng):
    model = tiny_xvit(shift_mode="roll")
    clip = rng.standard_normal((1, 8, 16, 16, 3)).astype(np.float32)
    assert _changed_frames(model, clip, 0, rng) == {7, 0, 1}


def test_summary_tokens_connect_all_frames(rng):
    clip = rng.standard_normal((1, 8, 16, 16, 3)).astype(np.float32)
    assert _changed_frames(tiny_xvit(attention="space", head="avg", temporal_embed_slots=0), clip,
                           2, rng) == {2}
    summary = tiny_xvit(attention="space", head="summary", temporal_embed_slots=0)
    assert _changed_frames(summary, clip, 2, rng) == set(range(8))

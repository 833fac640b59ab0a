"""Attention implementations: "auto" | "xla" | "cudnn", and the chunked (online-softmax) XLA form
that long key sequences take."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err
from flax import nnx

import vidmix
from vidmix.models import layers
from vidmix.models.chunked_attention import balanced_chunk, chunked_attention
from vidmix.models.config import VideoViTConfig
from vidmix.models.dense_attention import dense_attention
from vidmix.models.pst import PSTConfig
from vidmix.models.vtn import VTNConfig

dense = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")


def arrays(rng, *shapes, dtype=np.float32):
    return [jnp.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes]


@pytest.fixture(autouse=True)
def full_precision_matmuls():
    """fp32 parity at 1e-5 needs full-precision dots (the CPU default already is)."""
    with jax.default_matmul_precision("highest"):
        yield


# The chunked kernel against the dense one -------------------------------------------------------
@pytest.mark.parametrize("lq,lk,qc,kc", [(37, 53, 8, 16), (53, 37, 16, 8), (1, 29, 4, 5),
                                         (30, 1, 7, 3), (64, 64, 16, 16), (19, 200, 32, 64)])
def test_chunked_forward_matches_dense(rng, lq, lk, qc, kc):
    q, = arrays(rng, (3, lq, 2, 8))
    k, v = arrays(rng, (3, lk, 2, 8), (3, lk, 2, 8))
    got = jax.jit(lambda *a: chunked_attention(*a, query_chunk=qc, key_chunk=kc))(q, k, v)
    assert got.shape == q.shape and got.dtype == q.dtype
    assert rel_err(got, dense(q, k, v)) <= 1e-5


@pytest.mark.parametrize("lq,lk,qc,kc", [(37, 53, 8, 16), (23, 23, 5, 7), (9, 41, 16, 10)])
def test_chunked_gradients_match_dense(rng, lq, lk, qc, kc):
    q, w = arrays(rng, (2, lq, 3, 8), (2, lq, 3, 8))
    k, v = arrays(rng, (2, lk, 3, 8), (2, lk, 3, 8))
    # large logits: the online softmax must rescale its running sums
    q = 3 * q

    def grads(f):
        return jax.jit(jax.grad(lambda *a: (f(*a) * w).sum(), argnums=(0, 1, 2)))(q, k, v)

    chunked = grads(lambda *a: chunked_attention(*a, query_chunk=qc, key_chunk=kc))
    for name, got, want in zip("qkv", chunked, grads(dense), strict=True):
        assert rel_err(got, want) <= 1e-5, name


def test_chunked_under_vmap_and_second_order(rng):
    q, k, v = arrays(rng, (3, 1, 13, 2, 8), (3, 1, 19, 2, 8), (3, 1, 19, 2, 8))
    f = jax.jit(jax.vmap(lambda a, b, c: chunked_attention(a, b, c, query_chunk=8, key_chunk=8)))
    assert rel_err(f(q, k, v), jax.vmap(dense)(q, k, v)) <= 1e-5
    # the custom backward is itself plain JAX, so it differentiates again
    second = lambda f: jax.jit(jax.grad(
        lambda a: jax.grad(lambda b: (f(b, k[0], v[0]) ** 2).sum())(a).sum()))
    got = second(lambda *a: chunked_attention(*a, query_chunk=8, key_chunk=8))(q[0])
    assert rel_err(got, second(dense)(q[0])) <= 1e-4


def test_balanced_chunks():
    assert balanced_chunk(7, 512) == 7  # one block: the whole sequence, unpadded
    assert balanced_chunk(520, 512) == 264  # two blocks of 264, not two of 512
    assert balanced_chunk(8192, 512) == 512
    for length in (1, 9, 513, 1025, 1569, 3137):
        size = balanced_chunk(length, 512)
        assert size <= 512 and -(-length // size) == -(-length // 512)


# The dense kernel (short sequences) against JAX's own ----------------------------------------
def test_dense_matches_jax_forward_and_gradients(rng):
    q, w = arrays(rng, (2, 37, 3, 16), (2, 37, 3, 16))
    k, v = arrays(rng, (2, 53, 3, 16), (2, 53, 3, 16))
    q = 3 * q  # large logits
    assert rel_err(jax.jit(dense_attention)(q, k, v), dense(q, k, v)) <= 1e-6

    def grads(f, *a):
        return jax.jit(jax.grad(lambda *x: (f(*x).astype(jnp.float32) * w).sum(),
                                argnums=(0, 1, 2)))(*a)

    for name, got, want in zip("qkv", grads(dense_attention, q, k, v), grads(dense, q, k, v),
                               strict=True):
        assert rel_err(got, want) <= 1e-5, name
    # bf16: the same value, gradients as close to the float32 ones as JAX's own are
    half = [a.astype(jnp.bfloat16) for a in (q, k, v)]
    np.testing.assert_array_equal(dense_attention(*half), dense(*half))
    exact = grads(dense, q.astype(jnp.bfloat16).astype(jnp.float32), *[
        a.astype(jnp.float32) for a in half[1:]])
    for name, got, ref, want in zip("qkv", grads(dense_attention, *half), grads(dense, *half),
                                    exact, strict=True):
        assert rel_err(got, want) <= 1.5 * rel_err(ref, want) + 1e-3, name


def test_dense_under_vmap_and_second_order(rng):
    q, k, v = arrays(rng, (3, 1, 13, 2, 8), (3, 1, 19, 2, 8), (3, 1, 19, 2, 8))
    assert rel_err(jax.jit(jax.vmap(dense_attention))(q, k, v), jax.vmap(dense)(q, k, v)) <= 1e-6
    second = lambda f: jax.jit(jax.grad(
        lambda a: jax.grad(lambda b: (f(b, k[0], v[0]) ** 2).sum())(a).sum()))
    assert rel_err(second(dense_attention)(q[0]), second(dense)(q[0])) <= 1e-4


def test_short_sequences_take_the_dense_kernel(rng, monkeypatch):
    q, k, v = arrays(rng, (2, 5, 16), (2, 7, 16), (2, 7, 16))
    seen = []
    monkeypatch.setattr(layers, "dense_attention",
                        lambda *a: seen.append(a[1].shape) or dense_attention(*a))
    layers.multihead_attention(q, k, v, 2, implementation="xla")
    assert seen == [(2, 7, 2, 8)]


def test_gelu_recomputed_is_bitwise_jax_gelu(rng):
    x, w = arrays(rng, (64, 300), (64, 300))
    x = 3 * x
    exact = lambda a: jax.nn.gelu(a, approximate=False)
    np.testing.assert_array_equal(jax.jit(layers.gelu)(x), jax.jit(exact)(x))
    grad = lambda f: jax.jit(jax.grad(lambda a: (f(a) * w).sum()))(x)
    np.testing.assert_array_equal(grad(layers.gelu), grad(exact))


# multihead_attention: implementations, several batch axes, long sequences ----------------------
def test_multihead_chunked_path_matches_dense_with_batch_axes(rng, monkeypatch):
    """Long key sequences take the chunked path (here made "long" by lowering the threshold)."""
    q, = arrays(rng, (2, 3, 45, 16))
    k, v = arrays(rng, (2, 3, 70, 16), (2, 3, 70, 16))
    want = layers.multihead_attention(q, k, v, 2, implementation="xla")  # dense: 70 keys
    monkeypatch.setattr(layers, "CHUNKED_MIN_KEYS", 16)
    monkeypatch.setattr(layers, "KEY_CHUNK", 16)
    seen = []
    monkeypatch.setattr(layers, "chunked_attention",
                        lambda *a: seen.append(a[1].shape) or chunked_attention(
                            *a, query_chunk=16, key_chunk=16))
    got = layers.multihead_attention(q, k, v, 2, implementation="xla")
    assert seen == [(6, 70, 2, 8)] and got.shape == q.shape
    assert rel_err(got, want) <= 1e-5
    grad = lambda: jax.jit(jax.grad(lambda a: (layers.multihead_attention(
        a, k, v, 2, implementation="xla") ** 2).sum()))(q)
    g_chunked = grad()
    monkeypatch.setattr(layers, "CHUNKED_MIN_KEYS", 10**9)
    monkeypatch.setattr(layers, "DENSE_SCORES_BUDGET", 10**18)
    assert rel_err(g_chunked, grad()) <= 1e-5


def test_which_sequences_are_chunked():
    short, long_ = jnp.zeros((1, 197, 12, 64)), jnp.zeros((1, 1569, 12, 64))
    assert not layers.use_chunked(short, short)  # per-frame ViT attention: dense
    assert layers.use_chunked(long_, long_)  # joint attention over 8 frames: chunked
    assert layers.use_chunked(short, long_)
    mid = jax.ShapeDtypeStruct((64, 785, 12, 64), jnp.float32)  # 1.8 GB of dense scores
    assert layers.use_chunked(mid, mid)
    assert not layers.use_chunked(mid, jax.ShapeDtypeStruct((64, 500, 12, 64), jnp.float32))


def test_auto_on_the_cpu_is_xla(rng):
    q, k, v = arrays(rng, (2, 3, 17, 16), (2, 3, 17, 16), (2, 3, 17, 16))
    auto = layers.multihead_attention(q, k, v, 2)
    assert rel_err(auto, layers.multihead_attention(q, k, v, 2, implementation="xla")) == 0
    # and on bf16 too (no GPU: no cuDNN)
    half = [a.astype(jnp.bfloat16) for a in (q, k, v)]
    np.testing.assert_array_equal(layers.multihead_attention(*half, 2, implementation="auto"),
                                  layers.multihead_attention(*half, 2, implementation="xla"))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_cudnn_on_the_cpu_is_a_clear_error(dtype):
    q = jnp.zeros((1, 16, 64), dtype)
    with pytest.raises(ValueError, match=r"attention_impl='cudnn' cannot run here: cuDNN "
                                         r"attention needs an NVIDIA GPU.*'cpu'.*'auto'"):
        layers.multihead_attention(q, q, q, 2, implementation="cudnn")


def test_cudnn_constraints_are_named(monkeypatch):
    """What `cudnn_problem` says on a (pretended) NVIDIA GPU."""
    monkeypatch.setattr(layers, "_gpu_problem", lambda: None)
    monkeypatch.setattr(layers, "_max_head_dim", lambda: 256)
    x = lambda length, hd, dtype=jnp.bfloat16: jnp.zeros((1, length, 2, hd), dtype)
    assert layers.cudnn_problem(x(16, 64), x(16, 64)) is None
    assert layers.cudnn_problem(x(17, 256, jnp.float16), x(33, 256, jnp.float16)) is None
    assert "bfloat16 or float16" in layers.cudnn_problem(x(16, 64, jnp.float32), x(16, 64))
    assert "head dim <= 256 and a multiple of 8, got 264" in layers.cudnn_problem(x(16, 264),
                                                                                   x(16, 264))
    assert "got 12" in layers.cudnn_problem(x(16, 12), x(16, 12))
    bias = jnp.zeros((1, 2, 49, 49))
    assert "even sequence lengths" in layers.cudnn_problem(x(49, 32), x(49, 32), bias=bias)
    assert layers.cudnn_problem(x(48, 32), x(48, 32), bias=bias) is None
    with pytest.raises(ValueError, match="head dim <= 256"):
        layers.dot_product_attention(x(16, 264), x(16, 264), x(16, 264), implementation="cudnn")


@pytest.mark.parametrize("lq,lk", [(197, 197), (7, 8), (8, 7)])
def test_even_padding_changes_neither_output_nor_gradients(rng, lq, lk):
    """cuDNN's backward takes only even lengths, so odd ones are padded and the pad masked out:
    checked with the same padding through XLA, outputs and all three gradients."""
    q, k, v = arrays(rng, (2, lq, 3, 16), (2, lk, 3, 16), (2, lk, 3, 16))
    cot = jnp.asarray(rng.standard_normal((2, lq, 3, 16)).astype(np.float32))

    def vjp(attend):
        out, pullback = jax.vjp(attend, q, k, v)
        return out, pullback(cot)

    out, grads = vjp(lambda *a: layers.even_padded(*a, implementation="xla"))
    ref, ref_grads = vjp(dense)
    assert out.shape == ref.shape
    assert rel_err(out, ref) < 1e-6
    for g, r in zip(grads, ref_grads, strict=True):
        assert rel_err(g, r) < 1e-6


def test_cudnn_gets_even_lengths(monkeypatch, rng):
    """On a (pretended) NVIDIA GPU, a ViT's 197 tokens reach cuDNN padded to 198 with their
    lengths; a bias keeps its own rule (cudnn_problem)."""
    monkeypatch.setattr(layers, "_gpu_problem", lambda: None)
    calls = []
    real = jax.nn.dot_product_attention

    def fake(q, k, v, *args, implementation=None, **kwargs):
        calls.append((implementation, q.shape[1], k.shape[1], sorted(kwargs)))
        return real(q, k, v, *args, implementation="xla", **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", fake)
    q, k, v = (a.astype(jnp.bfloat16) for a in arrays(rng, *[(2, 197, 2, 32)] * 3))
    out = layers.dot_product_attention(q, k, v, implementation="cudnn")
    assert calls == [("cudnn", 198, 198, ["key_value_seq_lengths", "query_seq_lengths"])]
    assert out.shape == q.shape
    assert rel_err(out.astype(jnp.float32), real(q, k, v).astype(jnp.float32)) < 1e-2
    calls.clear()
    layers.dot_product_attention(q[:, :196], k[:, :196], v[:, :196], implementation="auto")
    assert calls == [("cudnn", 196, 196, [])]
    calls.clear()
    with layers.unchunked():  # counting FLOPs: XLA counts a cuDNN custom call as nothing
        layers.dot_product_attention(q, k, v, implementation="cudnn")
    assert calls == []


def test_invalid_implementation_is_explained():
    q = jnp.zeros((1, 4, 8))
    with pytest.raises(ValueError, match=r"must be one of 'auto', 'xla', 'cudnn', got 'flash'"):
        layers.multihead_attention(q, q, q, 2, implementation="flash")
    with pytest.raises(ValueError, match=r"one of 'auto', 'xla', 'cudnn', got 'cuda'"):
        layers.Attention(8, 2, implementation="cuda", rngs=nnx.Rngs(0))


# Memory: the chunked form never holds the score matrix -----------------------------------------
def test_chunked_forward_and_backward_memory_is_not_quadratic():
    n = 8192
    x = jax.ShapeDtypeStruct((1, n, 1, 64), jnp.float32)
    scores = n * n * 4  # one full float32 score matrix: 256 MiB

    def temp(f):
        return jax.jit(f).lower(x, x, x).compile().memory_analysis().temp_size_in_bytes

    fwd = temp(chunked_attention)
    bwd = temp(jax.grad(lambda q, k, v: (chunked_attention(q, k, v) ** 2).sum(),
                        argnums=(0, 1, 2)))
    assert fwd < scores / 16 and bwd < scores / 8, (fwd, bwd)
    # what the dense form takes, for contrast (at least the score matrix)
    assert temp(dense) >= scores
    # and the model-level entry point takes the chunked form at this length
    mha = lambda q, k, v: layers.multihead_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], 1,
                                                     implementation="xla")
    assert temp(mha) < scores / 16


def test_flops_are_counted_in_the_dense_form():
    """XLA's cost analysis counts a loop body once: cost.py counts long attention unchunked."""
    x = jax.ShapeDtypeStruct((1, 1569, 768), jnp.float32)  # joint attention, 8 x 224^2, ViT-B
    flops = lambda: jax.jit(lambda q, k, v: layers.multihead_attention(q, k, v, 12)).lower(
        x, x, x).cost_analysis()["flops"]
    exact = 2 * 2 * 1569**2 * 768  # q k^T and p v, multiply-adds counted as 2
    with layers.unchunked():
        assert flops() == pytest.approx(exact, rel=0.03)
    assert flops() < exact / 4  # the chunked loops, counted once


# Model options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [VideoViTConfig, VTNConfig, PSTConfig])
def test_every_family_has_the_option(cls):
    assert cls().attention_impl == "auto"
    assert cls(attention_impl="xla").attention_impl == "xla"
    with pytest.raises(ValueError, match=r"attention_impl must be one of 'auto', 'xla', "
                                         r"'cudnn', got 'fast'"):
        cls(attention_impl="fast")


# Tiny models of every family: their attention modules take the option from the config.
TINY = {
    "xvit_b16": dict(width=32, depth=1, num_heads=4, image_size=32, patch_size=16,
                     num_frames=4, num_classes=5),
    "timesformer_b16_joint": dict(width=32, depth=1, num_heads=4, image_size=32, patch_size=16,
                                  num_frames=4, num_classes=5),
    "vtn_vit_b16": dict(width=32, depth=1, num_heads=4, image_size=32, patch_size=16,
                        num_frames=4, num_classes=5, temporal_heads=4, temporal_mlp_dim=64,
                        attention_window=4),
    "pst_tiny": dict(embed_dim=16, depths=(2, 2), num_heads=(2, 2), window_size=4, image_size=32,
                     num_frames=4, num_classes=5),
}


@pytest.mark.parametrize("name", list(TINY))
def test_models_pass_the_option_to_their_attention(name):
    """"cudnn" reaches the attention kernels: on the CPU, the model's first attention raises."""
    model = vidmix.create_model(name, attention_impl="cudnn", **TINY[name])
    assert model.config.attention_impl == "cudnn"
    with pytest.raises(ValueError, match="attention_impl='cudnn' cannot run here"):
        nnx.jit(lambda m, x: m.features(x))(model, jnp.zeros((1, 4, 32, 32, 3)))


def test_attention_module_passes_the_implementation(monkeypatch):
    attn = layers.Attention(16, 2, implementation="xla", rngs=nnx.Rngs(0))
    seen = []
    real = layers.dot_product_attention
    monkeypatch.setattr(layers, "dot_product_attention",
                        lambda *a, **kw: seen.append(kw["implementation"]) or real(*a, **kw))
    attn(jnp.zeros((2, 5, 16)))
    assert seen == ["xla"]

"""Building blocks shared by every model: attention, MLP, stochastic depth."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx

# Linear layers are initialised as in the JAX ViT (Xavier-uniform kernels, zero biases).
dense_init = nnx.initializers.xavier_uniform()

KVHook = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

# Attention capture (`vidmix.models.attention_maps`): off by default, so the forward pass is the
# plain one. Inside `capture_attention()`, attention modules also compute their softmax weights
# from the same queries and keys, on the side, and `sow` them as `nnx.Intermediate` values named
# `ATTENTION_WEIGHTS`; the outputs are still computed by the normal path, so they do not change.
ATTENTION_WEIGHTS = "attention_weights"
_CAPTURING = contextvars.ContextVar("vidmix_capture_attention", default=False)


@contextlib.contextmanager
def capture_attention() -> Iterator[None]:
    """Within this context (read when a function is traced), attention modules sow their weights.

    Use it together with `nnx.capture(..., nnx.Intermediate)`, which collects the sown values;
    `vidmix.models.attention_maps.attention_maps` does both.
    """
    token = _CAPTURING.set(True)
    try:
        yield
    finally:
        _CAPTURING.reset(token)


def capturing() -> bool:
    """Whether attention modules should sow their weights (inside `capture_attention()`)."""
    return _CAPTURING.get()


def attention_weights(q: jax.Array, k: jax.Array, num_heads: int) -> jax.Array:
    """The softmax weights of `multihead_attention(q, k, v, num_heads)`, in float32.

    q: (..., Lq, D), k: (..., Lk, D), head-major channels -> (..., heads, Lq, Lk); every row is
    non-negative and sums to 1 over the keys.
    """
    *batch, lq, d = q.shape
    hd = d // num_heads
    qh = q.reshape(*batch, lq, num_heads, hd)
    kh = k.reshape(*batch, k.shape[-2], num_heads, hd)
    logits = jnp.einsum("...qhc,...khc->...hqk", qh, kh, preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits / jnp.sqrt(jnp.float32(hd)), axis=-1)


def multihead_attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int) -> jax.Array:
    """Scaled dot-product attention over the second-to-last axis, any number of batch axes.

    q: (..., Lq, D); k, v: (..., Lk, D) with channels ordered head-major (c = head * head_dim + j),
    the order of a fused qkv projection. Runs through `jax.nn.dot_product_attention` so that
    fused kernels (cuDNN flash attention, TPU) serve where they exist.
    """
    *batch, lq, d = q.shape
    lk = k.shape[-2]
    hd = d // num_heads
    out = jax.nn.dot_product_attention(
        q.reshape(-1, lq, num_heads, hd),
        k.reshape(-1, lk, num_heads, hd),
        v.reshape(-1, lk, num_heads, hd),
    )
    return out.reshape(*batch, lq, d)


class Attention(nnx.Module):
    """Multi-head self-attention with a fused qkv projection (rows q, k, v as in timm).

    `kv_hook` lets an attention scheme rewrite the keys and values before attention (XViT's
    temporal shift, summary tokens); the queries are never touched. Inside `capture_attention()`
    the weights over those (rewritten) keys are sown too, (..., heads, Lq, Lk), output unchanged.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True,
                 dropout_rate: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(dim, 3 * dim, use_bias=qkv_bias, dtype=dtype, kernel_init=dense_init,
                              rngs=rngs)
        self.proj = nnx.Linear(dim, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, kv_hook: KVHook | None = None):
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        if kv_hook is not None:
            k, v = kv_hook(k, v)
        out = multihead_attention(q, k, v, self.num_heads)
        if capturing():
            self.sow(nnx.Intermediate, ATTENTION_WEIGHTS,
                     attention_weights(q, k, self.num_heads))
        return self.dropout(self.proj(out), deterministic=not train)


class Mlp(nnx.Module):
    """Two linear layers with an exact (erf) GELU between them."""

    def __init__(self, dim: int, hidden: int, *, dropout_rate: float = 0.0, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(dim, hidden, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = jax.nn.gelu(self.fc1(x), approximate=False)
        x = self.dropout(x, deterministic=not train)
        return self.dropout(self.fc2(x), deterministic=not train)


class DropPath(nnx.Module):
    """Stochastic depth: drops a whole residual branch for a random subset of the batch.

    One draw per example (axis 0), whatever the token layout, so a clip's frames and patches are
    kept or dropped together.
    """

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        self.rate = rate
        self.rngs = rngs["dropout"].fork() if rate > 0 else nnx.data(None)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.rngs(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, 0).astype(x.dtype)

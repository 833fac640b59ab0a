"""Building blocks shared by every model: attention, MLP, stochastic depth."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

# Linear layers are initialised as in the JAX ViT (Xavier-uniform kernels, zero biases).
dense_init = nnx.initializers.xavier_uniform()

KVHook = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


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
    temporal shift, summary tokens); the queries are never touched.
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

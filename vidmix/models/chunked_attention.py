"""Softmax attention in blocks, with an online softmax: never an Lq x Lk score matrix.

`chunked_attention(q, k, v)` computes `softmax(q k^T / sqrt(d)) v` for q (N, Lq, H, d) and k, v
(N, Lk, H, d) (the layout of `jax.nn.dot_product_attention`) in pure JAX, so it runs on every
backend. It is the path long key sequences take where no fused kernel serves
(`layers.dot_product_attention`):

- forward: queries in blocks of `query_chunk` (`lax.map`, one after another), and for each query
  block a `lax.scan` over key blocks of `key_chunk` keeps a running maximum m, a running sum of
  exp(s - m) and the running weighted sum of values, rescaled whenever m grows (the "online
  softmax" of Milakov & Gimelshein 2018, as flash attention uses it). Only the output and the
  log-sum-exp of every row (Lq numbers per head) are kept.
- backward (`jax.custom_vjp`): for every key block, a scan over the query blocks recomputes that
  block's probabilities from the saved log-sum-exp, p = exp(s - lse), and accumulates
  dV += p^T dO, dS = p * (dO V^T - rowsum(dO * O)), dK += dS^T Q, and this block's share of dQ.
  The residuals are q, k, v, the output and the log-sum-exp: linear in the lengths.

So the largest temporary is one (N, H, query_chunk, key_chunk) block of scores, forward and
backward. Lengths need not be multiples of the chunks: the last blocks are zero-padded, padded
keys are masked out and padded query rows are dropped; the blocks are balanced
(`balanced_chunk`), so the padding is small. Scores, the running statistics and all
accumulations are float32 whatever the input dtype; the products with V and the gradients are
taken in the inputs' dtype with float32 accumulation, as a fused kernel does.

Not supported here: bias, masks and dropout (callers use the dense path for those), forward-mode
differentiation (`jax.jvp`; `custom_vjp` has none).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Block sizes: one block of scores is N * H * 512 * 512 float32 numbers (1 MiB per head and
# example), small next to the activations, and large enough that each step is a real matmul.
QUERY_CHUNK = 512
KEY_CHUNK = 512

F32 = jnp.float32


def _blocks(x: jax.Array, chunk: int) -> jax.Array:
    """(N, L, H, d) -> (nb, N, H, chunk, d), the sequence zero-padded to whole blocks."""
    n, length, h, d = x.shape
    nb = -(-length // chunk)
    x = jnp.pad(x, ((0, 0), (0, nb * chunk - length), (0, 0), (0, 0)))
    return x.reshape(n, nb, chunk, h, d).transpose(1, 0, 3, 2, 4)


def _unblock(x: jax.Array, length: int) -> jax.Array:
    """Inverse of `_blocks`: (nb, N, H, chunk, d) -> (N, length, H, d)."""
    nb, n, h, chunk, d = x.shape
    return x.transpose(1, 0, 3, 2, 4).reshape(n, nb * chunk, h, d)[:, :length]


def _key_valid(length: int, chunk: int) -> jax.Array:
    """(nk, chunk) bool: which keys of each block are real (not padding)."""
    nb = -(-length // chunk)
    return jnp.asarray((np.arange(nb * chunk) < length).reshape(nb, chunk))


def _scores(qi: jax.Array, kj: jax.Array, scale: float) -> jax.Array:
    """(N, H, cq, d) x (N, H, ck, d) -> (N, H, cq, ck) float32 scaled logits."""
    return jnp.einsum("nhqd,nhkd->nhqk", qi, kj, preferred_element_type=F32) * scale


def _forward(q, k, v, query_chunk, key_chunk):
    """Output (N, Lq, H, d) and the blocked log-sum-exp (nq, N, H, query_chunk)."""
    lq, lk, d = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / np.sqrt(d)
    qb = _blocks(q, query_chunk)
    kb, vb = _blocks(k, key_chunk), _blocks(v, key_chunk)
    valid = _key_valid(lk, key_chunk)
    stats_shape = qb.shape[1:-1]  # (N, H, cq)

    def query_block(qi):
        def key_step(carry, xs):
            m, denom, acc = carry
            kj, vj, ok = xs
            s = jnp.where(ok, _scores(qi, kj, scale), -jnp.inf)
            m_new = jnp.maximum(m, s.max(axis=-1))  # finite: the first block has a real key
            p = jnp.exp(s - m_new[..., None])
            alpha = jnp.exp(m - m_new)
            denom = alpha * denom + p.sum(axis=-1)
            pv = jnp.einsum("nhqk,nhkd->nhqd", p.astype(vj.dtype), vj, preferred_element_type=F32)
            return (m_new, denom, alpha[..., None] * acc + pv), None

        init = (jnp.full(stats_shape, -jnp.inf, F32), jnp.zeros(stats_shape, F32),
                jnp.zeros((*stats_shape, vb.shape[-1]), F32))
        (m, denom, acc), _ = lax.scan(key_step, init, (kb, vb, valid))
        return (acc / denom[..., None]).astype(q.dtype), m + jnp.log(denom)

    out, lse = lax.map(query_block, qb)
    return _unblock(out, lq), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _attention(q, k, v, query_chunk, key_chunk):
    return _forward(q, k, v, query_chunk, key_chunk)[0]


def _attention_fwd(q, k, v, query_chunk, key_chunk):
    out, lse = _forward(q, k, v, query_chunk, key_chunk)
    return out, (q, k, v, out, lse)


def _attention_bwd(query_chunk, key_chunk, residuals, dout):
    q, k, v, out, lse = residuals
    lq, lk, d = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / np.sqrt(d)
    qb, dob = _blocks(q, query_chunk), _blocks(dout.astype(q.dtype), query_chunk)
    # rowsum(dO * O): the softmax Jacobian's correction term, one number per query row.
    delta = jnp.einsum("bnhqd,bnhqd->bnhq", dob.astype(F32), _blocks(out, query_chunk).astype(F32))
    kb, vb = _blocks(k, key_chunk), _blocks(v, key_chunk)
    valid = _key_valid(lk, key_chunk)

    def key_block(dq, xs):
        kj, vj, ok = xs

        def query_step(carry, ys):
            dk, dv = carry
            qi, doi, lse_i, delta_i = ys
            p = jnp.where(ok, jnp.exp(_scores(qi, kj, scale) - lse_i[..., None]), 0.0)
            dv = dv + jnp.einsum("nhqk,nhqd->nhkd", p.astype(doi.dtype), doi,
                                 preferred_element_type=F32)
            dp = jnp.einsum("nhqd,nhkd->nhqk", doi, vj, preferred_element_type=F32)
            ds = p * (dp - delta_i[..., None]) * scale
            dk = dk + jnp.einsum("nhqk,nhqd->nhkd", ds.astype(qi.dtype), qi,
                                 preferred_element_type=F32)
            dqi = jnp.einsum("nhqk,nhkd->nhqd", ds.astype(kj.dtype), kj,
                             preferred_element_type=F32)
            return (dk, dv), dqi

        zeros = jnp.zeros(kj.shape, F32)
        (dk, dv), dq_part = lax.scan(query_step, (zeros, zeros), (qb, dob, lse, delta))
        return dq + dq_part, (dk, dv)

    dq, (dk, dv) = lax.scan(key_block, jnp.zeros(qb.shape, F32), (kb, vb, valid))
    return (_unblock(dq, lq).astype(q.dtype), _unblock(dk, lk).astype(k.dtype),
            _unblock(dv, lk).astype(v.dtype))


_attention.defvjp(_attention_fwd, _attention_bwd)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                      query_chunk: int = QUERY_CHUNK, key_chunk: int = KEY_CHUNK) -> jax.Array:
    """softmax(q k^T / sqrt(d)) v without the Lq x Lk score matrix, forward and backward.

    q: (N, Lq, H, d); k, v: (N, Lk, H, d), any lengths >= 1. Returns (N, Lq, H, d) in q's dtype.
    The same as `jax.nn.dot_product_attention(q, k, v)` up to float rounding; peak temporary
    memory is one (N, H, query_chunk, key_chunk) block of float32 scores, not (N, H, Lq, Lk).
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"expected q, k, v of rank 4 (N, L, H, d), got shapes {q.shape}, "
                         f"{k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"q (N, Lq, H, d), k and v (N, Lk, H, d) do not match: {q.shape}, "
                         f"{k.shape}, {v.shape}")
    if min(q.shape[1], k.shape[1]) < 1:
        raise ValueError(f"empty sequence: q {q.shape}, k {k.shape}")
    return _attention(q, k, v, balanced_chunk(q.shape[1], query_chunk),
                      balanced_chunk(k.shape[1], key_chunk))


def balanced_chunk(length: int, chunk: int) -> int:
    """The block size that covers `length` in as many blocks as `chunk` needs, with the least
    padding: 520 tokens in blocks of at most 512 become 2 blocks of 264, not 2 of 512. Rounded
    up to a multiple of 8 where that does not add a block; a single block is the whole
    sequence, unpadded."""
    if chunk < 1:
        raise ValueError(f"chunk sizes must be positive, got {chunk}")
    blocks = -(-length // chunk)
    if blocks == 1:
        return length
    size = -(-length // blocks)
    aligned = -(-size // 8) * 8
    return aligned if -(-length // aligned) == blocks else size


__all__ = ["KEY_CHUNK", "QUERY_CHUNK", "balanced_chunk", "chunked_attention"]

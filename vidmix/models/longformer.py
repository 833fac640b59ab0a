"""A Longformer encoder (Beltagy et al. 2020) in Flax NNX: VTN's temporal encoder.

Post-LN BERT layers whose self-attention is local plus global:
- every token attends to the keys within `one_sided = attention_window // 2` positions of it (the
  band) and to the global tokens (here the first `num_global` tokens, VTN's [CLS]);
- a global token attends to every token, through its own query/key/value projections;
- padded tokens (`valid` False) are never attended to.

The band is computed in blocks, in O(L·w) time and memory: queries are split into blocks of
`one_sided` tokens, and each block attends to its own key block, the two neighbouring ones (which
hold every key within `one_sided` of any of its queries) and the global keys. `dense_attention`
computes the same thing with a dense L×L mask; it is the O(L²) reference the tests compare with.

Embeddings follow BERT/Longformer: the input vectors plus learned absolute position and token type
embeddings, then LayerNorm (eps 1e-12) and dropout. Parameter names mirror the Hugging Face
`LongformerModel` (`query`, `query_global`, `intermediate`, `output`, ...) so that conversion of its
weights is a renaming.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.layers import (
    ATTENTION_WEIGHTS,
    capturing,
    check_implementation,
    dot_product_attention,
    softmax_weights,
)
from vidmix.models.stack import LayerStack

# BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm scales.
bert_init = nnx.initializers.normal(0.02)

Dropout = Callable[[jax.Array], jax.Array] | None


# Attention kernels: q, k, v are (B, L, heads, head_dim), `valid` (B, L) bool. Every softmax is
# `layers.dot_product_attention`: a fused kernel where one serves, the explicit form in training
# with dropout on the weights. ---------------------------------------------------------------------
def global_attention(qg: jax.Array, kg: jax.Array, vg: jax.Array, valid: jax.Array,
                     dropout: Dropout = None, implementation: str = "auto") -> jax.Array:
    """The global tokens' rows: queries qg (B, G, H, d) over every valid key of kg, vg."""
    return dot_product_attention(qg, kg, vg, mask=valid[:, None, None, :], dropout=dropout,
                                 implementation=implementation)


def dense_attention(q, k, v, qg, kg, vg, valid, *, one_sided: int, num_global: int = 1,
                    dropout: Dropout = None, implementation: str = "auto") -> jax.Array:
    """Longformer attention with a dense L×L mask: O(L²), the reference for `banded_attention`.

    Local rows attend to the band |i − j| <= one_sided and to the global columns j < num_global,
    valid keys only; the first `num_global` rows are then replaced by their global attention
    (queries `qg`, keys and values `kg`, `vg`, over all valid tokens).
    """
    length = q.shape[1]
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = (np.abs(i - j) <= one_sided) | (j < num_global)
    mask = jnp.asarray(allowed)[None, None] & valid[:, None, None, :]
    out = dot_product_attention(q, k, v, mask=mask, dropout=dropout, implementation=implementation)
    glob = global_attention(qg[:, :num_global], kg, vg, valid, dropout, implementation)
    return out.at[:, :num_global].set(glob)


def attention_weights(q, k, qg, kg, valid, *, one_sided: int, num_global: int = 1) -> jax.Array:
    """The softmax weights the Longformer attention uses, dense: (B, heads, L, L), float32.

    Row i < num_global is global token i's attention (its own projections) over every valid key;
    every other row is a local token's attention over the band |i - j| <= one_sided and the global
    keys, zero elsewhere and on invalid keys. O(L²): for inspection (`capture_attention()`) only.
    """
    length = q.shape[1]
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = jnp.asarray((np.abs(i - j) <= one_sided) | (j < num_global))[None, None]
    keys = valid[:, None, None, :]
    local = softmax_weights(q, k, mask=allowed & keys)
    glob = softmax_weights(qg[:, :num_global], kg, mask=keys)
    return local.at[:, :, :num_global].set(glob)


def band_mask(block: int) -> np.ndarray:
    """(block, 3·block): which of the keys of blocks b−1, b, b+1 a query of block b may see.

    Query s of block b is token b·block + s, key r is token (b−1)·block + r, so their distance
    r − block − s does not depend on b: the band is the same for every block.
    """
    s, r = np.arange(block)[:, None], np.arange(3 * block)[None, :]
    return np.abs(r - block - s) <= block


def neighbour_blocks(x: jax.Array, block: int) -> jax.Array:
    """(B, nb·block, ...) -> (B, nb, 3·block, ...): for each block, blocks b−1, b, b+1 in a row
    (zero padding beyond both ends)."""
    b, length = x.shape[:2]
    pad = [(0, 0), (block, block)] + [(0, 0)] * (x.ndim - 2)
    xp = jnp.pad(x, pad).reshape(b, length // block + 2, block, *x.shape[2:])
    return jnp.concatenate([xp[:, :-2], xp[:, 1:-1], xp[:, 2:]], axis=2)


def banded_attention(q, k, v, qg, kg, vg, valid, *, one_sided: int, num_global: int = 1,
                     dropout: Dropout = None, implementation: str = "auto") -> jax.Array:
    """Longformer attention in O(L·w): the same result as `dense_attention`.

    Query block b (`one_sided` tokens) attends to the keys of blocks b−1, b, b+1 (masked to the
    band, valid and non-global keys) and to the `num_global` global keys, which every block sees
    in extra columns, so a global key inside the band is counted once, as in Longformer.
    """
    b, length, heads, hd = q.shape
    block = one_sided
    padded = -(-length // block) * block
    if padded != length:  # whole blocks; the padding is invalid, so never attended to
        extra = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
        q, k, v = (jnp.pad(t, extra) for t in (q, k, v))
        valid_p = jnp.pad(valid, [(0, 0), (0, padded - length)])
    else:
        valid_p = valid
    nb = padded // block
    # Keys of the band: never a global token (those come through their own columns).
    local_keys = valid_p & (jnp.arange(padded) >= num_global)[None]
    band = (jnp.asarray(band_mask(block))[None, None]
            & neighbour_blocks(local_keys, block)[:, :, None])
    glob_cols = jnp.broadcast_to(valid[:, None, None, :num_global], (b, nb, block, num_global))
    mask = jnp.concatenate([glob_cols, band], axis=-1)  # (B, nb, block, G + 3·block)

    def with_globals(t):  # (B, L', H, d) -> (B·nb, G + 3·block, H, d)
        glob = jnp.broadcast_to(t[:, None, :num_global], (b, nb, num_global, heads, hd))
        both = jnp.concatenate([glob, neighbour_blocks(t, block)], axis=2)
        return both.reshape(b * nb, num_global + 3 * block, heads, hd)

    out = dot_product_attention(q.reshape(b * nb, block, heads, hd), with_globals(k),
                                with_globals(v),
                                mask=mask.reshape(b * nb, 1, block, num_global + 3 * block),
                                dropout=dropout, implementation=implementation)
    out = out.reshape(b, padded, heads, hd)[:, :length]
    glob = global_attention(qg[:, :num_global], kg, vg, valid, dropout, implementation)
    return out.at[:, :num_global].set(glob)


# Modules ---------------------------------------------------------------------------------------
def _linear(d_in: int, d_out: int, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, kernel_init=bert_init, dtype=dtype, rngs=rngs)


class LongformerSelfAttention(nnx.Module):
    """Local (windowed) + global multi-head self-attention; separate global q/k/v projections."""

    def __init__(self, dim: int, num_heads: int, *, one_sided: int, num_global: int = 1,
                 dropout_rate: float = 0.0, dtype=jnp.float32, implementation: str = "auto",
                 rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.one_sided, self.num_global = num_heads, one_sided, num_global
        self.implementation = check_implementation(implementation)
        for name in ("query", "key", "value", "query_global", "key_global", "value_global"):
            setattr(self, name, _linear(dim, dim, dtype, rngs))
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array, *, train: bool = False,
                 dense: bool = False) -> jax.Array:
        b, length, d = x.shape
        heads = lambda t: t.reshape(b, t.shape[1], self.num_heads, d // self.num_heads)
        g = self.num_global
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        qg = heads(self.query_global(x[:, :g]))  # only the global tokens ask global queries
        kg, vg = heads(self.key_global(x)), heads(self.value_global(x))
        dropout = None
        if train and self.dropout.rate > 0:
            dropout = lambda p: self.dropout(p, deterministic=False)
        kernel = dense_attention if dense else banded_attention
        out = kernel(q, k, v, qg, kg, vg, valid, one_sided=self.one_sided, num_global=g,
                     dropout=dropout, implementation=self.implementation)
        if capturing():  # inspection only (`layers.capture_attention`): the output is unchanged
            self.sow(nnx.Intermediate, ATTENTION_WEIGHTS,
                     attention_weights(q, k, qg, kg, valid, one_sided=self.one_sided,
                                       num_global=g))
        return out.reshape(b, length, d)


class LongformerLayer(nnx.Module):
    """Post-LN BERT layer: x = LN(x + drop(W·attn(x))); x = LN(x + drop(FFN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, one_sided: int,
                 num_global: int = 1, dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0, eps: float = 1e-12, dtype=jnp.float32,
                 implementation: str = "auto", rngs: nnx.Rngs):
        self.attention = LongformerSelfAttention(dim, num_heads, one_sided=one_sided,
                                                 num_global=num_global,
                                                 dropout_rate=attention_dropout_rate,
                                                 dtype=dtype, implementation=implementation,
                                                 rngs=rngs)
        self.attention_output = _linear(dim, dim, dtype, rngs)
        self.attention_norm = nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, rngs=rngs)
        self.intermediate = _linear(dim, mlp_dim, dtype, rngs)
        self.output = _linear(mlp_dim, dim, dtype, rngs)
        self.output_norm = nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array, *, train: bool = False,
                 dense: bool = False) -> jax.Array:
        drop = lambda t: self.dropout(t, deterministic=not train)
        a = self.attention(x, valid, train=train, dense=dense)
        x = self.attention_norm(x + drop(self.attention_output(a)))
        h = self.output(jax.nn.gelu(self.intermediate(x), approximate=False))
        return self.output_norm(x + drop(h))


def sincos_positions(key, shape, dtype=jnp.float32, std: float = 1.0):
    """The Transformer's sinusoids (Vaswani et al. 2017), row p = position p, scaled so an entry's
    root mean square is `std`: neighbouring positions start close and far ones apart, so order
    can be read from the first step, whichever positions a clip's frames have. `key` is unused."""
    del key
    num, dim = shape
    freq = 1.0 / 10000 ** (2 * np.arange(dim // 2) / dim)
    angle = np.arange(num)[:, None] * freq[None]
    table = np.concatenate([np.sin(angle), np.cos(angle), np.zeros((num, dim % 2))], 1)
    return jnp.asarray(table * std * np.sqrt(2), dtype)


# how a fresh position table is drawn: name -> (key, shape, dtype, std) -> table
POSITION_INITS = {
    "normal": lambda key, shape, dtype, std: nnx.initializers.normal(std)(key, shape, dtype),
    "sincos": sincos_positions,
}


class LongformerEmbeddings(nnx.Module):
    """inputs + position embedding[position id] + token type embedding[type id] -> LN -> dropout.

    The row `pad_position` of the position table starts at zero (PyTorch's `padding_idx`); the
    others are drawn by `position_init` (`POSITION_INITS`) at scale `position_std`: "normal" is
    N(0, position_std), BERT's with 0.02.
    """

    def __init__(self, dim: int, *, max_positions: int, type_vocab_size: int = 2,
                 pad_position: int | None = None, eps: float = 1e-12, dropout_rate: float = 0.0,
                 position_std: float = 0.02, position_init: str = "normal", dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if position_init not in POSITION_INITS:
            raise ValueError(f"unknown position_init {position_init!r}; choose from "
                             f"{sorted(POSITION_INITS)}")

        def init(key, shape, dtype=jnp.float32):
            table = POSITION_INITS[position_init](key, shape, dtype, position_std)
            return table if pad_position is None else table.at[pad_position].set(0)

        self.max_positions, self.type_vocab_size = max_positions, type_vocab_size
        self.position = nnx.Embed(max_positions, dim, embedding_init=init, dtype=dtype,
                                  rngs=rngs)
        self.token_type = nnx.Embed(type_vocab_size, dim, embedding_init=bert_init, dtype=dtype,
                                    rngs=rngs)
        self.norm = nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, inputs_embeds: jax.Array, position_ids: jax.Array,
                 token_type_ids: jax.Array, *, train: bool = False) -> jax.Array:
        x = inputs_embeds + self.position(position_ids) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x), deterministic=not train)


class LongformerEncoder(nnx.Module):
    """(B, L, D) input vectors -> last hidden states (B, L, D), any L (padded internally)."""

    def __init__(self, dim: int, *, num_layers: int, num_heads: int, mlp_dim: int,
                 attention_window: int, max_positions: int, type_vocab_size: int = 2,
                 pad_position: int | None = None, num_global: int = 1,
                 dropout_rate: float = 0.0, attention_dropout_rate: float = 0.0,
                 eps: float = 1e-12, position_std: float = 0.02, position_init: str = "normal",
                 dtype=jnp.float32, remat: str = "none", unroll="auto",
                 implementation: str = "auto", rngs: nnx.Rngs):
        if attention_window < 2 or attention_window % 2:
            raise ValueError(f"attention_window must be a positive even number, got "
                             f"{attention_window}")
        if num_global < 1:
            raise ValueError(f"num_global must be >= 1, got {num_global}")
        self.dim, self.num_global = dim, num_global
        self.one_sided = attention_window // 2
        self.embeddings = LongformerEmbeddings(
            dim, max_positions=max_positions, type_vocab_size=type_vocab_size,
            pad_position=pad_position, eps=eps, dropout_rate=dropout_rate,
            position_std=position_std, position_init=position_init, dtype=dtype, rngs=rngs)
        # one scanned stack (`stack.LayerStack`); every layer also takes the `valid` mask
        self.layers = LayerStack([
            LongformerLayer(dim, num_heads, mlp_dim, one_sided=self.one_sided,
                            num_global=num_global, dropout_rate=dropout_rate,
                            attention_dropout_rate=attention_dropout_rate, eps=eps, dtype=dtype,
                            implementation=implementation, rngs=rngs)
            for _ in range(num_layers)], remat=remat, unroll=unroll)

    def check_inputs(self, x, position_ids, token_type_ids, valid) -> None:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected input vectors of shape (batch, length, {self.dim}), got "
                             f"{tuple(x.shape)}")
        if x.shape[1] < self.num_global:
            raise ValueError(f"a sequence of {x.shape[1]} tokens cannot hold the "
                             f"{self.num_global} global token(s)")
        for name, ids in (("position_ids", position_ids), ("token_type_ids", token_type_ids),
                          ("valid", valid)):
            if ids is not None and tuple(ids.shape) != tuple(x.shape[:2]):
                raise ValueError(f"{name} must have shape (batch, length) = "
                                 f"{tuple(x.shape[:2])}, got {tuple(ids.shape)}")

    def __call__(self, inputs_embeds: jax.Array, *, position_ids: jax.Array,
                 token_type_ids: jax.Array | None = None, valid: jax.Array | None = None,
                 train: bool = False, dense: bool = False) -> jax.Array:
        """Last hidden states. `valid` (B, L) bool marks real tokens (default all); the first
        `num_global` tokens attend globally. `dense=True` uses the O(L²) reference attention."""
        self.check_inputs(inputs_embeds, position_ids, token_type_ids, valid)
        b, length, _ = inputs_embeds.shape
        if token_type_ids is None:
            token_type_ids = jnp.zeros((b, length), jnp.int32)
        if valid is None:
            valid = jnp.ones((b, length), bool)
        x = self.embeddings(inputs_embeds, position_ids, token_type_ids, train=train)
        # Pad once to whole attention blocks (the padding is invalid: never attended to).
        padded = -(-length // self.one_sided) * self.one_sided
        x = jnp.pad(x, [(0, 0), (0, padded - length), (0, 0)])
        valid = jnp.pad(valid.astype(bool), [(0, 0), (0, padded - length)])
        x = self.layers(x, valid, train=train, dense=dense)
        return x[:, :length]


__all__ = ["LongformerEncoder", "LongformerEmbeddings", "LongformerLayer",
           "LongformerSelfAttention", "attention_weights", "band_mask",
           "banded_attention", "dense_attention", "global_attention", "neighbour_blocks"]

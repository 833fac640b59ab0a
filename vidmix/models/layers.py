"""Building blocks shared by every model: attention, MLP, stochastic depth."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidmix.models.chunked_attention import KEY_CHUNK, chunked_attention
from vidmix.models.config import ATTENTION_IMPLS
from vidmix.models.dense_attention import dense_attention

# Linear layers are initialised as in the JAX ViT (Xavier-uniform kernels, zero biases).
dense_init = nnx.initializers.xavier_uniform()

KVHook = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

# Attention capture (`vidmix.models.attention_maps`): off by default, so the forward pass is the
# plain one. Inside `capture_attention()`, attention modules also compute their softmax weights
# from the same queries and keys, on the side, and `sow` them as `nnx.Intermediate` values named
# `ATTENTION_WEIGHTS`; the outputs are still computed by the normal path, so they do not change.
ATTENTION_WEIGHTS = "attention_weights"
# The logit of a masked pair: very negative but finite (as `jax.nn.dot_product_attention` uses), so
# a row whose keys are all masked gives a uniform average, never NaN.
MASKED_LOGIT = -0.7 * float(np.finfo(np.float32).max)
_CAPTURING = contextvars.ContextVar("vidmix_capture_attention", default=False)


@contextlib.contextmanager
def switched_on(flag: contextvars.ContextVar) -> Iterator[None]:
    """Sets a boolean trace-time flag (a ContextVar read while a function is traced) for the
    duration of the context."""
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def capture_attention() -> contextlib.AbstractContextManager:
    """Within this context (read when a function is traced), attention modules sow their weights.

    Use it together with `nnx.capture(..., nnx.Intermediate)`, which collects the sown values;
    `vidmix.models.attention_maps.attention_maps` does both.
    """
    return switched_on(_CAPTURING)


def capturing() -> bool:
    """Whether attention modules should sow their weights (inside `capture_attention()`)."""
    return _CAPTURING.get()


def softmax_weights(q: jax.Array, k: jax.Array, *, bias=None, mask=None) -> jax.Array:
    """softmax(q k^T / sqrt(d) + bias) over the keys, masked pairs excluded, in float32.

    q: (..., Lq, H, d), k: (..., Lk, H, d) -> (..., H, Lq, Lk); bias (additive) and mask (bool,
    True where a key may be seen) broadcastable to that. A row whose keys are all masked is
    uniform (masked logits are `MASKED_LOGIT`, finite). Every row sums to 1 over the keys.
    """
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
    logits = logits / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, MASKED_LOGIT)
    return jax.nn.softmax(logits, axis=-1)


# Attention implementations (`attention_impl` of every model config, `Attention(implementation=)`):
# - "cudnn": cuDNN's fused (flash) attention; a clear error where it cannot run (`cudnn_problem`).
# - "xla": XLA everywhere. Short key sequences take the dense form (`dense_attention.py`: the
#   (N, H, Lq, Lk) scores in one piece, and a backward pass that recomputes them rather than
#   keeping them; `jax.nn.dot_product_attention` when there is a bias or mask); long ones the
#   chunked online-softmax form (`chunked_attention.py`), whose scores never exceed one block of
#   512 x 512 per head, forward and backward. Long means more than CHUNKED_MIN_KEYS keys, or more
#   than one key block when the dense scores would take over DENSE_SCORES_BUDGET bytes. Measured
#   on the CPU (float32, d = 64), the chunked form is already faster above ~500 keys and 4-15x
#   smaller in XLA temporary memory above 1024; below 1024 the dense form stays the default so
#   that short sequences (per-frame ViT attention, windows, bands) run in one piece.
# - "auto": "cudnn" where it can run (NVIDIA GPU, bf16/fp16, head dim <= 256 (128 before Hopper)
#   and a multiple of 8, even lengths when there is a bias or mask), else "xla".
# cuDNN's backward takes only even sequence lengths (jax 0.10-0.11, cuDNN 9.19: a ViT's 197 tokens
# raise NotImplementedError once the step is differentiated), so without a bias or mask odd
# lengths go through `even_padded` (H100: 2.1 ms forward+backward against XLA's 6.7 ms at 197,
# docs/benchmarks.md).
CHUNKED_MIN_KEYS = 1024
DENSE_SCORES_BUDGET = 256 * 2**20  # bytes of float32 scores
_UNCHUNKED = contextvars.ContextVar("vidmix_unchunked_attention", default=False)


def unchunked() -> contextlib.AbstractContextManager:
    """Within this context (read when a function is traced), attention is always XLA's dense form.

    For counting FLOPs (`cost.py`): XLA's cost analysis counts the body of a loop once, so the
    chunked form's loops would hide most of its work, and counts a cuDNN kernel (a custom call)
    as nothing. Not for running long sequences.
    """
    return switched_on(_UNCHUNKED)


def check_implementation(implementation: str) -> str:
    """`implementation` if it is one of ATTENTION_IMPLS, else a clear ValueError."""
    if implementation not in ATTENTION_IMPLS:
        raise ValueError(f"attention implementation must be one of "
                         f"{', '.join(map(repr, ATTENTION_IMPLS))}, got {implementation!r}")
    return implementation


def _gpu_problem() -> str | None:
    """Why this process cannot run cuDNN kernels (None: it can)."""
    backend = jax.default_backend()
    if backend != "gpu":
        return f"cuDNN attention needs an NVIDIA GPU, but JAX's default backend is {backend!r}"
    device = jax.devices()[0]
    if "cuda" not in getattr(device.client, "platform_version", "cuda").lower():
        return (f"cuDNN attention needs an NVIDIA (CUDA) GPU, but the GPU backend is "
                f"{device.client.platform_version!r}")
    return None


def _max_head_dim() -> int:
    """cuDNN flash attention's largest head dim: 256 on Hopper (compute capability 9.0) and
    later, 128 before."""
    try:
        major = int(str(jax.devices()[0].compute_capability).split(".")[0])
    except (AttributeError, ValueError):  # unknown: assume a recent GPU
        return 256
    return 256 if major >= 9 else 128


def cudnn_problem(q: jax.Array, k: jax.Array, *, bias=None, mask=None) -> str | None:
    """Why cuDNN's fused attention cannot run on q (N, Lq, H, d), k (N, Lk, H, d) here, or None.

    Needs: an NVIDIA GPU backend, bf16 or fp16 inputs, head dim <= 256 (128 before Hopper) and a
    multiple of 8, and with a bias or mask, even lengths (cuDNN's backward rejects odd ones).
    """
    problem = _gpu_problem()
    if problem:
        return problem
    if jnp.dtype(q.dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return f"cuDNN attention needs bfloat16 or float16 inputs, got {jnp.dtype(q.dtype).name}"
    hd, limit = q.shape[-1], _max_head_dim()
    if hd > limit or hd % 8:
        return f"cuDNN attention needs a head dim <= {limit} and a multiple of 8, got {hd}"
    lq, lk = q.shape[-3], k.shape[-3]
    if (bias is not None or mask is not None) and (lq % 2 or lk % 2):
        return (f"cuDNN attention with a bias or mask needs even sequence lengths (its backward "
                f"rejects odd ones), got {lq} queries and {lk} keys")
    return None


def even_padded(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: str) -> jax.Array:
    """`jax.nn.dot_product_attention` of q (N, Lq, H, d), k and v (N, Lk, H, d) with odd lengths
    padded to even ones: the extra key is masked out by `key_value_seq_lengths`, the extra query
    row (zeros, by `query_seq_lengths`) is cut off, so the result and its gradients are those of
    the unpadded attention. Even lengths go straight through."""
    lq, lk = q.shape[1], k.shape[1]
    if not (lq % 2 or lk % 2):
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)

    def pad(x):
        return jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, 0), (0, 0)))

    n = q.shape[0]
    out = jax.nn.dot_product_attention(
        pad(q), pad(k), pad(v), implementation=implementation,
        query_seq_lengths=jnp.full((n,), lq, jnp.int32),
        key_value_seq_lengths=jnp.full((n,), lk, jnp.int32))
    return out[:, :lq]


def use_chunked(q: jax.Array, k: jax.Array) -> bool:
    """Whether the XLA path takes the chunked form for q (N, Lq, H, d), k (N, Lk, H, d)."""
    n, lq, h, _ = q.shape
    lk = k.shape[1]
    if _UNCHUNKED.get():
        return False
    return lk > KEY_CHUNK and (lk > CHUNKED_MIN_KEYS or 4 * n * h * lq * lk > DENSE_SCORES_BUDGET)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, bias=None, mask=None,
                          dropout: Callable[[jax.Array], jax.Array] | None = None,
                          implementation: str = "auto") -> jax.Array:
    """softmax(q k^T / sqrt(d) + bias, masked) v for q (N, Lq, H, d), k and v (N, Lk, H, d).

    `implementation`: "auto", "xla" or "cudnn" (see the comment above CHUNKED_MIN_KEYS); chosen
    per call, at trace time. bias, mask: as `jax.nn.dot_product_attention` takes them (4-D,
    broadcastable to (N, H, Lq, Lk)); with either, the XLA path is always the dense one (the
    bias or mask is itself an Lq x Lk array). `dropout`: applied to the softmax weights (in
    training); the weights are then computed in the open (`softmax_weights`), whatever
    `implementation` says, as no fused kernel takes a dropout function.
    """
    check_implementation(implementation)
    if dropout is not None:
        weights = dropout(softmax_weights(q, k, bias=bias, mask=mask).astype(v.dtype))
        return jnp.einsum("nhqk,nkhd->nqhd", weights, v)
    if implementation != "xla" and not _UNCHUNKED.get():
        problem = cudnn_problem(q, k, bias=bias, mask=mask)
        if problem is None:
            if bias is None and mask is None:
                return even_padded(q, k, v, implementation="cudnn")
            return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask,
                                                implementation="cudnn")
        if implementation == "cudnn":
            raise ValueError(f"attention_impl='cudnn' cannot run here: {problem}. Use 'auto' "
                             "(cuDNN where it can run, XLA elsewhere) or 'xla'.")
    if bias is None and mask is None:
        return chunked_attention(q, k, v) if use_chunked(q, k) else dense_attention(q, k, v)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, implementation="xla")


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
    """(..., L, D) with head-major channels (c = head * head_dim + j) -> (..., L, heads,
    head_dim)."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def multihead_attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int, *,
                        implementation: str = "auto", bias=None, mask=None) -> jax.Array:
    """Scaled dot-product attention over the second-to-last axis, any number of batch axes.

    q: (..., Lq, D); k, v: (..., Lk, D) with channels ordered head-major (c = head * head_dim + j),
    the order of a fused qkv projection. `implementation` ("auto", "xla", "cudnn") picks the
    kernel (`dot_product_attention`): cuDNN's fused attention where it can run, else XLA, dense
    for short key sequences and chunked (never the whole score matrix) for long ones. bias
    (additive, cast to q's dtype) and mask (bool, True where a key may be seen): optional,
    broadcastable to (..., heads, Lq, Lk).
    """
    *batch, lq, d = q.shape
    lk = k.shape[-2]

    def flat(a):  # (..., heads, Lq, Lk) -> (prod(...), heads, Lq, Lk)
        if a is None:
            return None
        return jnp.broadcast_to(a, (*batch, num_heads, lq, lk)).reshape(-1, num_heads, lq, lk)

    hd = d // num_heads
    out = dot_product_attention(
        q.reshape(-1, lq, num_heads, hd),
        k.reshape(-1, lk, num_heads, hd),
        v.reshape(-1, lk, num_heads, hd),
        bias=flat(None if bias is None else bias.astype(q.dtype)), mask=flat(mask),
        implementation=implementation,
    )
    return out.reshape(*batch, lq, d)


class Attention(nnx.Module):
    """Multi-head self-attention with a fused qkv projection (rows q, k, v as in timm).

    `kv_hook` lets an attention scheme rewrite the keys and values before attention (XViT's
    temporal shift, summary tokens); the queries are never touched. `bias` (additive) and `mask`
    (bool) are broadcastable to (..., heads, Lq, Lk) (Swin's relative positions and shifted
    windows); `out_hook` rewrites the attention output before `proj` (PST's patch shift moves
    it back). Inside `capture_attention()` the weights over the (rewritten) keys are sown too,
    (..., heads, Lq, Lk), output unchanged. `implementation` ("auto", "xla", "cudnn"): the
    attention kernel (`dot_product_attention`).
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True,
                 dropout_rate: float = 0.0, dtype=jnp.float32, implementation: str = "auto",
                 rngs: nnx.Rngs):
        self.init_projections(dim, num_heads, qkv_bias=qkv_bias, dtype=dtype,
                              implementation=implementation, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def init_projections(self, dim: int, num_heads: int, *, qkv_bias: bool, dtype,
                         implementation: str, rngs: nnx.Rngs) -> None:
        """`qkv` and `proj` (and the options). Subclasses with parameters of their own create
        them between this and `dropout`, where their random draws have always been (the dropout
        stream is forked from the same default stream when `rngs` has only one)."""
        self.num_heads = num_heads
        self.implementation = check_implementation(implementation)
        self.qkv = nnx.Linear(dim, 3 * dim, use_bias=qkv_bias, dtype=dtype, kernel_init=dense_init,
                              rngs=rngs)
        self.proj = nnx.Linear(dim, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, kv_hook: KVHook | None = None,
                 bias=None, mask=None, out_hook: Callable[[jax.Array], jax.Array] | None = None):
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        if kv_hook is not None:
            k, v = kv_hook(k, v)
        if bias is not None:
            bias = bias.astype(q.dtype)
        out = multihead_attention(q, k, v, self.num_heads, bias=bias, mask=mask,
                                  implementation=self.implementation)
        if capturing():
            heads = lambda t: split_heads(t, self.num_heads)
            self.sow(nnx.Intermediate, ATTENTION_WEIGHTS,
                     softmax_weights(heads(q), heads(k), bias=bias, mask=mask))
        if out_hook is not None:
            out = out_hook(out)
        return self.dropout(self.proj(out), deterministic=not train)


@jax.checkpoint
def gelu(x: jax.Array) -> jax.Array:
    """The exact (erf) GELU, `jax.nn.gelu(x, approximate=False)`, whose backward pass recomputes
    it from x. Differentiated as is, JAX keeps the erfc and exp terms of its derivative from the
    forward pass, and XLA computes each in a pass of its own over the (tokens, hidden) array; when
    they are recomputed, XLA fuses the forward GELU into one pass and its derivative into the
    backward's. Same values; measured on a 2-core CPU, an MLP of 384 -> 1536 -> 384 channels on
    1,572 tokens (forward and backward) takes 37 ms instead of 58.
    """
    return jax.nn.gelu(x, approximate=False)


class Mlp(nnx.Module):
    """Two linear layers with an exact (erf) GELU between them (`gelu`)."""

    def __init__(self, dim: int, hidden: int, *, dropout_rate: float = 0.0, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(dim, hidden, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.dropout(gelu(self.fc1(x)), deterministic=not train)
        return self.dropout(self.fc2(x), deterministic=not train)


class Constant(nnx.Variable):
    """A fixed per-module value that is not trained (e.g. a layer's drop-path rate): kept as
    state, not in the graph structure, so layers that differ only in it can be stacked."""


class DropPath(nnx.Module):
    """Stochastic depth: drops a whole residual branch for a random subset of the batch.

    One draw per example (axis 0), whatever the token layout, so a clip's frames and patches are
    kept or dropped together. `enabled` (default: rate > 0) decides whether the module can drop
    at all; the rate itself is state, so the layers of a stack may each have their own. `key`:
    its random stream's key (default: forked from `rngs`' dropout stream, one draw).
    """

    def __init__(self, rate: float, *, rngs: nnx.Rngs, enabled: bool | None = None,
                 key: jax.Array | None = None):
        self.enabled = rate > 0 if enabled is None else enabled
        self.rate = Constant(jnp.asarray(rate, jnp.float32))
        if not self.enabled:
            self.rngs = nnx.data(None)
        elif key is None:
            self.rngs = rngs["dropout"].fork()
        else:  # a given key: nothing is drawn from rngs (the tag keeps the layers' structure)
            self.rngs = nnx.RngStream(key, tag=rngs["dropout"].tag)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if not train or not self.enabled:
            return x
        keep = 1.0 - self.rate[...]
        mask = jax.random.bernoulli(self.rngs(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, 0).astype(x.dtype)

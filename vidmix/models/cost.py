"""Model cost as XLA counts it: FLOPs of the lowered forward pass, and parameter counts.

Papers quote "FLOPs" as multiply-adds (fvcore's convention); XLA counts a multiply-add as 2 FLOPs
and also counts elementwise work (norms, softmax, GELU), which adds well under 1% at ViT sizes.
`gmacs_per_view` is XLA's count / 2, directly comparable with the papers' GFLOPs per view.
Nothing is allocated or run: the model is built abstractly and only lowered.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.config import VideoViTConfig
from vidmix.models.layers import unchunked
from vidmix.models.registry import build_model
from vidmix.models.stack import unrolled


def abstract_model(cfg) -> nnx.Module:
    """The model of `cfg` (any family) with shape-only parameters: no memory, no init work."""
    return nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))


def xla_flops(cfg: VideoViTConfig, fn: Callable | None = None, batch: int = 1) -> float:
    """FLOPs XLA counts for `fn(model, video)` (default: the full forward pass) on one batch."""
    fn = fn or (lambda model, video: model(video))
    graphdef, state = nnx.split(abstract_model(cfg))
    video = jax.ShapeDtypeStruct((batch, cfg.num_frames, *cfg.image_hw, 3), jnp.float32)
    # XLA counts a loop body once: count long attention in its dense form, and every layer.
    # Lowered for the CPU whatever the backend: the count does not depend on where it would run.
    with unchunked(), unrolled():
        lowered = jax.jit(lambda s, v: fn(nnx.merge(graphdef, s), v)).trace(state, video).lower(
            lowering_platforms=("cpu",))
    cost = lowered.cost_analysis()
    if cost is None:  # jax 0.11 has none before compiling, and a compiled count is not this one
        raise RuntimeError(f"jax {jax.__version__} gives no cost analysis of a lowered module: "
                           "count FLOPs with the jax in requirements.txt")
    return float(cost["flops"])


def gmacs_per_view(cfg: VideoViTConfig, fn: Callable | None = None) -> float:
    """Giga multiply-adds for one clip (one view): the papers' "GFLOPs per view"."""
    return xla_flops(cfg, fn) / 2e9


def count_params(cfg: VideoViTConfig) -> int:
    """Number of parameters of the model `cfg` describes (from shapes; nothing is allocated)."""
    state = nnx.state(abstract_model(cfg), nnx.Param)
    return sum(int(x.size) for x in jax.tree.leaves(state))


def backbone_only(model, video):
    """For `xla_flops(cfg, backbone_only)`: the backbone's cost without the head."""
    return model.backbone(video)

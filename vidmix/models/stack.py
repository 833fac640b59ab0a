"""A stack of layers of one structure (or of a repeating group of structures), run as one
scanned layer.

The layers' parameters are stacked on a leading layer axis (attribute `stacked`: state paths
`.../blocks/stacked/...` carry that axis) and the stack runs as one `jax.lax.scan` over it: one
traced and compiled layer body whatever the depth, so compile time stays flat in depth, and
rematerialisation applied to the scanned body does what it promises. Layers that alternate
between structures are scanned in groups (a Swin stage: pairs of a window and a shifted-window
block, `stacked/0/...` and `stacked/1/...`), the layers past the last whole group run after the
scan by the same body (`tail/...`, no layer axis). Per-layer `jax.checkpoint` in an unrolled
Python loop saves nothing: XLA's scheduler undoes it (measured on a 12-layer MLP stack: 2,043 MiB
peak temporary memory unrolled, 2,031 with per-layer checkpoints, 321 scanned with a checkpointed
body).

The layers are built one by one, exactly as an unrolled stack would be (same random draws), then
stacked, so a fresh model's values do not depend on whether its layers are scanned. Checkpoint
code sees the stack as per-layer names (`blocks/0/...`, `blocks/1/...`: `LayerStack.layer_paths`,
`vidmix.checkpoints.mapping`), and the sharding code leaves the layer axis unsplit
(`vidmix.training.mesh`).
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import nnx

from vidmix.models.layers import capturing, switched_on

STACK_AXIS = "stacked"  # the attribute (and state path element) of stacked layer parameters

# remat policy name -> what the backward pass keeps from the forward (jax.checkpoint policies)
REMAT_POLICIES = {
    "none": None,  # no rematerialisation: everything the backward needs is kept
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
    # keep matmul outputs without batch dimensions (the weight-like products); recompute the rest
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # keep every matmul output (attention scores included); recompute the elementwise work
    "dots_all": jax.checkpoint_policies.checkpoint_dots,
}


_UNROLLED = contextvars.ContextVar("vidmix_unrolled_stacks", default=False)


def unrolled() -> contextlib.AbstractContextManager:
    """Within this context (read when a function is traced), stacks unroll their scan: for
    cost analysis, since XLA counts a loop body once, not once per layer."""
    return switched_on(_UNROLLED)


def scan_unroll(value) -> str | int | bool:
    """A stack's `unroll` option, checked: "auto", True (every layer), or a positive number of
    layers per step of the compiled loop (1: a loop over the layers)."""
    if value == "auto" or value is True or (isinstance(value, int) and not isinstance(value, bool)
                                           and value >= 1):
        return value
    raise ValueError(f"scan_unroll must be 'auto', True or a positive integer, got {value!r}")


def remat_policy(value) -> str:
    """A remat option as a policy name: True/False (older configs) mean "full"/"none"."""
    if value is True or value is False:
        return "full" if value else "none"
    if value not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {', '.join(map(repr, REMAT_POLICIES))} "
                         f"(or True/False), got {value!r}")
    return value


class LayerGroup(nnx.Module):
    """Consecutive layers of different structure run as one step of a `LayerStack`: layer 0,
    then layer 1, ..., each taking the same extra arguments.

    The layers are attributes "0", "1", ... (string names: an `nnx.List`'s integer keys cannot
    be merged beside the string keys `nnx.capture` adds to every module).
    """

    def __init__(self, layers: list[nnx.Module]):
        self.size = len(layers)
        for k, layer in enumerate(layers):
            setattr(self, str(k), layer)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: int) -> nnx.Module:
        return getattr(self, str(k))

    def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
        for k in range(self.size):
            x = self[k](x, *args, **kwargs)
        return x


class LayerStack(nnx.Module):
    """`layers` (built separately) as one stack run by a scan.

    `stack(x, *args, **kwargs)` applies layer 0, 1, ... to x: `layer(x, *args, **kwargs)`; args
    are arrays every layer takes as they are (e.g. a mask), kwargs are static (e.g. `train=`).

    `group`: how many consecutive layers make one step of the scan. Layers whose structure
    alternates (a Swin stage: window attention, then shifted-window attention) are scanned over
    groups: steps of `group` layers, all of one structure (a `LayerGroup`). Layers past the last
    whole group (an odd Swin stage's last block) form a shorter group, `tail`, run after the scan
    by the same body (its parameters carry no layer axis).

    `stack[i]` is a copy of layer i (for reading its weights), `len(stack)` the number of layers.
    Under `layers.capture_attention()` the stack sows `layers`: a list with, for every layer in
    order, the values it sowed.
    """

    def __init__(self, layers: list[nnx.Module], *, group: int = 1, remat="none",
                 unroll="auto"):
        if not layers:
            raise ValueError("a LayerStack needs at least one layer")
        if not isinstance(group, int) or group < 1:
            raise ValueError(f"a LayerStack's group must be a positive integer, got {group!r}")
        self.depth, self.group, self.remat = len(layers), group, remat_policy(remat)
        self.unroll = scan_unroll(unroll)
        self.steps = len(layers) // group  # whole groups, scanned
        steps = [self._step_module(layers[i * group:(i + 1) * group]) for i in range(self.steps)]
        self.stacked = _stack(steps) if steps else nnx.data(None)
        tail = layers[self.steps * group:]
        self.tail = LayerGroup(tail) if tail else nnx.data(None)

    def _step_module(self, layers: list[nnx.Module]) -> nnx.Module:
        return layers[0] if self.group == 1 else LayerGroup(layers)

    def __len__(self) -> int:
        return self.depth

    def __getitem__(self, i: int) -> nnx.Module:
        if not -self.depth <= i < self.depth:
            raise IndexError(f"layer {i} of a stack of {self.depth}")
        step, k = divmod(i % self.depth, self.group)
        if step == self.steps:
            return nnx.clone(self.tail[k])
        graphdef, state = nnx.split(self.stacked)
        module = nnx.merge(graphdef, jax.tree.map(lambda a: a[step], state))
        return module if self.group == 1 else module[k]

    def __iter__(self) -> Iterator[nnx.Module]:
        return (self[i] for i in range(self.depth))

    def layer_paths(self, path: tuple) -> list[tuple[tuple, int | None]]:
        """The per-layer names of the state at `path` (relative to the stack): [(name relative
        to the stack, index on the layer axis)], one per layer; index None: no layer axis.

        `stacked/<rest>` (group 1) or `stacked/<k>/<rest>` is layer `step·group + k`'s `<rest>`
        for every step; `tail/<k>/<rest>` is layer `steps·group + k`'s.
        """
        if path[0] == STACK_AXIS:
            k, rest = (0, path[1:]) if self.group == 1 else (int(path[1]), path[2:])
            return [((step * self.group + k, *rest), step) for step in range(self.steps)]
        if path[0] == "tail":
            return [((self.steps * self.group + int(path[1]), *path[2:]), None)]
        raise ValueError(f"{path} is not a layer's state")

    def __call__(self, x: jax.Array, *args: jax.Array, **kwargs) -> jax.Array:
        sown = []
        if self.stacked is not None:
            x, step_sown = self._scan(self.stacked, x, args, kwargs, stacked=True)
            sown += self._per_layer(step_sown, self.steps, self.group)
        if self.tail is not None:
            x, tail_sown = self._scan(self.tail, x, args, kwargs, stacked=False)
            sown += self._per_layer(tail_sown, 1, len(self.tail))
        if capturing():
            self.sow(nnx.Intermediate, "layers", sown)
        return x

    def _scan(self, module: nnx.Module, x: jax.Array, args: tuple, kwargs: dict, *,
              stacked: bool):
        """Runs `module` (a stack of steps, or one unstacked step) over x with a pure
        `jax.lax.scan`: (output, what the steps sowed, stacked over the steps, or None).

        A pure scan over the state (merged into a fresh module each step), rather than
        `nnx.scan`, works inside any JAX transform, e.g. a plain `jax.grad` of a merged model,
        whose parameters and random state sit at different trace levels. In training, random
        streams advance in every layer and are written back.
        """
        capture = capturing()
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        if not stacked:  # one step: a layer axis of length 1 for the scan
            params, rest = jax.tree.map(lambda a: a[None], (params, rest))

        def body(carry, state):
            layer = nnx.merge(graphdef, *state)
            if capture:  # what the layers sow, collected per step, gathered over the steps
                y, sown = nnx.capture(lambda m, c: m(c, *args, **kwargs),
                                      nnx.Intermediate)(layer, carry)
                sown = nnx.to_pure_dict(sown)
            else:
                y, sown = layer(carry, *args, **kwargs), None
            return y, (nnx.state(layer, nnx.Not(nnx.Param)), sown)

        length = self.steps if stacked else 1
        unroll = self.unrolled_steps(length)
        # prevent_cse=False is safe only in a loop (JAX's docs): unrolled, XLA's CSE could merge
        # the recomputation back into the forward pass and keep the activations after all
        if self.remat != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[self.remat],
                                  prevent_cse=unroll > 1)
        x, (rest, sown) = jax.lax.scan(body, x, (params, rest), unroll=unroll)
        if not stacked:
            rest = jax.tree.map(lambda a: a[0], rest)
        if kwargs.get("train", False):  # evaluation draws nothing: no state to write back
            nnx.update(module, rest)
        return x, sown

    def unrolled_steps(self, length: int) -> int:
        """How many of the scan's `length` steps each iteration of the compiled loop runs.

        Unrolled, XLA compiles straight-line code and keeps no stacked per-layer buffers for the
        loop to copy activations and gradients into and out of. On an H100 that made an
        XViT-B/16 bf16 train step 1.49x faster with 41% less temporary memory (partial unrolls,
        2 or 4 layers per iteration, gained nothing), and with remat it kept the same memory; on
        a CPU it was 1.11x faster, but with remat XLA's CPU compiler then keeps the activations
        the remat was to drop (XViT-B, remat "full": 3.2 GiB of temporaries instead of 0.9).
        So "auto" unrolls every step except with remat on the CPU, for about twice the compile
        time (docs/benchmarks.md, GPU section, "Where the step's time goes").
        """
        if _UNROLLED.get():
            return length
        unroll = self.unroll
        if unroll == "auto":  # read at trace time: the backend the step is compiled for
            unroll = self.remat == "none" or jax.default_backend() != "cpu"
        return length if unroll is True else min(unroll, length)

    def _per_layer(self, sown, steps: int, size: int) -> list:
        """What each layer sowed, in order, from what `steps` scanned steps of `size` layers
        sowed (gathered over the steps)."""
        if sown is None:
            return []
        if self.group == 1:  # the step is the layer itself
            sown = {"0": sown}
        return [jax.tree.map(operator.itemgetter(step), sown.get(str(k), {}))
                for step in range(steps) for k in range(size)]


def _stack(modules: list[nnx.Module]) -> nnx.Module:
    """One module of `modules`' common structure, its state stacked on a leading axis."""
    graphdefs, states = zip(*(nnx.split(m) for m in modules), strict=True)
    if any(g != graphdefs[0] for g in graphdefs[1:]):
        raise ValueError("the layers of a LayerStack must have the same structure (in every "
                         "group, layer by layer)")
    return nnx.merge(graphdefs[0], jax.tree.map(lambda *xs: jnp.stack(xs), *states))

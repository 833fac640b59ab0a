"""Scanned layer stacks: per-layer names for checkpoints, remat policies that keep the gradients
and save memory, an unsplit layer axis on the mesh, and decay masks that see each layer's rank."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from test_main import ROOT

import vidmix
from vidmix.checkpoints.mapping import flat_params, param_paths, unstack
from vidmix.models.stack import REMAT_POLICIES, LayerStack, remat_policy
from vidmix.training.mesh import make_mesh, state_shardings
from vidmix.training.optim import decay_mask
from vidmix.training.steps import make_train_step, split_model

TINY = dict(width=32, depth=3, num_heads=2, patch_size=8, image_size=16, num_frames=4,
            num_classes=3, head="linear")


def tiny(**kw):
    return vidmix.create_model("xvit_b16", **{**TINY, **kw}, rngs=nnx.Rngs(0))


def test_layers_are_stacked_and_named_per_layer():
    model = tiny(attention="divided")
    kernel = model.backbone.blocks.stacked.attn.qkv.kernel
    assert kernel.shape == (3, 32, 96)  # (layers, in, out)
    names = param_paths(model)
    assert names["backbone/blocks/2/attn/qkv/kernel"] == (32, 96)
    assert names["backbone/blocks/0/temporal_fc/bias"] == (32,)
    assert not [n for n in names if "stacked" in n]
    # stack[i] is layer i, and the per-layer view holds the same arrays
    assert len(model.backbone.blocks) == 3
    np.testing.assert_array_equal(model.backbone.blocks[2].attn.qkv.kernel[...], kernel[...][2])
    flat = flat_params(model)
    np.testing.assert_array_equal(flat["backbone/blocks/1/attn/qkv/kernel"], kernel[...][1])
    # a train state's stacked names unstack to the same per-layer names
    state = {"/".join(map(str, p)): np.asarray(v[...])
             for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert set(unstack(model, state)) == set(names)


def test_layers_start_as_an_unrolled_stack_would():
    # built one by one with the same random draws, then stacked: layer i differs from layer j
    model = tiny()
    k = np.asarray(model.backbone.blocks.stacked.mlp.fc1.kernel[...])
    assert not np.allclose(k[0], k[1])
    again = np.asarray(tiny().backbone.blocks.stacked.mlp.fc1.kernel[...])
    np.testing.assert_array_equal(k, again)


def test_a_stack_needs_layers_of_one_structure():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="same structure"):
        LayerStack([nnx.Linear(2, 3, rngs=rngs), nnx.Linear(2, 4, use_bias=False, rngs=rngs)])
    with pytest.raises(ValueError, match="at least one layer"):
        LayerStack([])


def test_remat_option_names_a_policy():
    assert remat_policy(True) == "full" and remat_policy(False) == "none"
    assert tiny(remat=True).config.remat == "full"
    with pytest.raises(ValueError, match="remat must be one of"):
        tiny(remat="some")


def scan_unrolls(model, video) -> list[int]:
    """The `unroll` of every scan in the jaxpr of the model's forward pass."""
    graphdef, state = nnx.split(model)
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                found.append(eqn.params["unroll"])
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr | jax.extend.core.Jaxpr):
                        walk(getattr(sub, "jaxpr", sub))

    walk(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(video))(state).jaxpr)
    return found


@pytest.mark.parametrize("option,remat,backend,unroll", [
    (1, "none", "cpu", 1), (2, "none", "cpu", 2), (5, "none", "cpu", 3), (True, "full", "cpu", 3),
    ("auto", "none", "cpu", 3), ("auto", "full", "cpu", 1), ("auto", "full", "gpu", 3),
    ("auto", "dots", "tpu", 3)])
def test_scan_unroll_sets_how_the_loop_over_layers_is_compiled(option, remat, backend, unroll,
                                                               monkeypatch):
    """scan_unroll: layers per iteration of the compiled loop (at most all 3); "auto" unrolls
    every layer except with remat on a CPU (where XLA would keep the activations anyway),
    decided when the step is traced, for the backend it is traced for."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    model = tiny(scan_unroll=option, remat=remat)
    assert scan_unrolls(model, jnp.zeros((1, 4, 16, 16, 3))) == [unroll]


@pytest.mark.parametrize("value", [0, -1, 1.5, "yes", False, None])
def test_scan_unroll_rejects_what_it_cannot_mean(value):
    with pytest.raises(ValueError, match="scan_unroll must be 'auto', True or a positive"):
        tiny(scan_unroll=value)


def assert_remat_keeps_loss_and_gradients(make, policies=REMAT_POLICIES, image=16,
                                          reference="none"):
    """One real train step (stochastic depth and dropout on, as `make(remat=...)` sets them) with
    every policy gives the loss and updated parameters of `reference` ("none")."""
    video = jax.random.normal(jax.random.key(1), (2, 4, image, image, 3))
    batch = {"video": video, "label": jnp.array([0, 2]), "mask": jnp.ones(2)}

    def grads(policy):
        graphdef, params, rest = split_model(make(remat=policy))
        step = make_train_step(graphdef, optax.sgd(0.1), num_classes=3, stochastic=True)
        state = {"params": params, "opt_state": optax.sgd(0.1).init(params),
                 "step": jnp.zeros((), jnp.int32)}
        new, metrics = jax.jit(step)(state, batch, rest)
        return metrics["loss"], jax.tree.leaves(new["params"])

    ref_value, ref = grads(reference)
    for policy in policies:
        value, g = grads(policy)
        assert value == pytest.approx(float(ref_value), rel=1e-6), policy
        for a, b in zip(g, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=policy)


@pytest.mark.parametrize("attention", ["mixing", "divided"])
def test_remat_policies_keep_loss_and_gradients(attention):
    assert_remat_keeps_loss_and_gradients(
        lambda **kw: tiny(attention=attention, drop_path_rate=0.3, **kw))


@pytest.mark.parametrize("family", ["xvit", "pst", "vtn"])
def test_unrolled_loops_keep_loss_and_gradients(family):
    """A train step (stochastic depth and dropout on: the random streams run through the loop)
    gives the same loss and parameters whatever the unroll, remat or not; PST's stages scan
    pairs of blocks and run a tail block after the loop."""
    make = {"xvit": lambda **kw: tiny(drop_path_rate=0.3, **kw),
            "pst": lambda **kw: pst(dropout_rate=0.1, **kw),
            "vtn": lambda **kw: vtn(dropout_rate=0.1, **kw)}[family]
    image = make().config.image_size
    for policy in ("none", "full"):  # the helper passes each (policy, unroll) pair as `remat`
        assert_remat_keeps_loss_and_gradients(
            lambda remat, **kw: make(remat=remat[0], scan_unroll=remat[1], **kw),
            [(policy, 2), (policy, True)], image, reference=(policy, 1))


@pytest.mark.slow
def test_full_remat_uses_a_third_of_the_memory():
    """XLA's temporary memory of a compiled train step: "full" remat on the scanned blocks keeps
    at most a third of what no remat keeps (unrolled, per-block remat saved nothing)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from scan import temp_mib, train_step

    kw = dict(width=128, depth=6, num_heads=4, patch_size=8, frames=8, image=64, batch=2)
    none, _, _ = train_step("xvit_b16", remat="none", **kw)
    full, _, _ = train_step("xvit_b16", remat="full", **kw)
    assert temp_mib(full) <= temp_mib(none) / 3, (temp_mib(full), temp_mib(none))


def test_layer_axis_is_never_split_over_fsdp():
    model = tiny(width=64, num_heads=2)
    _, params, _ = split_model(model)
    mesh = make_mesh(-1, 2, jax.devices()[:2])
    specs = state_shardings(jax.eval_shape(lambda: params), mesh, min_size=1)
    flat = {"/".join(map(str, p)): v.spec for p, v in nnx.to_flat_state(specs)}
    assert flat["backbone/blocks/stacked/attn/qkv/kernel"] == jax.sharding.PartitionSpec(
        None, None, "fsdp")  # (layers, 64, 192): the largest axis of each layer's kernel
    assert flat["backbone/blocks/stacked/norm1/scale"][0] is None


def test_matrices_decay_mask_sees_each_layers_rank():
    _, params, _ = split_model(tiny())
    leaves = jax.tree_util.tree_flatten_with_path(decay_mask(params, "matrices"))[0]
    mask = {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
            .removesuffix("/value"): v for p, v in leaves}
    assert mask["backbone/blocks/stacked/attn/qkv/kernel"]
    assert not mask["backbone/blocks/stacked/attn/qkv/bias"]  # (layers, 96): a stack of biases
    assert not mask["backbone/blocks/stacked/norm1/scale"]


def test_loading_names_every_missing_layer():
    model = tiny()
    tensors = {k: np.asarray(v) for k, v in flat_params(model).items()}
    del tensors["backbone/blocks/1/mlp/fc2/bias"]
    from vidmix.checkpoints.errors import CheckpointMismatchError
    from vidmix.checkpoints.pretrained import load_folder_tensors

    other = tiny()
    before = np.asarray(other.backbone.blocks.stacked.mlp.fc2.bias[...]).copy()
    with pytest.raises(CheckpointMismatchError, match="backbone/blocks/1/mlp/fc2/bias"):
        load_folder_tensors(other, {k: v + 1 for k, v in tensors.items()})
    np.testing.assert_array_equal(other.backbone.blocks.stacked.mlp.fc2.bias[...], before)
    # ignoring one layer's tensor keeps that layer's value and loads the others
    load_folder_tensors(other, {k: v + 1 for k, v in tensors.items()},
                        ignore=("backbone/blocks/1/mlp/fc2/bias",))
    loaded = np.asarray(other.backbone.blocks.stacked.mlp.fc2.bias[...])
    np.testing.assert_array_equal(loaded[1], before[1])
    np.testing.assert_allclose(loaded[0], before[0] + 1)
    assert jnp.asarray(loaded).shape == (3, 32)


@pytest.mark.parametrize("name,kw", [
    ("vtn_vit_b16", dict(width=32, depth=1, num_heads=2, patch_size=8, image_size=16,
                         num_frames=4, num_classes=3, temporal_heads=2, temporal_mlp_dim=64,
                         attention_window=2)),
    ("pst_tiny", dict(embed_dim=16, depths=(2,), num_heads=(2,), window_size=2, image_size=16,
                      num_frames=4, num_classes=3))])
def test_other_families_take_remat_policies(name, kw):
    """VTN and PST take the same policy names (applied to their scanned Swin stages and
    Longformer layers), and "none" means no remat (a non-empty string is not True)."""
    video = jax.random.normal(jax.random.key(2), (2, 4, 16, 16, 3))
    outs = {}
    for policy in ("none", "full"):
        model = vidmix.create_model(name, remat=policy, rngs=nnx.Rngs(0), **kw)
        assert model.config.remat == policy
        graphdef, params, rest = split_model(model)
        step = make_train_step(graphdef, optax.sgd(0.1), num_classes=3)
        state = {"params": params, "opt_state": optax.sgd(0.1).init(params),
                 "step": jnp.zeros((), jnp.int32)}
        batch = {"video": video, "label": jnp.array([0, 2]), "mask": jnp.ones(2)}
        outs[policy] = jax.tree.leaves(jax.jit(step)(state, batch, rest)[0]["params"])
    for a, b in zip(outs["full"], outs["none"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_plain_jax_grad_of_a_merged_model():
    """The functional pattern (split once, merge inside jax.grad) works through the stack, with
    the random state passed in or closed over, as it did with unrolled blocks."""
    model = tiny(drop_path_rate=0.2, dropout_rate=0.1)
    graphdef, params, rest = split_model(model)
    video = jax.random.normal(jax.random.key(3), (2, 4, 16, 16, 3))

    def loss(p, r):  # on the features: the fresh classifier is zero
        return (nnx.merge(graphdef, p, r).features(video) ** 2).sum()

    passed = jax.jit(jax.grad(loss))(params, rest)
    closed = jax.jit(jax.grad(lambda p: loss(p, rest)))(params)
    for a, b in zip(jax.tree.leaves(passed), jax.tree.leaves(closed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(passed))


# Groups of layers, an unstacked tail, extra arguments -----------------------------------------
class Scaled(nnx.Module):
    """A toy layer of one of two structures (with or without a bias), taking an extra array."""

    def __init__(self, bias: bool, rngs):
        self.linear = nnx.Linear(4, 4, use_bias=bias, rngs=rngs)

    def __call__(self, x, scale, *, shift=0.0):
        return jnp.tanh(self.linear(x) * scale + shift)


def test_a_stack_scans_groups_and_runs_the_tail_after():
    rngs = nnx.Rngs(0)
    layers = [Scaled(i % 2 == 0, rngs) for i in range(5)]  # alternating structures, odd depth
    copies = [nnx.clone(layer) for layer in layers]
    stack = LayerStack(layers, group=2)
    assert len(stack) == 5 and stack.steps == 2
    assert stack.stacked["0"].linear.kernel.shape == (2, 4, 4)  # layers 0 and 2
    assert stack.tail["0"].linear.kernel.shape == (4, 4)  # layer 4, no layer axis
    x = jax.random.normal(jax.random.key(0), (3, 4))
    scale = jnp.array([0.5, 1.0, 2.0, -1.0])
    want = x
    for i, layer in enumerate(copies):
        want = layer(want, scale, shift=0.1)
        np.testing.assert_array_equal(stack[i].linear.kernel[...], layer.linear.kernel[...])
    np.testing.assert_allclose(stack(x, scale, shift=0.1), want, rtol=1e-6, atol=1e-6)
    assert stack.layer_paths(("stacked", "1", "linear", "kernel")) == [
        ((1, "linear", "kernel"), 0), ((3, "linear", "kernel"), 1)]
    assert stack.layer_paths(("tail", "0", "linear", "bias")) == [((4, "linear", "bias"), None)]
    with pytest.raises(ValueError, match="same structure"):
        LayerStack([Scaled(i < 2, rngs) for i in range(4)], group=2)
    with pytest.raises(ValueError, match="group must be a positive integer"):
        LayerStack(layers, group=0)
    with pytest.raises(IndexError):
        stack[5]


# Swin stages and Longformer layers ------------------------------------------------------------
PST = dict(embed_dim=16, depths=(2, 3, 1), num_heads=(2, 2, 4), window_size=2, image_size=32,
           num_frames=4, num_classes=3, drop_path_rate=0.2)  # odd depths: a tail in 2 stages
VTN = dict(width=32, depth=1, num_heads=2, patch_size=8, image_size=16, num_frames=4,
           num_classes=3, temporal_layers=3, temporal_heads=2, temporal_mlp_dim=64,
           attention_window=2)


def pst(**kw):
    return vidmix.create_model("pst_tiny", rngs=nnx.Rngs(0), **{**PST, **kw})


def vtn(**kw):
    return vidmix.create_model("vtn_vit_b16", rngs=nnx.Rngs(0), **{**VTN, **kw})


def test_swin_stages_equal_their_blocks_one_by_one():
    model = pst()
    video = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))

    def unrolled_backbone(backbone, video):  # every block called on its own, in order
        x = backbone.patch_embed(video)
        for stage in backbone.layers:
            for block in stage.blocks:
                x = block(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return backbone.norm(x)

    scanned = nnx.jit(lambda m, v: m.feature_map(v))(model, video)
    unrolled = nnx.jit(unrolled_backbone)(model.backbone, video)
    np.testing.assert_array_equal(scanned, unrolled)
    # attention maps read every block's weights from the stacks, the tails' included
    maps = vidmix.attention_maps(model, video)
    assert [(i["stage"], i["block"]) for i in maps.block_info] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert maps.blocks[4]["window"].shape == (2, 2, 4, 2, 4, 4)  # 4x4 grid, 4 windows of 2x2


def test_longformer_layers_equal_the_layers_one_by_one():
    encoder = vtn().temporal
    x = jax.random.normal(jax.random.key(0), (2, 7, 32))
    positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
    valid = jnp.arange(7)[None] < jnp.array([[7], [5]])

    def unrolled_encoder(enc, x):  # LongformerEncoder.__call__ with its layers one by one
        h = enc.embeddings(x, positions, jnp.zeros((2, 7), jnp.int32))
        padded = -(-7 // enc.one_sided) * enc.one_sided
        h = jnp.pad(h, [(0, 0), (0, padded - 7), (0, 0)])
        ok = jnp.pad(valid, [(0, 0), (0, padded - 7)])
        for layer in enc.layers:
            h = layer(h, ok)
        return h[:, :7]

    scanned = nnx.jit(lambda e, v: e(v, position_ids=positions, valid=valid))(encoder, x)
    unrolled = nnx.jit(unrolled_encoder)(encoder, x)
    # not bitwise: XLA compiles the scanned body's arithmetic a little differently (4.8e-7 seen)
    np.testing.assert_allclose(scanned, unrolled, rtol=1e-6, atol=1e-6)


def test_swin_and_longformer_names_are_per_block_and_round_trip():
    model = pst()
    names = param_paths(model)
    for i, depth in enumerate(PST["depths"]):
        blocks = {int(n.split("/")[4]) for n in names if n.startswith(f"backbone/layers/{i}/")
                  and "/blocks/" in n}
        assert blocks == set(range(depth)), (i, blocks)
    assert names["backbone/layers/1/blocks/2/attn/qkv/kernel"] == (32, 96)  # the tail
    assert not [n for n in names if "stacked" in n or "tail" in n]
    names_vtn = param_paths(vtn())
    assert {n.split("/")[2] for n in names_vtn if n.startswith("temporal/layers/")} == {
        "0", "1", "2"}
    assert "temporal/layers/2/attention/query_global/kernel" in names_vtn
    from vidmix.checkpoints.pretrained import load_folder_tensors

    for make in (pst, vtn):  # per-layer tensors in, the same tensors out, and state names agree
        tensors = {k: np.asarray(v) + 1 for k, v in flat_params(make()).items()}
        model = load_folder_tensors(make(), tensors)
        loaded = flat_params(model)
        assert set(loaded) == set(tensors)
        for k, v in tensors.items():
            np.testing.assert_array_equal(loaded[k], v, err_msg=k)
        state = {"/".join(map(str, p)): np.asarray(v[...])
                 for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
        assert set(unstack(model, state)) == set(tensors)
    # stack[j] is block j, from the pairs or the tail
    stage = pst().backbone.layers[1]  # a 4x4 grid, windows of 2: shifted by 1
    assert [(b.shift, b.attn.temporal) for b in stage.blocks] == [
        (0, "channel"), (1, "patch"), (0, "channel")]
    np.testing.assert_array_equal(stage.blocks[2].mlp.fc1.kernel[...],
                                  stage.blocks.tail["0"].mlp.fc1.kernel[...])


def test_swin_layer_axis_is_unsplit_and_decay_masks_see_each_blocks_rank():
    _, params, _ = split_model(pst(embed_dim=32, num_heads=(2, 2, 2)))
    mesh = make_mesh(-1, 2, jax.devices()[:2])
    specs = state_shardings(jax.eval_shape(lambda: params), mesh, min_size=1)
    flat = {"/".join(map(str, p)): v.spec for p, v in nnx.to_flat_state(specs)}
    P = jax.sharding.PartitionSpec
    assert flat["backbone/layers/0/blocks/stacked/1/attn/qkv/kernel"] == P(None, None, "fsdp")
    assert flat["backbone/layers/1/blocks/tail/0/attn/qkv/kernel"] == P(None, "fsdp")
    leaves = jax.tree_util.tree_flatten_with_path(decay_mask(params, "matrices"))[0]
    mask = {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
            .removesuffix("/value"): v for p, v in leaves}
    assert mask["backbone/layers/0/blocks/stacked/0/attn/qkv/kernel"]
    assert not mask["backbone/layers/0/blocks/stacked/0/attn/qkv/bias"]
    assert mask["backbone/layers/1/blocks/tail/0/mlp/fc1/kernel"]
    assert not mask["backbone/layers/1/blocks/tail/0/norm1/scale"]


@pytest.mark.parametrize("make", [pst, vtn], ids=["pst", "vtn"])
def test_swin_and_longformer_remat_keeps_loss_and_gradients(make):
    image = make().config.image_size
    assert_remat_keeps_loss_and_gradients(lambda **kw: make(dropout_rate=0.1, **kw),
                                          ("full", "dots"), image)


def test_cost_analysis_counts_every_scanned_layer():
    from vidmix.models import model_config
    from vidmix.models.cost import xla_flops

    def flops(name, **kw):
        base = PST if name == "pst_tiny" else VTN
        return xla_flops(model_config(name, **{**base, **kw}))

    one, two, three = (flops("pst_tiny", depths=(d,), num_heads=(2,)) for d in (2, 4, 6))
    assert two > one  # (XLA counts a loop body once: without unrolling they would be equal)
    assert three - two == pytest.approx(two - one, rel=1e-3)  # a pair of blocks each time
    tail = flops("pst_tiny", depths=(5,), num_heads=(2,))
    assert tail - two == pytest.approx((three - two) / 2, rel=0.05)  # one block, the tail
    layers = [flops("vtn_vit_b16", temporal_layers=n) for n in (1, 2, 3)]
    assert layers[1] > layers[0]
    assert layers[2] - layers[1] == pytest.approx(layers[1] - layers[0], rel=1e-3)

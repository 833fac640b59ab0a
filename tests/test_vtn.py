"""VTN: the Longformer temporal encoder against `transformers.LongformerModel`, its banded
attention against the dense one and its cost against L², and the whole VTN against a reference
assembled from `transformers` (ViT per frame + Longformer + MLP head, the release's forward)."""

import functools
import logging
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err
from flax import nnx
from transformers import LongformerConfig, LongformerModel, ViTConfig, ViTForImageClassification

import vidmix
from vidmix.checkpoints import CheckpointMismatchError, detect_format
from vidmix.checkpoints.families.vtn import temporal_mapping
from vidmix.checkpoints.mapping import assign
from vidmix.models import model_config
from vidmix.models.cost import gmacs_per_view, xla_flops
from vidmix.models.layers import dot_product_attention
from vidmix.models.longformer import LongformerEncoder, banded_attention, dense_attention

D, HEADS, LAYERS, FFN, MAXPOS, CLASSES = 32, 4, 2, 64, 40, 5
CLS_ID, PAD_ID = MAXPOS - 2, MAXPOS - 1


def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights everywhere (norm scales and biases too), so that nothing is trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module.eval()


# Temporal encoder vs transformers.LongformerModel ---------------------------------------------
def hf_longformer(window: int, *, pad_token_id: int = PAD_ID, seed: int = 0) -> LongformerModel:
    torch.manual_seed(seed)
    cfg = LongformerConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                           intermediate_size=FFN, attention_window=[window] * LAYERS,
                           max_position_embeddings=MAXPOS, pad_token_id=pad_token_id,
                           vocab_size=MAXPOS, type_vocab_size=2, layer_norm_eps=1e-12)
    return perturb(LongformerModel(cfg, add_pooling_layer=False), seed)


def encoder_from(ref: LongformerModel, window: int, num_global: int = 1) -> LongformerEncoder:
    """A vidmix encoder holding `ref`'s weights, through the VTN checkpoint mapping."""
    holder = nnx.Module()
    holder.temporal = LongformerEncoder(D, num_layers=LAYERS, num_heads=HEADS, mlp_dim=FFN,
                                        attention_window=window, max_positions=MAXPOS,
                                        pad_position=PAD_ID, num_global=num_global,
                                        rngs=nnx.Rngs(1))
    tensors = {f"temporal_encoder.{k}": v.numpy() for k, v in ref.state_dict().items()
               if "word_embeddings" not in k}
    assign(holder, tensors, temporal_mapping(types.SimpleNamespace(temporal_layers=LAYERS)))
    return holder.temporal


def token_inputs(rng, batch: int, length: int, num_global: int = 1, lengths=None):
    """VTN-style encoder inputs: global tokens first (type 1, the [CLS] position id), then frames
    with time indices (wrapping past MAXPOS - 2); `lengths` pads each example's tail."""
    x = rng.standard_normal((batch, length, D)).astype(np.float32)
    frames = rng.integers(0, 3 * MAXPOS, (batch, length))
    valid = np.ones((batch, length), bool)
    for b, n in enumerate(lengths or [length] * batch):
        valid[b, n:] = False
    pos = np.where(valid, frames % CLS_ID, PAD_ID)
    pos[:, :num_global] = CLS_ID
    types_ = np.zeros((batch, length), np.int64)
    types_[:, :num_global] = 1
    return x, pos, types_, valid


@pytest.mark.parametrize("window,length,num_global,lengths", [
    (18, 251, 1, None),  # VTN's window (18) on 250 frames + [CLS]: padded to the window
    (6, 37, 1, [37, 25]),  # several blocks, a padded example in the batch
    (4, 16, 2, [16, 11]),  # two global tokens
])
def test_encoder_matches_transformers(rng, window, length, num_global, lengths):
    ref = hf_longformer(window)
    x, pos, types_, valid = token_inputs(rng, 2, length, num_global, lengths)
    attention_mask = valid.astype(np.int64)  # 0 padding, 1 local, 2 global
    attention_mask[:, :num_global] = 2
    with torch.no_grad():
        want = ref(inputs_embeds=torch.from_numpy(x), attention_mask=torch.from_numpy(attention_mask),
                   token_type_ids=torch.from_numpy(types_), position_ids=torch.from_numpy(pos)
                   ).last_hidden_state.numpy()
    enc = encoder_from(ref, window, num_global)
    got = np.asarray(encode(enc, jnp.asarray(x), jnp.asarray(pos), jnp.asarray(types_),
                            jnp.asarray(valid)))
    assert got.shape == want.shape
    err = rel_err(got[valid], want[valid])  # padded tokens' own outputs are not compared
    assert err <= 1e-5, err


@nnx.jit(static_argnames=("train", "dense"))
def encode(enc, x, pos, types_=None, valid=None, train=False, dense=False):
    return enc(x, position_ids=pos, token_type_ids=types_, valid=valid, train=train, dense=dense)


# Banded == dense ------------------------------------------------------------------------------
@pytest.mark.parametrize("length,one_sided,num_global", [(1, 2, 1), (7, 2, 1), (30, 3, 1),
                                                         (29, 9, 2), (40, 4, 3)])
def test_banded_equals_dense(rng, length, one_sided, num_global):
    q, k, v, qg, kg, vg = (jnp.asarray(rng.standard_normal((2, length, 3, 8)), jnp.float32)
                           for _ in range(6))
    valid = rng.random((2, length)) > 0.3
    valid[:, 0] = True
    valid = jnp.asarray(valid)
    kw = dict(one_sided=one_sided, num_global=num_global)
    dense = jax.jit(functools.partial(dense_attention, **kw))(q, k, v, qg, kg, vg, valid)
    banded = jax.jit(functools.partial(banded_attention, **kw))(q, k, v, qg, kg, vg, valid)
    assert rel_err(banded, dense) <= 1e-5


def test_dense_reference_is_the_longformer_pattern(rng):
    """The dense reference itself, against a hand-written loop over rows."""
    length, w, g = 11, 2, 1
    q, k, v, qg, kg, vg = (rng.standard_normal((1, length, 1, 4)) for _ in range(6))
    valid = np.ones((1, length), bool)
    valid[0, 7] = False
    got = np.asarray(dense_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v, qg, kg, vg)),
                                     jnp.asarray(valid), one_sided=w, num_global=g))

    def softmax_avg(query, keys, values, cols):
        s = np.array([query @ keys[j] for j in cols]) / 2.0  # sqrt(head_dim 4)
        p = np.exp(s - s.max())
        return (p / p.sum()) @ values[cols]

    for i in range(length):
        if i < g:
            cols = [j for j in range(length) if valid[0, j]]
            want = softmax_avg(qg[0, i, 0], kg[0, :, 0], vg[0, :, 0], cols)
        else:
            cols = [j for j in range(length) if valid[0, j] and (abs(i - j) <= w or j < g)]
            want = softmax_avg(q[0, i, 0], k[0, :, 0], v[0, :, 0], cols)
        assert rel_err(got[0, i, 0], want) <= 1e-5, i


def test_attend_with_dropout_path_matches_fused(rng):
    q, k, v = (jnp.asarray(rng.standard_normal((2, 5, 2, 4)), jnp.float32) for _ in range(3))
    mask = jnp.asarray(rng.random((2, 1, 5, 5)) > 0.4)
    assert rel_err(dot_product_attention(q, k, v, mask=mask, dropout=lambda p: p),
                   dot_product_attention(q, k, v, mask=mask)) <= 1e-6


def test_encoder_banded_equals_dense_and_trains(rng):
    enc = LongformerEncoder(D, num_layers=LAYERS, num_heads=HEADS, mlp_dim=FFN, attention_window=6,
                            max_positions=MAXPOS, pad_position=PAD_ID, dropout_rate=0.1,
                            attention_dropout_rate=0.1, rngs=nnx.Rngs(0))
    x, pos, types_, valid = token_inputs(rng, 2, 23, lengths=[23, 15])
    args = (jnp.asarray(x), jnp.asarray(pos), jnp.asarray(types_), jnp.asarray(valid))
    banded = encode(enc, *args)
    assert rel_err(banded, encode(enc, *args, dense=True)) <= 1e-5
    trained = encode(enc, *args, train=True)  # dropout active: differs, stays finite
    assert np.isfinite(np.asarray(trained)).all() and rel_err(trained, banded) > 1e-3


# Linear cost ----------------------------------------------------------------------------------
def small_encoder(**kw):
    return LongformerEncoder(16, num_layers=2, num_heads=2, mlp_dim=32, attention_window=18,
                             max_positions=MAXPOS, pad_position=PAD_ID, rngs=nnx.Rngs(0), **kw)


def lowered_encoder(length: int, dense: bool = False):
    graphdef, state = nnx.split(nnx.eval_shape(small_encoder))

    def run(s, x, pos):
        return nnx.merge(graphdef, s)(x, position_ids=pos, dense=dense)

    x = jax.ShapeDtypeStruct((1, length, 16), jnp.float32)
    pos = jax.ShapeDtypeStruct((1, length), jnp.int32)
    return jax.jit(run).lower(state, x, pos)


def test_encoder_cost_is_linear_in_length():
    flops = {n: lowered_encoder(n).cost_analysis()["flops"] for n in (1024, 2048, 4096)}
    assert flops[2048] / flops[1024] == pytest.approx(2.0, rel=0.05)
    assert flops[4096] / flops[2048] == pytest.approx(2.0, rel=0.05)
    # The dense masked computation is quadratic: the check above can tell them apart.
    dense = {n: lowered_encoder(n, dense=True).cost_analysis()["flops"] for n in (1024, 2048)}
    assert dense[2048] / dense[1024] > 3.0


def test_encoder_memory_is_linear_in_length():
    """Compiled scratch memory: ~2x per doubling (measured 2.2, 2.3, 2.0 from 1024 to 8192
    tokens, as XLA's buffer assignment varies), where the dense computation takes ~6x."""
    temp = lambda n, dense=False: lowered_encoder(n, dense).compile().memory_analysis(
        ).temp_size_in_bytes
    memory = {n: temp(n) for n in (1024, 4096)}
    assert memory[4096] / memory[1024] < 6.0  # linear: ~4-5; quadratic: ~16
    assert temp(2048, dense=True) / temp(1024, dense=True) > 4.0  # the check can fail


def test_long_sequence_runs(rng):
    enc = small_encoder()
    length = 4096
    x = jnp.asarray(rng.standard_normal((1, length, 16)), jnp.float32)
    pos = jnp.asarray(np.r_[CLS_ID, np.arange(length - 1) % CLS_ID][None])
    out = nnx.jit(lambda m, a, p: m(a, position_ids=p))(enc, x, pos)
    assert out.shape == (1, length, 16) and np.isfinite(np.asarray(out)).all()


# Whole VTN against transformers ViT + Longformer + a torch head -------------------------------
IMAGE, PATCH, WINDOW = 32, 8, 4
TINY = dict(width=D, depth=2, num_heads=HEADS, image_size=IMAGE, patch_size=PATCH,
            temporal_layers=LAYERS, temporal_heads=HEADS, temporal_mlp_dim=FFN,
            attention_window=WINDOW, max_positions=MAXPOS, num_classes=CLASSES, num_frames=4)


def tiny_vtn(**kw):
    return vidmix.create_model("vtn_vit_b16", **{**TINY, **kw})


@nnx.jit(static_argnames=("train",))
def forward(model, video, positions=None, mask=None, train=False):
    return model(video, positions=positions, mask=mask, train=train)


class Reference:
    """The release's VTN, assembled from `transformers` parts with random weights."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.vit = perturb(ViTForImageClassification(ViTConfig(
            image_size=IMAGE, patch_size=PATCH, hidden_size=D, num_hidden_layers=2,
            num_attention_heads=HEADS, intermediate_size=4 * D, num_labels=7,
            layer_norm_eps=1e-6)), seed)
        self.longformer = hf_longformer(WINDOW, pad_token_id=-1, seed=seed + 1)
        self.longformer.embeddings.word_embeddings = None  # as the release does
        self.cls_token = torch.randn(1, 1, D)
        self.mlp_head = perturb(torch.nn.Sequential(
            torch.nn.LayerNorm(D), torch.nn.Linear(D, D), torch.nn.GELU(), torch.nn.Dropout(0.5),
            torch.nn.Linear(D, CLASSES)), seed + 2)

    def frame_cls(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) -> the ViT's final-norm CLS features (timm's num_classes=0 output)."""
        with torch.no_grad():
            out = self.vit.vit(pixel_values=torch.from_numpy(frames).permute(0, 3, 1, 2))
        return out.last_hidden_state[:, 0].numpy()

    def logits(self, video: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The release's forward: CLS per frame, [CLS] first with mask 2 (global), padding to a
        multiple of 2 x window, position ids mod (max - 2), [CLS] max - 2, padding max - 1."""
        b, t = video.shape[:2]
        x = torch.from_numpy(self.frame_cls(video.reshape(b * t, *video.shape[2:]))).view(b, t, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        mask = torch.ones(b, t + 1, dtype=torch.long)
        mask[:, 0] = 2
        pad = (2 * WINDOW - (t + 1) % (2 * WINDOW)) % (2 * WINDOW)
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
        pos = torch.nn.functional.pad(torch.from_numpy(positions).long(), (1, pad))
        pos = pos % (MAXPOS - 2)
        pos[:, 0] = MAXPOS - 2
        pos[mask == 0] = MAXPOS - 1
        types_ = torch.zeros(b, t + 1 + pad, dtype=torch.long)
        types_[:, 0] = 1
        with torch.no_grad():
            h = self.longformer(inputs_embeds=x, attention_mask=mask, token_type_ids=types_,
                                position_ids=pos).last_hidden_state
            return self.mlp_head(h[:, 0]).numpy()

    def official_state(self) -> dict[str, torch.Tensor]:
        """The state dict under the release's names (timm ViT under `backbone.`)."""
        sd = {}
        hf = self.vit.vit.state_dict()
        e = "embeddings."
        sd.update({"backbone.cls_token": hf[e + "cls_token"],
                   "backbone.pos_embed": hf[e + "position_embeddings"],
                   "backbone.patch_embed.proj.weight": hf[e + "patch_embeddings.projection.weight"],
                   "backbone.patch_embed.proj.bias": hf[e + "patch_embeddings.projection.bias"],
                   "backbone.norm.weight": hf["layernorm.weight"],
                   "backbone.norm.bias": hf["layernorm.bias"]})
        for i in range(2):
            s, t = self._vit_layer_names(hf, i), f"backbone.blocks.{i}."
            sd[t + "attn.qkv.weight"] = torch.cat([hf[s["q"] + ".weight"], hf[s["k"] + ".weight"],
                                                   hf[s["v"] + ".weight"]])
            sd[t + "attn.qkv.bias"] = torch.cat([hf[s["q"] + ".bias"], hf[s["k"] + ".bias"],
                                                 hf[s["v"] + ".bias"]])
            for ours, theirs in (("norm1", "ln1"), ("attn.proj", "proj"), ("norm2", "ln2"),
                                 ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
                for kind in ("weight", "bias"):
                    sd[f"{t}{ours}.{kind}"] = hf[f"{s[theirs]}.{kind}"]
        sd["cls_token"] = self.cls_token
        sd.update({f"temporal_encoder.{k}": v for k, v in self.longformer.state_dict().items()})
        # transformers 4.x (the release's) also saved the position-ids buffer
        sd["temporal_encoder.embeddings.position_ids"] = torch.arange(MAXPOS)[None]
        sd.update({f"mlp_head.{k}": v for k, v in self.mlp_head.state_dict().items()})
        return {k: v.clone() for k, v in sd.items()}

    @staticmethod
    def _vit_layer_names(hf, i) -> dict[str, str]:
        """transformers 4 (`encoder.layer.i.attention.attention.query`) or 5 (`layers.i...`)."""
        if f"encoder.layer.{i}.layernorm_before.weight" in hf:
            p = f"encoder.layer.{i}."
            return dict(q=p + "attention.attention.query", k=p + "attention.attention.key",
                        v=p + "attention.attention.value", proj=p + "attention.output.dense",
                        ln1=p + "layernorm_before", ln2=p + "layernorm_after",
                        fc1=p + "intermediate.dense", fc2=p + "output.dense")
        p = f"layers.{i}."
        return dict(q=p + "attention.q_proj", k=p + "attention.k_proj", v=p + "attention.v_proj",
                    proj=p + "attention.o_proj", ln1=p + "layernorm_before",
                    ln2=p + "layernorm_after", fc1=p + "mlp.fc1", fc2=p + "mlp.fc2")


@pytest.fixture(scope="module")
def reference():
    return Reference()


@pytest.fixture(scope="module")
def official_file(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("vtn") / "vtn_official.pyth"
    torch.save({"model_state": reference.official_state(), "epoch": 25}, path)
    return path


@pytest.fixture(scope="module")
def loaded(official_file):
    return vidmix.load_weights(tiny_vtn(), official_file)


def test_official_checkpoint_reproduces_the_release(reference, official_file, loaded, caplog):
    rng = np.random.default_rng(1)
    video = rng.standard_normal((2, 9, IMAGE, IMAGE, 3)).astype(np.float32)
    positions = np.stack([np.arange(9) * 8, 30 + np.arange(9) * 5])  # wraps past MAXPOS - 2
    want = reference.logits(video, positions)
    got = np.asarray(forward(loaded, jnp.asarray(video), jnp.asarray(positions)))
    assert rel_err(got, want) <= 1e-5, rel_err(got, want)
    assert detect_format(reference.official_state()) == "vtn"
    with caplog.at_level(logging.WARNING):
        vidmix.load_weights(tiny_vtn(), official_file)
    assert "temporal_encoder.embeddings.position_ids" in caplog.text


def test_official_checkpoint_with_other_classes_gets_a_new_classifier(official_file, caplog):
    with caplog.at_level(logging.WARNING):
        model = vidmix.load_weights(tiny_vtn(num_classes=3), official_file)
    assert "mlp_head.4.weight" in caplog.text and "new classifier" in caplog.text
    assert not np.any(np.asarray(model.head.classifier.kernel[...]))  # fresh (zeros)
    assert np.any(np.asarray(model.head.pre_logits.kernel[...]))


def test_imagenet_vit_fills_the_backbone(reference, tmp_path, caplog):
    reference.vit.save_pretrained(tmp_path / "vit")
    model = tiny_vtn()
    fresh = {n: np.asarray(v) for n, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
             if n[0] != "backbone"}
    with caplog.at_level(logging.WARNING):
        vidmix.load_weights(model, tmp_path / "vit" / "model.safetensors")
    assert "classifier.bias" in caplog.text or "head.bias" in caplog.text
    assert "VTN has a head of its own" in caplog.text
    frames = np.random.default_rng(2).standard_normal((2, 3, IMAGE, IMAGE, 3)).astype(np.float32)
    got = np.asarray(nnx.jit(lambda m, v: m.frame_features(v))(model, jnp.asarray(frames)))
    want = reference.frame_cls(frames.reshape(6, IMAGE, IMAGE, 3)).reshape(2, 3, D)
    assert rel_err(got, want) <= 1e-5
    after = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for name, value in fresh.items():  # [CLS], temporal encoder, head: their fresh init
        np.testing.assert_array_equal(np.asarray(after[name]), value)


def test_mismatched_checkpoint_names_every_key(reference, tmp_path):
    sd = reference.official_state()
    del sd["temporal_encoder.encoder.layer.1.attention.self.key_global.weight"]
    sd["temporal_encoder.encoder.layer.1.attention.self.extra.weight"] = torch.zeros(2)
    sd["cls_token"] = torch.zeros(1, 1, D + 1)
    torch.save(sd, tmp_path / "bad.pth")
    model = tiny_vtn()
    before = np.asarray(model.cls_token[...]).copy()
    with pytest.raises(CheckpointMismatchError) as err:
        vidmix.load_weights(model, tmp_path / "bad.pth")
    msg = str(err.value)
    assert "layer.1.attention.self.key_global.weight" in msg
    assert "layer.1.attention.self.extra.weight" in msg
    assert "cls_token" in msg and "shape mismatch" in msg
    np.testing.assert_array_equal(np.asarray(model.cls_token[...]), before)  # untouched
    with pytest.raises(CheckpointMismatchError, match=r"encoder\.layer\.1\."):
        vidmix.load_weights(tiny_vtn(temporal_layers=1), tmp_path / "bad.pth", ignore=("*extra*",))


# Any T, positions, masks ------------------------------------------------------------------------
def test_any_number_of_frames_and_chunks(loaded, official_file):
    rng = np.random.default_rng(3)
    chunked = vidmix.load_weights(tiny_vtn(frame_chunk=5), official_file)
    for t in (3, 37):
        video = jnp.asarray(rng.standard_normal((1, t, IMAGE, IMAGE, 3)), jnp.float32)
        whole = np.asarray(forward(loaded, video))
        assert whole.shape == (1, CLASSES) and np.isfinite(whole).all()
        assert rel_err(forward(chunked, video), whole) <= 1e-5


def test_positions_matter_and_masked_frames_do_not(loaded):
    rng = np.random.default_rng(4)
    video = rng.standard_normal((2, 9, IMAGE, IMAGE, 3)).astype(np.float32)
    base = np.asarray(forward(loaded, jnp.asarray(video)))
    shifted = np.asarray(forward(loaded, jnp.asarray(video), jnp.asarray(np.arange(9) * 3)[None]
                                 .repeat(2, 0)))
    assert rel_err(shifted, base) > 1e-3
    # Example 1 has 5 real frames: the 4 masked ones (any content, any position) change nothing.
    mask = np.ones((2, 9), bool)
    mask[1, 5:] = False
    noisy = video.copy()
    noisy[1, 5:] = 100 * rng.standard_normal(noisy[1, 5:].shape)
    positions = np.where(mask, np.arange(9), -7)
    got = np.asarray(forward(loaded, jnp.asarray(noisy), jnp.asarray(positions), jnp.asarray(mask)))
    alone = np.asarray(forward(loaded, jnp.asarray(video[1:, :5])))
    assert rel_err(got[1], alone[0]) <= 1e-5
    assert rel_err(got[0], base[0]) <= 1e-5


def test_jit_and_train_mode(loaded):
    video = jnp.asarray(np.random.default_rng(5).standard_normal((2, 9, IMAGE, IMAGE, 3)),
                        jnp.float32)
    positions, mask = jnp.asarray(np.arange(9)[None].repeat(2, 0)), jnp.ones((2, 9), bool)
    out = forward(loaded, video, positions, mask, train=True)
    assert out.shape == (2, CLASSES) and out.dtype == jnp.float32
    assert np.isfinite(np.asarray(out)).all()
    assert rel_err(out, forward(loaded, video, positions, mask)) > 1e-4  # dropout is on


# Errors ---------------------------------------------------------------------------------------
def test_input_errors(loaded):
    good = jnp.zeros((1, 4, IMAGE, IMAGE, 3))
    with pytest.raises(ValueError, match="expected a video of shape"):
        loaded(jnp.zeros((1, 4, IMAGE + 8, IMAGE, 3)))
    with pytest.raises(ValueError, match="expected a video of shape"):
        loaded(jnp.zeros((4, IMAGE, IMAGE, 3)))
    with pytest.raises(ValueError, match=r"positions of real frames must be frame indices >= 0"):
        loaded(good, positions=jnp.asarray([[0, 1, -2, 3]]))
    with pytest.raises(ValueError, match=r"positions must have shape"):
        loaded(good, positions=jnp.arange(4))
    with pytest.raises(ValueError, match="integer"):
        loaded(good, positions=jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"mask must have shape"):
        loaded(good, mask=jnp.ones((1, 5), bool))
    enc = small_encoder()
    with pytest.raises(ValueError, match="position_ids must have shape"):
        enc(jnp.zeros((1, 8, 16)), position_ids=jnp.zeros((1, 7), jnp.int32))
    with pytest.raises(ValueError, match=r"input vectors of shape \(batch, length, 16\)"):
        enc(jnp.zeros((1, 8, 12)), position_ids=jnp.zeros((1, 8), jnp.int32))


def test_config_errors_and_registry():
    with pytest.raises(ValueError, match="attention_window must be even"):
        model_config("vtn_vit_b16", attention_window=9)
    with pytest.raises(ValueError, match="temporal_heads"):
        model_config("vtn_vit_b16", temporal_heads=7)
    with pytest.raises(TypeError, match="did you mean 'attention_window'"):
        model_config("vtn_vit_b16", attention_windw=8)
    cfg = model_config("vtn_vit_b16")
    assert (cfg.temporal_layers, cfg.attention_window, cfg.temporal_heads, cfg.temporal_mlp_dim,
            cfg.max_positions, cfg.head_dropout_rate, cfg.width, cfg.depth) == (
        3, 18, 12, 3072, 288, 0.5, 768, 12)
    assert cfg.describe()["family"] == "vtn" and cfg.replace(num_classes=3).num_classes == 3
    assert "vtn_vit_b16" in vidmix.list_models()


def test_cost_is_frames_times_the_image_vit():
    cfg = model_config("vtn_vit_b16", **{**TINY, "num_frames": 8})
    total = xla_flops(cfg)
    backbone = xla_flops(cfg, lambda m, v: m.frame_features(v))
    image = xla_flops(model_config("vit_b16", width=D, depth=2, num_heads=HEADS, image_size=IMAGE,
                                   patch_size=PATCH, num_frames=1, head="linear"),
                      lambda m, v: m.backbone(v))
    assert backbone == pytest.approx(8 * image, rel=0.02)
    assert backbone < total < 1.5 * backbone  # the temporal encoder and head on top
    assert gmacs_per_view(cfg) == pytest.approx(total / 2e9)


def test_full_size_gflops():
    """ViT-B/16 on 16 frames at 224^2: 16 x 17.6 GMACs plus a small temporal encoder."""
    g = gmacs_per_view(model_config("vtn_vit_b16"))
    assert 16 * 17.5 < g < 16 * 17.5 * 1.05

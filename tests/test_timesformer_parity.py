"""vidmix TimeSformer schemes against `transformers`' TimeSformer (a third-party implementation)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err
from transformers import TimesformerConfig, TimesformerForVideoClassification

import vidmix

SMALL = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=48, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=192, num_labels=7)
SCHEME = {"divided_space_time": "divided", "joint_space_time": "joint", "space_only": "space"}


def hf_model(attention_type: str, seed: int = 0) -> TimesformerForVideoClassification:
    """A small HF TimeSformer whose every parameter (norms and biases too) is random."""
    torch.manual_seed(seed)
    config = TimesformerConfig(attention_type=attention_type, **SMALL)
    model = TimesformerForVideoClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def vidmix_model(attention: str, **kw):
    return vidmix.create_model("timesformer_b16", attention=attention, width=48, depth=2,
                               num_heads=4, image_size=32, patch_size=8, num_frames=4,
                               num_classes=7,
                               temporal_embed_slots=0 if attention == "space" else None, **kw)


@pytest.fixture(scope="module")
def clip():
    return np.random.default_rng(1).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)


def torch_input(clip):
    return torch.from_numpy(clip).permute(0, 1, 4, 2, 3).contiguous()  # (B, T, C, H, W)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_logits_match_transformers(tmp_path, clip, attention_type):
    ref = hf_model(attention_type)
    ref.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    model = vidmix.load_weights(vidmix_model(SCHEME[attention_type]), path)
    with torch.no_grad():
        want = ref(pixel_values=torch_input(clip)).logits.numpy()
    got = np.asarray(model(jnp.asarray(clip)))
    assert np.abs(want).max() > 1.0  # the comparison is not between near-zero numbers
    assert rel_err(got, want) < 1e-5


def test_space_only_matches_transformers_per_frame(tmp_path, clip):
    """The HF port returns one output per frame; vidmix averages frames before the final norm.

    Compare where both agree: the last block's per-frame tokens; then check that vidmix's logits
    are HF's own final norm and classifier applied to the frame-averaged HF tokens.
    """
    ref = hf_model("space_only")
    ref.save_pretrained(tmp_path)
    model = vidmix.load_weights(vidmix_model("space"), tmp_path)
    with torch.no_grad():
        out = ref(pixel_values=torch_input(clip), output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (B*T, 1+N, D) before the final norm
        b, t = clip.shape[:2]
        pooled = hidden.reshape(b, t, *hidden.shape[1:]).mean(1)
        want_logits = ref.classifier(ref.timesformer.layernorm(pooled)[:, 0]).numpy()
    tokens = np.asarray(model.backbone.tokens(jnp.asarray(clip)))  # (B, T, 1+N, D)
    assert rel_err(tokens.reshape(hidden.shape), hidden.numpy()) < 1e-5
    # HF's per-frame logits come from the same tokens: vidmix's per-frame (avg) readout equals them.
    per_frame = model.head.classifier(model.backbone.norm(jnp.asarray(tokens[:, :, 0])))
    assert rel_err(np.asarray(per_frame).reshape(b * t, -1), out.logits.numpy()) < 1e-5
    assert rel_err(np.asarray(model(jnp.asarray(clip))), want_logits) < 1e-5


def test_wrong_scheme_checkpoint_names_the_keys(tmp_path):
    """A divided checkpoint into a joint model: the temporal tensors are named as unexpected."""
    hf_model("divided_space_time").save_pretrained(tmp_path)
    model = vidmix_model("joint")
    before = np.asarray(model.backbone.pos_embed[...]).copy()
    with pytest.raises(vidmix.CheckpointMismatchError, match="blocks.0.temporal_attn.qkv") as e:
        vidmix.load_weights(model, tmp_path)
    assert len(e.value.unexpected) == 2 * 8  # per block: qkv, proj, norm, fc, weight and bias each
    assert not e.value.missing
    np.testing.assert_array_equal(before, model.backbone.pos_embed[...])  # untouched


def test_other_depth_reports_missing_and_unexpected(tmp_path):
    hf_model("joint_space_time").save_pretrained(tmp_path)
    model = vidmix.create_model("timesformer_b16_joint", width=48, depth=3, num_heads=4,
                                image_size=32, patch_size=8, num_frames=4, num_classes=7)
    with pytest.raises(vidmix.CheckpointMismatchError) as e:
        vidmix.load_weights(model, tmp_path)
    assert any("blocks/2/" in m for m in e.value.missing)
    assert not e.value.unexpected


def test_other_class_count_gets_a_new_classifier(tmp_path, caplog):
    hf_model("joint_space_time").save_pretrained(tmp_path)
    model = vidmix.create_model("timesformer_b16_joint", width=48, depth=2, num_heads=4,
                                image_size=32, patch_size=8, num_frames=4, num_classes=11)
    with caplog.at_level("WARNING"):
        vidmix.load_weights(model, tmp_path)
    assert "7 classes, the model 11: new classifier" in caplog.text
    assert "head.weight" in caplog.text
    assert np.all(np.asarray(model.head.classifier.kernel[...]) == 0)  # kept its fresh init


def test_ignore_keeps_chosen_parameters(tmp_path):
    hf_model("joint_space_time").save_pretrained(tmp_path)
    model = vidmix_model("joint")
    before = np.asarray(model.backbone.norm.scale[...]).copy()
    with pytest.raises(vidmix.CheckpointMismatchError, match="norm.weight"):
        vidmix.load_weights(model, tmp_path, ignore=("backbone/norm/*",))
    vidmix.load_weights(model, tmp_path, ignore=("backbone/norm/*", "norm.*"))
    np.testing.assert_array_equal(before, model.backbone.norm.scale[...])


def test_truncated_file_is_a_clear_error(tmp_path):
    hf_model("joint_space_time").save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(vidmix.checkpoints.CheckpointError, match="cannot read"):
        vidmix.load_weights(vidmix_model("joint"), path)

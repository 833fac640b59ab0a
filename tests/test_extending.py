"""A toy weight format and a toy model family, registered as docs/extending.md shows."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

import vidmix
from vidmix.checkpoints import (
    FORMATS,
    CheckpointError,
    Format,
    detect_format,
    register_format,
    unregister_format,
)
from vidmix.checkpoints.mapping import conv_kernel, take, torch_linear
from vidmix.models.registry import FAMILIES, PRESETS, Family, register, unregister


# The format and the family of docs/extending.md -------------------------------------------------
def detect(keys: set[str]) -> bool:
    return "toy.patch_embed.proj.weight" in keys


def to_canonical(tensors: dict) -> dict:
    return {k.removeprefix("toy."): v for k, v in tensors.items()}


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    num_classes: int = 5
    width: int = 8
    patch_size: int = 4


class ToyNet(nnx.Module):
    def __init__(self, config: ToyConfig, *, rngs: nnx.Rngs):
        self.config = config
        p = config.patch_size
        self.embed = nnx.Conv(3, config.width, (p, p), strides=p, padding="VALID", rngs=rngs)
        self.head = nnx.Linear(config.width, config.num_classes, rngs=rngs)

    def __call__(self, video):
        b, t, h, w, c = video.shape
        x = self.embed(video.reshape(b * t, h, w, c)).mean((1, 2))
        return self.head(x.reshape(b, t, -1).mean(1))


def convert(cfg, tensors, params, *, inflate="average"):
    mapping = {"embed/kernel": take("patch_embed.proj.weight", conv_kernel),
               "embed/bias": take("patch_embed.proj.bias"),
               **torch_linear("head", "head")}
    return mapping, {}


@pytest.fixture
def toy():
    """The toy format and family, registered for one test and removed after it."""
    register_format(Format("toy", detect, to_canonical))
    register(Family("toy", ToyConfig, ToyNet, presets={"toy_s4": dict(width=8, patch_size=4)},
                    convert=convert))
    yield
    for name in ("toy", "toy_again"):
        if name in FORMATS:
            unregister_format(name)
    unregister("toy")
    assert "toy" not in FAMILIES and "toy_s4" not in PRESETS


def toy_file(tmp_path, classes=3, width=8, patch=4):
    """A `toy.`-prefixed file of torch-layout tensors (conv (D, 3, P, P), linear (out, in))."""
    rng = np.random.default_rng(0)
    tensors = {"toy.patch_embed.proj.weight": rng.standard_normal((width, 3, patch, patch)),
               "toy.patch_embed.proj.bias": rng.standard_normal(width),
               "toy.head.weight": rng.standard_normal((classes, width)),
               "toy.head.bias": rng.standard_normal(classes)}
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    save_file(tensors, tmp_path / "toy.safetensors")
    return tmp_path / "toy.safetensors", tensors


def reference_logits(video, t):
    """The toy network in numpy, from the file's torch-layout tensors."""
    b, f, h, w, c = video.shape
    p = t["toy.patch_embed.proj.weight"].shape[-1]
    patches = video.reshape(b, f, h // p, p, w // p, p, c)
    emb = np.einsum("bfiyjxc,dcyx->bfijd", patches, t["toy.patch_embed.proj.weight"])
    feats = (emb + t["toy.patch_embed.proj.bias"]).mean((2, 3)).mean(1)
    return feats @ t["toy.head.weight"].T + t["toy.head.bias"]


# Tests ------------------------------------------------------------------------------------------
def test_toy_preset_builds(toy):
    assert "toy_s4" in vidmix.list_models()
    model = vidmix.create_model("toy_s4", num_classes=3)
    assert isinstance(model, ToyNet) and model.config == ToyConfig(num_classes=3)
    assert model(jnp.zeros((2, 2, 8, 8, 3))).shape == (2, 3)


def test_toy_file_is_detected_and_loads(toy, tmp_path):
    path, tensors = toy_file(tmp_path)
    assert detect_format(tensors) == "toy"
    video = np.random.default_rng(1).standard_normal((2, 3, 8, 8, 3)).astype(np.float32)
    for fmt in ("auto", "toy"):
        model = vidmix.load_weights(vidmix.create_model("toy_s4", num_classes=3), path,
                                    format=fmt)
        np.testing.assert_array_equal(model.head.kernel[...], tensors["toy.head.weight"].T)
        np.testing.assert_allclose(np.asarray(model(jnp.asarray(video))),
                                   reference_logits(video, tensors), rtol=1e-5, atol=1e-5)


def test_a_file_two_formats_recognise_is_an_error_naming_both(toy, tmp_path):
    path, tensors = toy_file(tmp_path)
    register_format(Format("toy_again", detect, to_canonical))
    with pytest.raises(CheckpointError, match="ambiguous.*'toy'.*'toy_again'"):
        detect_format(tensors)
    with pytest.raises(CheckpointError, match="'toy', 'toy_again'"):
        vidmix.load_weights(vidmix.create_model("toy_s4", num_classes=3), path)
    # an explicit choice is not ambiguous
    vidmix.load_weights(vidmix.create_model("toy_s4", num_classes=3), path, format="toy_again")


def test_names_already_registered_are_refused(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_format(Format("toy", detect))
    with pytest.raises(ValueError, match="already registered"):
        register(Family("toy", ToyConfig, ToyNet))
    with pytest.raises(ValueError, match="presets already registered"):
        register(Family("toy2", dataclasses.make_dataclass("Other", []), ToyNet,
                        presets={"xvit_b16": {}}))
    assert "toy2" not in FAMILIES

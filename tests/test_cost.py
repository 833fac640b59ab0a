"""Cost from XLA's own count of the lowered forward pass."""

import pytest

from vidmix.models import model_config
from vidmix.models.cost import backbone_only, count_params, gmacs_per_view, xla_flops

SMALL = dict(width=64, depth=2, num_heads=4, image_size=64, patch_size=16, num_classes=10)


def backbone_flops(name, frames, **kw):
    return xla_flops(model_config(name, num_frames=frames, **{**SMALL, **kw}), backbone_only)


def test_xvit_costs_t_image_vits():
    image = backbone_flops("vit_b16", 1)
    for t in (4, 8, 16):
        assert backbone_flops("xvit_b16", t) <= 1.01 * t * image


def test_xvit_cost_is_linear_in_frames():
    for t in (4, 8):
        ratio = backbone_flops("xvit_b16", 2 * t) / backbone_flops("xvit_b16", t)
        assert ratio == pytest.approx(2.0, rel=0.01)


def test_joint_cost_grows_faster_than_linear():
    ratio = backbone_flops("timesformer_b16_joint", 16) / backbone_flops("timesformer_b16_joint", 8)
    assert ratio > 2.2
    assert backbone_flops("timesformer_b16_joint", 16) > 1.1 * backbone_flops("xvit_b16", 16)


@pytest.mark.slow
@pytest.mark.parametrize("name,published", [("xvit_b16", 142), ("timesformer_b16", 197)])
def test_full_size_gflops_match_the_papers(name, published):
    """ViT-B/16, 8 x 224^2: the papers' GFLOPs per view (425/3 for XViT, 590/3 for TimeSformer)."""
    assert gmacs_per_view(model_config(name)) == pytest.approx(published, rel=0.02)


def test_parameter_count_of_the_timesformer_paper():
    """TimeSformer-B divided, 400 classes: 121.4M in the paper; joint and space-only 85.9M."""
    assert count_params(model_config("timesformer_b16")) / 1e6 == pytest.approx(121.4, rel=0.005)
    joint = count_params(model_config("timesformer_b16_joint")) / 1e6
    assert joint == pytest.approx(85.9, rel=0.005)

"""The model zoo as a table: what `python main.py --mode=zoo` prints."""

from __future__ import annotations

from vidmix.models import list_models, model_config
from vidmix.models.cost import count_params, gmacs_per_view


def zoo_table(names=None, *, num_frames: int = 8, image_size: int = 224) -> str:
    """A markdown table of presets with their parameters and GFLOPs per view."""
    names = names or list_models()
    lines = [f"Model zoo at {num_frames} x {image_size}^2 (GFLOPs = multiply-adds per view, "
             "counted by XLA)",
             "| model | family | attention | head | size | params (M) | GFLOPs/view |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        cfg = model_config(name, num_frames=num_frames, image_size=image_size)
        d = cfg.describe()
        lines.append(f"| {name} | {d['family']} | {d['attention']} | {d['head']} | {d['size']} | "
                     f"{count_params(cfg) / 1e6:.1f} | {gmacs_per_view(cfg):.1f} |")
    return "\n".join(lines)

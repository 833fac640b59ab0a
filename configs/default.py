"""The built-in default of `python main.py`: the demo.

Generates the synthetic arrow-of-time task (digits moving left or right; each class is the other
played backwards, so only a model that orders frames can beat chance) and trains a small XViT on
the CPU in a few minutes, then evaluates it. `configs/default.py:space` trains the same model and
budget with space-only attention and no temporal embedding: a frame-averaging model, which stays
near chance. Both read out the mean of the per-frame CLS features with a linear head, so the only
difference is XViT's space-time mixing.
"""

from vidmix.training.base_config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.model.name = "xvit_s16"
    # a tiny XViT: 4x4 patches give the 8x8 token grid the spatial resolution to see the digit
    # move (with 8x8 patches the same budget did not learn the task)
    c.model.overrides = dict(width=64, depth=3, num_heads=4, patch_size=4, head="linear",
                             head_dropout_rate=0.0)
    if arg == "space":  # the frame-averaging baseline
        c.model.overrides.update(attention="space", temporal_embed_slots=0)
    elif arg:
        raise ValueError(f"configs/default.py takes no argument or 'space', got {arg!r}")
    c.data.dir = "~/vidmix_data/synthetic_direction"
    c.data.build.update(task="direction", num_train=512, num_val=128, num_frames=16, size=32)
    c.data.num_frames = 8
    c.data.image_size = 32
    c.data.stride = 2
    c.data.crop = "rrc"
    c.data.crop_kwargs = dict(area=(0.6, 1.0))
    c.train.batch_size = 32
    c.seed = 1
    c.train.num_steps = 300
    c.train.optimizer = "adamw"
    c.train.learning_rate = 1e-3
    c.train.weight_decay = 0.05
    c.train.decay_mask = "all"
    c.train.warmup_steps = 30
    c.train.grad_clip = 1.0
    c.train.log_every = 10
    c.train.checkpoint_every = 50
    c.eval.batch_size = 64
    c.eval.num_clips = 2
    c.eval.every = 0
    return c

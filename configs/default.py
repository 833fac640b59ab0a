"""The built-in default of `python main.py`: the demo.

Generates the synthetic arrow-of-time task (digits moving left or right; each class is the other
played backwards, so only a model that orders frames can beat chance) and trains a small XViT with
the paper's temporal-attention head on the CPU in about two and a half minutes, then evaluates it
(100% eval top-1 here; the loss leaves ln 2 after ~30 steps). `configs/default.py:space` trains
the same model and budget with space-only attention and no temporal embedding: its frames never
meet before the order-blind head, so it stays near chance. The only difference is XViT's
space-time mixing.

Trained from scratch, every model here normalises with the dataset's own pixel statistics
(`data.pixel_stats="dataset"`): with the presets' (their pretraining data's) the dark synthetic
frames all look alike to a fresh model, which then sits at chance (docs/learning.md).

The other families train on the same data: `:timesformer` (divided space-time attention, its
temporal embedding started at the patch embeddings' scale; twice the steps, as its loss stays at
ln 2 for 120-270 steps depending on the seed), `:pst` (a tiny Swin with temporal patch shift and
channel shift) and `:vtn` (a tiny per-frame ViT with a Longformer temporal encoder over the
frames' CLS features). All three learn the task. VTN starts its spatial positions at the patch
embeddings' scale and its temporal ones as sinusoids of twice that scale (its positions are the
frames' indices in the video, so a clip of stride 2 uses only even or only odd ones), and trains
two Longformer layers at a learning rate of 5e-4 (100% eval top-1 here, the loss leaving ln 2 at
step ~100 of 300; with random position rows it stayed at chance: docs/learning.md).
"""

from vidmix.training.base_config import base_config

# a tiny XViT: 4x4 patches give the 8x8 token grid the spatial resolution to see the digit move
# (with 8x8 patches the same budget did not learn the task)
_XVIT = dict(width=64, depth=3, num_heads=4, patch_size=4, head_dropout_rate=0.0)
MODELS = {
    None: ("xvit_s16", _XVIT),
    "space": ("xvit_s16", dict(_XVIT, attention="space", temporal_embed_slots=0)),
    # divided space-time attention; its only source of frame order is the temporal embedding,
    # which the release starts at zero (it starts from image weights): from scratch it starts at
    # the patch embeddings' scale, or the fresh model is blind to order (docs/learning.md)
    "timesformer": ("timesformer_b16", dict(width=64, depth=3, num_heads=4, patch_size=4,
                                            drop_path_rate=0.0, temporal_embed_std=1.0)),
    "vtn": ("vtn_vit_b16", dict(width=64, depth=3, num_heads=4, patch_size=4, temporal_layers=2,
                                temporal_heads=4, temporal_mlp_dim=256, attention_window=4,
                                head_dropout_rate=0.0, temporal_dropout_rate=0.0,
                                temporal_attention_dropout_rate=0.0, frame_chunk=64,
                                # from scratch: positions at the patch embeddings' scale, or the
                                # fresh frame features barely see where the digit is
                                pos_embed_std=1.0, temporal_position_std=2.0,
                                # its positions are frame indices (stride 2: even or odd rows):
                                # sinusoids (RMS 2) start neighbouring frames close
                                # (docs/learning.md)
                                temporal_position_init="sincos")),
    "pst": ("pst_tiny", dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4,
                             drop_path_rate=0.0, head_dropout_rate=0.0)),
}
# TimeSformer leaves the loss plateau later than XViT, and later on some seeds than on others
# (120-270 steps; XViT 30-55): with the others' 300 cosine-decayed steps, a late start runs out of
# learning rate and stays at chance (docs/learning.md, "TimeSformer's long plateau")
STEPS = {"timesformer": 600}
# VTN from scratch learns at half the others' peak learning rate, not at 1e-3 (docs/learning.md)
LEARNING_RATES = {"vtn": 5e-4}


def get_config(arg: str | None = None):
    c = base_config()
    if arg not in MODELS:
        raise ValueError(f"configs/default.py takes no argument or one of "
                         f"{', '.join(repr(k) for k in MODELS if k)}, got {arg!r}")
    c.model.name, overrides = MODELS[arg]
    c.model.overrides = dict(overrides)
    c.data.dir = "~/vidmix_data/synthetic_direction"
    c.data.build.update(task="direction", num_train=512, num_val=128, num_frames=16, size=32)
    c.data.num_frames = 8
    c.data.image_size = 32
    c.data.stride = 2
    c.data.crop = "rrc"
    c.data.crop_kwargs = dict(area=(0.6, 1.0))
    # trained from scratch: normalise with the dataset's own pixel statistics (the presets' are
    # their pretraining data's; on this dark synthetic data they leave every frame looking alike
    # to a fresh model, which then sits at chance: docs/learning.md)
    c.data.pixel_stats = "dataset"
    c.train.batch_size = 32
    c.seed = 1
    c.train.num_steps = STEPS.get(arg, 300)
    c.train.optimizer = "adamw"
    c.train.learning_rate = LEARNING_RATES.get(arg, 1e-3)
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

"""TimeSformer-B (divided space-time attention) on Kinetics-400, the official recipe.

    python main.py --config=configs/timesformer_k400.py --workdir=/runs/timesformer_k400 \
        --config.init.path=/ckpt/jx_vit_base_p16_224-80ecf9dd.pth --config.data.dir=/data/k400

Source: Bertasius et al. 2021 and the official configs (`docs/recipes.md`): init
from ImageNet-21k ViT-B/16; SGD Nesterov 0.9, weight decay 1e-4, LR 0.005 divided by 10 at epochs
11 and 14, 15 epochs; short side jitter [256, 320] + random 224 crop, flip; 8 frames at stride 32;
test 1 clip x 3 crops; normalisation mean 0.45, std 0.225 (the preset's pixel_mean / pixel_std).
Batch 64 (8 GPUs x 8).
"""

from vidmix.training.base_config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.model.name = "timesformer_b16"
    c.init.path = ""  # required: ImageNet ViT-B/16 weights (timm / Google / HF layouts)
    c.data.kind = "kinetics_csv"
    c.data.dir = "~/vidmix_data/k400"
    c.data.num_frames = 8
    c.data.stride = 32
    c.data.crop = "jitter"
    c.data.crop_kwargs = dict(scale=(256, 320))
    c.data.worker_count = 8
    c.train.batch_size = 64
    c.train.num_steps = 0  # in epochs of the dataset's real train split:
    c.train.num_epochs = 15
    c.train.optimizer = "sgd"
    c.train.learning_rate = 0.005
    c.train.schedule = "step"
    c.train.step_boundaries = (11 / 15, 14 / 15)
    c.train.weight_decay = 1e-4
    c.train.decay_mask = "all"
    c.train.checkpoint_every = 2000
    c.train.log_every = 50
    c.eval.num_clips = 1
    c.eval.num_crops = 3
    c.eval.every_epochs = 3
    return c

"""XViT-B/16 on Something-Something-v2, the official recipe. Argument: frames (8 or 16).

    python main.py --config=configs/xvit_ssv2.py:16 --workdir=/runs/xvit_ssv2_16 \
        --config.init.path=/ckpt/ViT-B_16.npz --config.data.dir=/data/ssv2

Source: Bulat et al. 2021 and the official configs (`docs/recipes.md`): SGD Nesterov 0.9,
LR 0.03 at batch 64, cosine with 5 warm-up epochs from 0.003, 35 epochs, weight decay 1e-4 on all
but the head biases, plain cross-entropy (the official config; the paper says smoothing 0.3),
TSN segment sampling, multi-scale crop, no flips, random erasing; test 2 clips x 3 crops.
Difference: RandAugment (2 ops) stands in for the official AutoAugment policy.
"""

from vidmix.training.base_config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.model.name = "xvit_b16"
    c.init.path = ""  # required: the ImageNet-21k ViT-B/16 file
    c.data.kind = "ssv2_json"
    c.data.dir = "~/vidmix_data/ssv2"
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.num_frames = int(arg or 8)
    c.data.sampling = "segment"
    c.data.crop = "multiscale"
    c.data.flip = False
    c.data.rand_augment_ops = 2
    c.data.random_erasing = 0.25
    c.data.worker_count = 8
    c.train.batch_size = 64
    c.train.num_steps = 0  # in epochs of the dataset's real train split:
    c.train.num_epochs = 35
    c.train.optimizer = "sgd"
    c.train.learning_rate = 0.03
    c.train.warmup_epochs = 5
    c.train.warmup_init = 0.003 / 0.03
    c.train.weight_decay = 1e-4
    c.train.decay_mask = "all_but_head_bias"
    c.train.checkpoint_every = 2000
    c.train.log_every = 50
    c.eval.num_clips = 2
    c.eval.num_crops = 3
    c.eval.every_epochs = 5
    return c

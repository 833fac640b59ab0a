"""XViT-B/16 on Kinetics-400, the official recipe. Argument: frames (8 or 16), default 8.

    python main.py --config=configs/xvit_k400.py:16 --workdir=/runs/xvit_k400_16 \
        --config.init.path=/ckpt/ViT-B_16.npz --config.data.dir=/data/k400

Source: Bulat et al. 2021 (XViT) and the official configs (`docs/recipes.md`): init from
ImageNet-21k ViT-B/16; SGD Nesterov 0.9, LR 0.03 at batch 64, cosine with 5 warm-up epochs from
0.01, 30 epochs, weight decay 1e-5 on all but the head biases, label smoothing 0.3 + mixup 0.4,
multi-scale crop, flip, 16 frames over a 256-frame span; test 1 clip x 3 crops, logits summed.
Difference: RandAugment (2 ops) stands in for the official AutoAugment policy.
"""

from vidmix.training.base_config import base_config


def get_config(arg: str | None = None):
    frames = int(arg or 8)
    c = base_config()
    c.model.name = "xvit_b16"
    c.init.path = ""  # required: the ImageNet-21k ViT-B/16 file (e.g. ViT-B_16.npz)
    c.data.kind = "kinetics_csv"
    c.data.dir = "~/vidmix_data/k400"
    c.data.num_frames = frames
    c.data.image_size = 224
    c.data.sampling = "dense"
    c.data.stride = 256 // (16 if frames <= 16 else frames)
    c.data.crop = "multiscale"
    c.data.rand_augment_ops = 2
    c.data.mixup = 0.4
    c.data.worker_count = 8
    c.train.batch_size = 64
    c.train.num_steps = 0  # in epochs of the dataset's real train split:
    c.train.num_epochs = 30
    c.train.optimizer = "sgd"
    c.train.learning_rate = 0.03
    c.train.warmup_epochs = 5
    c.train.warmup_init = 0.01 / 0.03
    c.train.weight_decay = 1e-5
    c.train.decay_mask = "all_but_head_bias"
    c.train.label_smoothing = 0.3  # of the mixed targets, in the train step
    c.train.checkpoint_every = 2000
    c.train.log_every = 50
    c.eval.batch_size = 64
    c.eval.num_clips = 1
    c.eval.num_crops = 3
    c.eval.every_epochs = 5
    return c

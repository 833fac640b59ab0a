"""Every key a run config has, with defaults. Config files start from `base_config()` and change
what their recipe says; an unknown key (a typo) fails at start-up because the dict is locked."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """The default run config: every key a run reads, with its default value."""
    c = ml_collections.ConfigDict()
    c.mode = "train"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "xvit_b16"  # a preset of vidmix.list_models()
    # any field of the preset's config; num_frames / image_size come from config.data,
    # num_classes from the dataset. The input normalisation is the model's: pixel_mean and
    # pixel_std (each preset has its release's; set them for weights trained otherwise)
    c.model.overrides = ml_collections.ConfigDict()

    c.init = ml_collections.ConfigDict()  # initial weights through vidmix.load_weights
    c.init.path = ""  # "" = random initialisation
    c.init.format = "auto"
    c.init.ignore = ()
    c.init.inflate = "average"

    c.data = ml_collections.ConfigDict()
    c.data.kind = "synthetic"  # how data.dir was built (vidmix.data.build_dataset kinds)
    c.data.dir = "~/vidmix_data/synthetic_direction"
    c.data.build = ml_collections.ConfigDict(  # only for kind "synthetic": generated if absent
        dict(task="direction", num_train=512, num_val=128, num_frames=16, size=64, seed=0,
             num_workers=2))
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.num_frames = 8
    c.data.image_size = 224
    c.data.sampling = "dense"  # or "segment" (TSN)
    c.data.stride = 2
    c.data.crop = "jitter"  # jitter | rrc | multiscale
    c.data.crop_kwargs = ml_collections.ConfigDict()  # e.g. scale=(256, 320)
    c.data.flip = ml_collections.config_dict.placeholder(bool)  # None: the dataset decides
    c.data.rand_augment_ops = 0
    c.data.random_erasing = 0.0  # these three are drawn by the loader, applied in the train step
    c.data.mixup = 0.0
    c.data.cutmix = 0.0
    # "model": normalise with the model preset's pixel mean/std (what its pretrained weights were
    # trained with); "dataset": with the training split's own, measured by the build (for training
    # from scratch; docs/learning.md)
    c.data.pixel_stats = "model"
    c.data.worker_count = 0
    # threads per process that read and decode records (None: the machine's cores / processes)
    c.data.read_threads = ml_collections.config_dict.placeholder(int)
    c.data.prefetch = 1  # batches read and put on the mesh ahead of the step (0: none)

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64  # global, over all processes
    c.train.num_steps = 1000  # or, instead (set num_steps to 0), num_epochs of the train split
    c.train.num_epochs = 0.0
    c.train.optimizer = "sgd"  # sgd | adamw
    c.train.learning_rate = 0.03
    c.train.momentum = 0.9
    c.train.nesterov = True
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.weight_decay = 0.0
    c.train.decay_mask = "matrices"  # all | all_but_head_bias | matrices
    c.train.schedule = "cosine"  # cosine | step | constant
    c.train.warmup_steps = 0
    c.train.warmup_epochs = 0.0  # instead of warmup_steps
    c.train.warmup_init = 0.0  # warm-up starts at this fraction of the learning rate
    c.train.step_boundaries = (0.7, 0.9)  # schedule "step": fractions of training
    c.train.step_factor = 0.1
    c.train.grad_clip = 0.0  # global norm; 0 = off
    c.train.accum_steps = 1
    c.train.label_smoothing = 0.0
    c.train.log_every = 10
    c.train.checkpoint_every = 200
    c.train.keep_checkpoints = 3

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 64
    c.eval.num_clips = 1
    c.eval.num_crops = 1
    # Whole-video models (VTN) may see longer eval views than training clips: 0 = data.num_frames;
    # N frames with eval.sampling ("" = data.sampling; "segment" spreads them over the video);
    # -1 = every frame (predict only: one video per pass).
    c.eval.num_frames = 0
    c.eval.sampling = ""
    c.eval.combine = "sum_logits"  # sum_logits | mean_softmax
    c.eval.every = 0  # steps; 0 = only at the end
    c.eval.every_epochs = 0.0  # instead of eval.every
    c.eval.confusion_max_classes = 20
    # More evaluators, by name (vidmix.training.evaluators): each entry has a `type` and the keys
    # of config.eval it changes, e.g. a cheap one-view eval during training next to the full
    # multi-view one at the end: c.evals.quick = dict(type="classification", num_clips=1,
    # num_crops=1, every=200). Their `every` counts steps.
    c.evals = ml_collections.ConfigDict()

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices not used by fsdp
    c.mesh.fsdp = 1
    c.mesh.fsdp_min_size = 2**18  # parameters smaller than this are replicated

    c.predict = ml_collections.ConfigDict()
    c.predict.video = ""
    c.predict.top_k = 5
    c.zoo = ml_collections.ConfigDict(dict(models="", num_frames=8, image_size=224))
    return c

"""Does a model learn time from scratch? Train it on a synthetic temporal task and watch the loss.

    python bench/learning.py --family xvit [--task direction] [--pixels dataset|model]
        [--steps 300] [--lr 1e-3] [--warmup 30] [--set key=value ...] [--json out.json]
    python bench/learning.py --family xvit --task rotation --order-signal [...]
    python bench/learning.py --family timesformer --seeds 8 [...]   # how many seeds learn
    python bench/learning.py --family xvit --task rotation --stem conv3d [...]   # tokenizer
    python bench/learning.py --family xvit --task rotation --attention-init mimetic [...]
    python bench/learning.py --plot curves.png a.json b.json ...

A plain optax loop through the public API (`vidmix.create_model`, `vidmix.training.steps`):
AdamW (weight decay 0.05 on every parameter), gradient clipping at 1, a linear warm-up then
cosine decay, batch 32, on uint8 clips of the built-in synthetic tasks (`vidmix.data.synthetic`)
made in memory: 8 frames of 32x32 taken at stride 2 from 16-frame videos (random start 0 or 1),
1,024 training and 256 held-out videos. `--family` picks one of `FAMILIES`, every family shrunk
to the same small scale (`--model PRESET` shrinks a preset by `SMALL` instead); `--set` overrides
model options. `--pixels dataset` (the default) normalises with the training videos' pixel
mean/std, as `config.data.pixel_stats="dataset"` does; `model` with the preset's. Prints the
plateau length (steps until the 20-step mean loss first falls below 0.9 ln 2) and the eval
accuracy on the held-out videos.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from vidmix.data.pixel_stats import pixel_stats, pixel_sums  # noqa: E402
from vidmix.data.synthetic import TASKS, make_video  # noqa: E402
from vidmix.models import create_model  # noqa: E402
from vidmix.models.layers import Attention  # noqa: E402
from vidmix.models.temporal_shift import temporal_shift  # noqa: E402
from vidmix.training.steps import make_eval_step, make_train_step, split_model  # noqa: E402

SMALL = dict(width=64, depth=4, num_heads=4, patch_size=4)
OFF = dict(drop_path_rate=0.0, head_dropout_rate=0.0)
# family -> (preset, overrides): every family shrunk to the same scale; "per_frame" is the
# baseline (an image ViT on every frame, scores averaged), which cannot see the order of frames
# From scratch, the ViT families start their position embeddings at the patch embeddings' scale
# (the releases' 0.02 and zeros are for weights ported from image models): with the releases'
# a fresh model barely sees where or when a token is, and learns `first` not at all and `speed`
# with some seeds only (docs/learning.md, "Positions at the patch embeddings' scale")
SCRATCH = dict(pos_embed_std=1.0, temporal_embed_std=1.0)
FAMILIES = {
    # the paper's head with learned frame positions added to its per-frame features (the
    # release's head has none): from scratch at 2.5e-3 it leaves the plateau on `rotation` with
    # more seeds (docs/learning.md, "Where the long plateaus end")
    "xvit": ("xvit_s16", dict(SMALL, head="temporal_attention", head_positions=True,
                              **SCRATCH, **OFF)),
    "xvit_summary": ("xvit_b16_summary", dict(SMALL, **SCRATCH, **OFF)),
    # with the release's zero temporal embedding, TimeSformer's fresh model is even exactly blind
    # to frame order (docs/learning.md)
    "timesformer": ("timesformer_b16", dict(SMALL, **SCRATCH, **OFF)),
    # PST as released has no absolute positions, and its patch shift rolls time round: a fresh
    # one hardly tells an early event from a late one, and stays at chance on `first`. From
    # scratch it gets Swin's 2-D table plus a row per time step, at the patch scale
    "pst": ("pst_tiny", dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4,
                             absolute_pos_embed="space_time", pos_embed_std=1.0,
                             drop_path_rate=0.0, head_dropout_rate=0.0)),
    # from scratch, VTN's spatial positions start at the patch embeddings' scale (the releases'
    # 0.02 leave its frame features blind to where the digit is), its temporal ones as sinusoids
    # of RMS 2 (its positions are frame indices: a clip of stride 2 uses the even or the odd
    # rows, unrelated to each other when drawn at random); with two Longformer layers and half
    # the others' learning rate (`LEARNING_RATES`) it learns `direction` in the test's 200 steps
    # (docs/learning.md)
    "vtn": ("vtn_vit_b16", dict(SMALL, temporal_layers=2, temporal_heads=4, temporal_mlp_dim=256,
                                attention_window=4, frame_chunk=64, temporal_dropout_rate=0.0,
                                temporal_attention_dropout_rate=0.0, pos_embed_std=1.0,
                                temporal_position_std=2.0, temporal_position_init="sincos",
                                **OFF)),
    "per_frame": ("vit_b16", dict(SMALL, pos_embed_std=1.0, **OFF)),
}
# each family's peak learning rate where it is not 1e-3 (--lr overrides). At 3e-3 XViT's summary
# head and at 2e-3 PST leave the plateau sooner on every task and learn the sense of a spin
# with large digits (at 1e-3, one seed of the summary head's three in 400 steps), and PST the
# sense of a revolution (`orbit`); XViT's paper head (with frame positions) at 2.5e-3 learns
# the spin with two seeds of three; VTN's post-LayerNorm encoder needs less (docs/learning.md,
# "The learning rate", "Where the long plateaus end")
LEARNING_RATES = {"vtn": 5e-4, "pst": 2e-3, "xvit_summary": 3e-3, "xvit": 2.5e-3}


def make_videos(task: str, n: int, seed: int, frames: int = 16, size: int = 32,
                glyph_size=(0.35, 0.5), first: int = 0, stroke: int = 0):
    """Videos `first`..`first + n - 1` of the stream `seed`, alternating labels 0, 1."""
    labels = (first + np.arange(n)) % 2
    videos = np.stack([make_video(task, int(y), seed * 100_003 + first + i, num_frames=frames,
                                  size=size, glyph_size=tuple(glyph_size), stroke=stroke)
                       for i, y in enumerate(labels)])
    return videos, labels


def dataset_stats(videos) -> dict:
    """The videos' pixel mean and std as model overrides, computed as a build computes them for
    config.data.pixel_stats="dataset"."""
    stats = pixel_stats(sum(pixel_sums(video) for video in videos))
    return dict(pixel_mean=tuple(stats["mean"]), pixel_std=tuple(stats["std"]))


def clips(videos, rng, num_frames=8, stride=2, train=True, with_index=False):
    """(N, F, H, W, 3) uint8 -> uint8 clips (N, num_frames, H, W, 3): frames start,
    start + stride, ... with start 0 or 1 in training, 0 in evaluation. The model normalises.
    With `with_index`, also each clip frame's index in its video (N, num_frames)."""
    starts = rng.integers(0, 2, len(videos)) if train else np.zeros(len(videos), int)
    idx = starts[:, None] + stride * np.arange(num_frames)[None]
    clip = np.take_along_axis(videos, idx[:, :, None, None, None], axis=1)
    return (clip, idx.astype(np.int32)) if with_index else clip


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def experiment_model(args, overrides):
    """The model, with the experiment's init variants patched in (measurement only)."""
    from vidmix.models import heads, layers
    trunc = nnx.initializers.truncated_normal(stddev=0.02)
    saved = (layers.dense_init, heads.dense_init, heads.zeros)
    if args.kernel_init == "trunc02":
        layers.dense_init = heads.dense_init = trunc
    if args.classifier_init == "trunc02":
        heads.zeros = trunc
    elif args.classifier_init == "torch":
        heads.zeros = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    try:
        model = create_model(args.preset, rngs=nnx.Rngs(init_seed(args)), **overrides)
    finally:
        layers.dense_init, heads.dense_init, heads.zeros = saved
    if args.temporal_fc_init == "dense":  # TimeSformer's temporal output projection, not zero
        fc = model.backbone.blocks.stacked.temporal_fc.kernel  # (depth, D, D), scanned
        init = jax.vmap(lambda k: layers.dense_init(k, fc[...].shape[1:]))
        fc[...] = init(jax.random.split(jax.random.key(init_seed(args) + 11), fc[...].shape[0]))
    if args.stem != "patch":
        model.backbone.patch_embed = ConvStem(model.backbone.cfg, space_time=args.stem == "conv3d",
                                              shift=args.stem == "conv_shift",
                                              rngs=nnx.Rngs(init_seed(args) + 29))
    if args.attention_init == "mimetic":
        mimetic_attention(model, np.random.default_rng(init_seed(args) + 23), args.mimetic)
    return model


class ConvStem(nnx.Module):
    """A convolutional stem in place of the patch embedding (measurement only): two 3x3
    convolutions of stride 2 with ReLU (width/4, width/2 channels), then a linear map to the
    width, so a 4x4-patch model keeps its tokens (Xiao et al. 2021's stem, shrunk). With
    `space_time`, the convolutions are 3x3x3 over (time, height, width), stride 1 in time: every
    frame's tokens then see the neighbouring frames' pixels, as the 3-D CNN control does. With
    `shift`, the convolutions stay per frame, and after each ReLU a quarter of the channels come
    from the frame after and a quarter from the frame before (XViT's `temporal_shift`, applied
    to pixel features instead of keys and values)."""

    def __init__(self, cfg, *, space_time: bool, shift: bool = False, rngs: nnx.Rngs):
        if cfg.patch_size != 4 or cfg.tubelet_size != 1:
            raise ValueError("the experimental conv stems replace 4x4 per-frame patches only")
        d = cfg.width
        kernel, stride = ((3, 3, 3), (1, 2, 2)) if space_time else ((3, 3), (2, 2))
        self.frames, self.space_time, self.shift = cfg.num_frames, space_time, shift
        self.c1 = nnx.Conv(3, d // 4, kernel, strides=stride, padding="SAME", rngs=rngs)
        self.c2 = nnx.Conv(d // 4, d // 2, kernel, strides=stride, padding="SAME", rngs=rngs)
        self.out = nnx.Conv(d // 2, d, (1,) * len(kernel), rngs=rngs)

    def __call__(self, frames):  # (B·T, H, W, 3) -> (B·T, H/4, W/4, width)
        x = frames.reshape(-1, self.frames, *frames.shape[1:]) if self.space_time else frames
        for conv in (self.c1, self.c2):
            x = jax.nn.relu(conv(x))
            if self.shift:  # a quarter of the channels from the frame after, a quarter before
                clips = x.reshape(-1, self.frames, *x.shape[1:])
                x = temporal_shift(clips, x.shape[-1] // 4).reshape(x.shape)
        x = self.out(x)
        return x.reshape(-1, *x.shape[-3:])


def mimetic_factors(dim: int, alpha: float, beta: float, rng, rank: int | None = None):
    """(L, R) with L @ R.T the best rank-`rank` approximation of alpha Z + beta I, where
    Z ~ N(0, 1/dim)."""
    a = alpha * rng.normal(size=(dim, dim)) / math.sqrt(dim) + beta * np.eye(dim)
    u, s, vt = np.linalg.svd(a)
    rank = rank or dim
    return u[:, :rank] * np.sqrt(s[:rank]), vt[:rank].T * np.sqrt(s[:rank])


def mimetic_attention(model, rng, coefficients) -> None:
    """Mimetic init (Trockman & Kolter 2023) of every `Attention`: each head's W_q W_k^T the
    best rank-head_dim approximation of a1 Z + b1 I, and W_v W_proj = a2 Z - b2 I, so that a
    fresh layer attends from each token to tokens like it (measurement only)."""
    a1, b1, a2, b2 = coefficients
    for _, module in nnx.iter_graph(model):
        if not isinstance(module, Attention):
            continue
        qkv, proj = np.array(module.qkv.kernel[...]), np.array(module.proj.kernel[...])
        dim, heads = proj.shape[-1], module.num_heads
        hd = dim // heads
        for lead in np.ndindex(*qkv.shape[:-2]):
            for h in range(heads):
                left, right = mimetic_factors(dim, a1, b1, rng, hd)
                qkv[lead][:, h * hd:(h + 1) * hd] = left
                qkv[lead][:, dim + h * hd:dim + (h + 1) * hd] = right
            left, right = mimetic_factors(dim, a2, -b2, rng)
            qkv[lead][:, 2 * dim:] = left
            proj[lead] = right.T
        module.qkv.kernel[...] = jnp.asarray(qkv)
        module.proj.kernel[...] = jnp.asarray(proj)


def init_seed(args) -> int:
    """The seed of the model's initialisation: --init-seed, else --seed (which always seeds the
    batches and dropout), so a run can vary the one without the other."""
    return args.seed if args.init_seed is None else args.init_seed


def experiment(args, videos):
    """(overrides, model) of the run `args` asks for; with `videos`, normalised with their pixel
    statistics (else with the preset's)."""
    args.preset, family = FAMILIES[args.family] if args.family else (args.model, SMALL)
    overrides = dict(family, num_classes=2, num_frames=args.frames, image_size=args.size)
    if videos is not None:
        overrides.update(dataset_stats(videos))
    overrides.update({k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    return overrides, experiment_model(args, overrides)


def order_signal(args, num_videos: int = 64) -> float:
    """How much a freshly initialised model tells a clip from its time reversal: the std over
    videos of the change of its logit margin when the frames are reversed, over the std of the
    part reversal leaves unchanged. 0 for a model blind to frame order; gradient descent can only
    amplify what is there, so this predicts the plateau (docs/learning.md)."""
    videos, _ = make_videos(args.task, num_videos, seed=3, size=args.size)
    graphdef, params, rest = split_model(experiment(args, videos)[1])
    evaluate = jax.jit(make_eval_step(graphdef))
    clip = clips(videos, np.random.default_rng(0), args.frames, args.stride, train=False)
    margin = [np.asarray(evaluate(params, {"video": c}, rest)) @ np.array([1.0, -1.0])
              for c in (clip, clip[:, ::-1])]
    return float(np.std(margin[0] - margin[1]) / (np.std(margin[0] + margin[1]) + 1e-12))


def run(args) -> dict:
    look = dict(size=args.size, glyph_size=args.glyph_size, stroke=args.stroke)
    train_v, train_y = make_videos(args.task, args.num_train, seed=1, **look)
    val_v, val_y = make_videos(args.task, 256, seed=2, **look)
    # --pixels dataset: the training videos' own statistics
    overrides, model = experiment(args, train_v if args.pixels == "dataset" else None)
    graphdef, params, rest = split_model(model)
    sched = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(sched, weight_decay=args.weight_decay))
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    step = jax.jit(make_train_step(graphdef, tx, num_classes=2, seed=args.seed,
                                   stochastic=True), donate_argnums=0)
    evaluate = jax.jit(make_eval_step(graphdef))

    rng = np.random.default_rng(args.seed)
    losses, start = [], time.perf_counter()
    for i in range(args.steps):
        if args.fresh:  # every batch new videos, a stream of their own: nothing to memorise
            videos, labels = make_videos(args.task, args.batch, seed=3 + args.seed * 10,
                                         first=i * args.batch, **look)
        else:
            pick = rng.integers(0, len(train_v), args.batch)
            videos, labels = train_v[pick], train_y[pick]
        video, index = clips(videos, rng, args.frames, args.stride, with_index=True)
        batch = {"video": video, "label": labels, "mask": np.ones(args.batch, np.float32)}
        if args.positions == "video":  # as main.py's loader: each frame's index in its video
            batch["frame_index"] = index
        state, metrics = step(state, batch, rest)
        # kept on the device: the step runs while the next batch is drawn (async dispatch)
        losses.append(metrics["loss"])
        if (i + 1) % 50 == 0 and not args.quiet:
            print(f"step {i + 1:5d} loss {np.mean(jax.device_get(losses[-50:])):.4f}",
                  flush=True)
    losses = [float(v) for v in jax.device_get(losses)]
    seconds = time.perf_counter() - start
    video, index = clips(val_v, rng, args.frames, args.stride, train=False, with_index=True)
    logits = evaluate(state["params"], {"video": video, **({"frame_index": index}
                                                           if args.positions == "video" else {})},
                      rest)
    accuracy = float((np.asarray(logits).argmax(-1) == val_y).mean())
    smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
    below = np.nonzero(smooth < 0.9 * math.log(2))[0] if len(losses) >= 20 else []
    plateau = int(below[0]) + 20 if len(below) else None
    return dict(family=args.family, model=args.preset, pixels=args.pixels,
                overrides=dict(overrides), kernel_init=args.kernel_init,
                classifier_init=args.classifier_init,
                temporal_fc_init=args.temporal_fc_init, stem=args.stem,
                attention_init=args.attention_init,
                seed=args.seed, init_seed=init_seed(args), task=args.task, steps=args.steps,
                fresh=args.fresh, glyph_size=list(args.glyph_size), stroke=args.stroke,
                positions=args.positions,
                lr=args.lr, warmup=args.warmup,
                plateau_steps=plateau, eval_accuracy=accuracy, seconds=round(seconds, 1),
                losses=[round(v, 4) for v in losses])


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES),
                        help="a family at the shared small scale (overrides --model)")
    parser.add_argument("--model", default="xvit_s16", help="a preset, shrunk by SMALL")
    parser.add_argument("--pixels", default="dataset", choices=["dataset", "model"],
                        help="normalise with the training videos' pixel statistics, or with "
                             "the preset's (what vidmix did before)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    parser.add_argument("--task", default="direction", choices=sorted(TASKS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float,
                        help="peak learning rate (default: the family's, LEARNING_RATES, or 1e-3)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=1024,
                        help="training videos (with --fresh: only for the pixel statistics)")
    parser.add_argument("--fresh", action="store_true",
                        help="new videos in every batch instead of --num-train reused ones")
    parser.add_argument("--glyph-size", type=float, nargs=2, default=(0.35, 0.5),
                        help="the digits' font size range, fractions of the frame")
    parser.add_argument("--positions", default="video", choices=["video", "clip"],
                        help="the temporal positions of whole-video models (VTN): each frame's "
                             "index in its video, as main.py's loader gives them, or 0..frames-1 "
                             "(what this bench used before 2026-11-23)")
    parser.add_argument("--stroke", type=int, default=0,
                        help="thicken the digits' lines by this many pixels on each side")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the batches, dropout and (without --init-seed) the init")
    parser.add_argument("--init-seed", type=int, help="seeds the model's init alone")
    parser.add_argument("--seeds", type=int,
                        help="run seeds 0..SEEDS-1 and count those that learn (>= 95%%)")
    parser.add_argument("--kernel-init", default="default", choices=["default", "trunc02"])
    parser.add_argument("--classifier-init", default="default",
                        choices=["default", "trunc02", "torch"])
    parser.add_argument("--temporal-fc-init", default="default", choices=["default", "dense"])
    parser.add_argument("--stem", default="patch",
                        choices=["patch", "conv", "conv_shift", "conv3d"],
                        help="replace the 4x4 patch embedding by a conv stem: per frame, per "
                             "frame with temporal channel shifts, or over space-time (`ConvStem`)")
    parser.add_argument("--attention-init", default="default", choices=["default", "mimetic"],
                        help="mimetic: attention that matches like tokens at init")
    parser.add_argument("--mimetic", type=float, nargs=4, default=(0.7, 0.7, 0.4, 0.4),
                        help="alpha1 beta1 alpha2 beta2 of --attention-init mimetic")
    parser.add_argument("--json", help="write the result (with the loss curve) here")
    parser.add_argument("--order-signal", action="store_true",
                        help="print the fresh model's order signal (no training) and exit")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = LEARNING_RATES.get(args.family, 1e-3)
    return args


def plot(paths: list[str], out: str) -> None:
    """Loss curves (20-step mean) of results written with --json, one line per file."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        smooth = np.convolve(r["losses"], np.ones(20) / 20, mode="valid")
        # the position inits the run set; absent: the preset's
        o = r.get("overrides", {})
        where = ", ".join(f"{k} {o[k]:g}" if type(o[k]) in (int, float) else f"{k} {o[k]}"
                          for k in ("absolute_pos_embed", "pos_embed_std", "temporal_embed_std")
                          if k in o) or "preset positions"
        label = (f"{r.get('family') or r['model']}, {r.get('pixels', 'model')} pixel stats, "
                 f"{where}, lr {r['lr']:g} ({r['task']}): eval {r['eval_accuracy']:.0%}")
        ax.plot(np.arange(20, len(r["losses"]) + 1), smooth, label=label)
    ax.axhline(math.log(2), color="gray", lw=0.8, ls="--")
    ax.set(xlabel="step", ylabel="train loss (20-step mean)", ylim=(0, 1.05))
    ax.legend(fontsize=7, loc="upper right")  # above the ln 2 line
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    if sys.argv[1:2] == ["--plot"]:  # --plot OUT.png RESULT.json...
        return plot(sys.argv[3:], sys.argv[2])
    args = parse()
    if args.order_signal:
        print(json.dumps(dict(family=args.family, task=args.task, set=args.set,
                              classifier_init=args.classifier_init,
                              temporal_fc_init=args.temporal_fc_init, stem=args.stem,
                              attention_init=args.attention_init,
                              order_signal=round(order_signal(args), 4))))
        return
    if args.seeds:
        return seeds(args)
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


def seeds(args) -> None:
    """The same run with seeds 0..n-1 (batches, dropout and init): each seed's plateau and
    accuracy, then how many learned (>= 95% held out). A fix that works on one seed may not
    work on the next: this is the measure of a reliable one."""
    results = []
    for seed in range(args.seeds):
        args.seed = seed
        result = run(args)
        results.append({k: v for k, v in result.items() if k != "losses"})
        print(json.dumps({k: result[k] for k in ("seed", "plateau_steps", "eval_accuracy",
                                                 "seconds")}), flush=True)
    learned = sum(r["eval_accuracy"] >= 0.95 for r in results)
    summary = dict(family=args.family, task=args.task, set=args.set, steps=args.steps,
                   lr=args.lr, warmup=args.warmup, seeds=args.seeds, learned=learned,
                   accuracies=[round(r["eval_accuracy"], 3) for r in results],
                   plateaus=[r["plateau_steps"] for r in results])
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(summary, runs=results), f)


if __name__ == "__main__":
    main()

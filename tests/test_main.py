"""The entry point, run as a user runs it."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_zoo_prints_params_and_gflops():
    out = run_main("--mode=zoo", "--config.zoo.models=xvit_b16,timesformer_b16")
    assert out.returncode == 0, out.stderr
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"\| (\w+) \|.*\| ([\d.]+) \| ([\d.]+) \|", out.stdout)}
    assert set(rows) == {"xvit_b16", "timesformer_b16"}
    assert abs(rows["xvit_b16"][1] - 142) / 142 < 0.02  # the paper's 425 GFLOPs / 3 views
    assert abs(rows["timesformer_b16"][0] - 121.4) < 0.5  # million parameters


def test_bad_flags_say_what_to_fix():
    out = run_main("--mode=nonsense")
    assert out.returncode != 0 and "unknown --mode='nonsense'; modes: train, eval, predict, zoo" in out.stderr
    out = run_main("--mode=zoo", "--config.zoo.modles=xvit_b16")
    assert out.returncode != 0 and 'Did you mean "models"' in out.stderr
    out = run_main("--mode=zoo", "--config.zoo.models=xvit_b61")
    assert out.returncode != 0 and "unknown model 'xvit_b61'" in out.stderr


def test_predict_and_eval_from_a_model_folder(tmp_path):
    """--model=FOLDER: predict needs only the folder and the video (no workdir, no dataset);
    eval scores the folder's model on the config's dataset."""
    import jax
    import numpy as np
    from flax import nnx
    from video_files import moving_bar_frames, write_video

    import vidmix
    from configs.default import get_config
    from vidmix.checkpoints.pretrained import save_pretrained
    from vidmix.data import build_dataset
    from vidmix.training.predict import predict

    model = vidmix.create_model("xvit_s16", width=32, depth=1, num_heads=2, patch_size=4,
                                image_size=16, num_frames=4, num_classes=2, head="linear",
                                pixel_mean=(0.4, 0.5, 0.6), pixel_std=(0.2, 0.3, 0.4))
    rng = np.random.default_rng(0)
    nnx.update(model, jax.tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape, a.dtype),
                                   nnx.state(model, nnx.Param)))
    folder = save_pretrained(model, tmp_path / "model", ["moving_right", "moving_left"],
                             preprocessing=dict(short_side=20, sampling="dense", stride=2,
                                                num_clips=2, num_crops=1, combine="sum_logits"))
    video = tmp_path / "bar.mp4"
    write_video(video, moving_bar_frames(12, h=24, w=40))
    missing_data = "--config.data.dir=" + str(tmp_path / "no_dataset")
    out = run_main("--mode=predict", f"--model={folder}", f"--video={video}", missing_data)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.rstrip("\n").splitlines()[-2:]
    want = predict(get_config(), None, str(video), model_dir=folder)
    assert lines == [f"{p:7.2%}  {n}" for n, p in want]
    assert "2 view(s) of 4 frames (the video has 12)" in out.stderr
    assert not os.path.exists(tmp_path / "no_dataset")

    data = build_dataset("synthetic", None, tmp_path / "data", num_train=8, num_val=6,
                         num_frames=8, size=16, num_workers=1).data_dir
    out = run_main("--mode=eval", f"--model={folder}", f"--config.data.dir={data}",
                   "--config.eval.batch_size=8", f"--workdir={tmp_path / 'eval'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"eval \(6 videos, 2x1 views\): top-1 \d", out.stdout)
    assert os.listdir(tmp_path / "eval") == ["confusion.png"]

    out = run_main("--mode=train", f"--model={folder}")
    assert out.returncode != 0 and "--model is for --mode=eval and --mode=predict" in out.stderr

    # errors a user causes print one line (and the traceback only with --traceback)
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    mistakes = {
        "a file that is no video": ("--mode=predict", f"--model={folder}", f"--video={not_a_video}"),
        "no such video": ("--mode=predict", f"--model={folder}", f"--video={tmp_path / 'x.mp4'}"),
        "no such model folder": ("--mode=predict", f"--model={tmp_path / 'nowhere'}",
                                 f"--video={video}"),
        "a workdir never trained": ("--mode=eval", f"--config.data.dir={data}",
                                    "--config.data.stride=1", f"--workdir={tmp_path / 'untrained'}"),
    }
    wanted = {"a file that is no video": f"--video='{not_a_video}' cannot be decoded",
              "no such video": "is not a file", "no such model folder": "is not a folder",
              "a workdir never trained": "no checkpoint in"}
    for what, args in mistakes.items():
        out = run_main(*args)
        last = out.stderr.rstrip().splitlines()[-1]
        assert out.returncode == 1 and "Traceback" not in out.stderr, (what, out.stderr[-2000:])
        assert last.startswith("error: ") and wanted[what] in last, (what, last)
    out = run_main(*mistakes["a file that is no video"], "--traceback")
    assert out.returncode == 1 and "Traceback" in out.stderr and "UnreadableVideoError" in out.stderr
